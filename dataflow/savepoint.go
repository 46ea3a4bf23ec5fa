package dataflow

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicedata/sluice/checkpoint"
)

// activeRun is what Savepoint and StopWithSavepoint need of a running job.
type activeRun struct {
	coord  *checkpoint.Coordinator
	cancel context.CancelCauseFunc
	tasks  []*task
}

func (j *Job) setRun(r *activeRun) {
	j.runMu.Lock()
	j.active.Store(r)
	if j.runChanged != nil {
		close(j.runChanged)
		j.runChanged = nil
	}
	j.runMu.Unlock()
}

// activeRun returns the current run. A job that is starting (Run was called
// and its tasks are not up yet) or restarting is waited for.
func (j *Job) currentRun(ctx context.Context) (*activeRun, error) {
	return j.awaitRun(ctx, false)
}

// WaitRunning waits until the job's tasks are running (Run was called, maybe
// from another goroutine, and the tasks have started), or ctx ends.
func (j *Job) WaitRunning(ctx context.Context) error {
	_, err := j.awaitRun(ctx, true)
	return err
}

func (j *Job) awaitRun(ctx context.Context, evenIfNotStarted bool) (*activeRun, error) {
	for {
		j.runMu.Lock()
		r := j.active.Load()
		if r != nil || !evenIfNotStarted && !j.running.Load() {
			j.runMu.Unlock()
			if r == nil {
				return nil, fmt.Errorf("%w: %q", ErrNotRunning, j.name)
			}
			return r, nil
		}
		if j.runChanged == nil {
			j.runChanged = make(chan struct{})
		}
		ch := j.runChanged
		j.runMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrNotRunning is returned by Savepoint and StopWithSavepoint when the job is
// not running. A job that is starting or restarting is waited for.
var ErrNotRunning = errors.New("dataflow: job is not running")

// Savepoint takes a savepoint of the running job into storage (for example
// checkpoint.NewLocalStorage(dir)) and returns its manifest once it is
// complete. A savepoint is self-contained: every state file is full and lies
// in storage. It waits for a checkpoint in flight. Restore from it with
// Config.RestoreFrom, also into a changed job (state is matched by operator
// name) or at another parallelism.
func (j *Job) Savepoint(ctx context.Context, storage checkpoint.Storage) (*checkpoint.Manifest, error) {
	r, err := j.currentRun(ctx)
	if err != nil {
		return nil, err
	}
	m, err := r.coord.Savepoint(ctx, storage)
	if err != nil {
		return nil, fmt.Errorf("dataflow: job %q: savepoint to %s: %w", j.name, storage.Location(), err)
	}
	return m, nil
}

// StopWithSavepoint takes a savepoint, then stops the job: Run returns nil.
// No checkpoint follows the savepoint, and the job ends once every subtask was
// told it completed, so two-phase sinks have committed exactly what the
// savepoint covers; what the job did after its barrier is discarded and done
// again by a job restored from it.
func (j *Job) StopWithSavepoint(ctx context.Context, storage checkpoint.Storage) (*checkpoint.Manifest, error) {
	r, err := j.currentRun(ctx)
	if err != nil {
		return nil, err
	}
	m, err := r.coord.StopWithSavepoint(ctx, storage)
	if err != nil {
		return nil, fmt.Errorf("dataflow: job %q: stop with savepoint to %s: %w", j.name, storage.Location(), err)
	}
	return m, nil
}

// Drain ends the job's input where its sources are now, as if every source
// had reached its end: event time advances to the end, so every window fires
// and every timer runs, operators finish, a final checkpoint is taken (into
// CheckpointStorage, if set) and two-phase sinks commit everything; then Run
// returns nil. A job restored from that final checkpoint goes on reading
// where the sources stopped. Drain returns once every source was told; wait
// for Run to return for the job to end.
func (j *Job) Drain(ctx context.Context) error {
	r, err := j.currentRun(ctx)
	if err != nil {
		return err
	}
	for _, t := range r.tasks {
		if t.src != nil {
			t.mail.put(control{kind: ctlDrain})
		}
	}
	return nil
}

// Restarts is the number of times the job restarted after a failure.
func (j *Job) Restarts() int64 { return j.restarts.Load() }
