package dataflow_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/window"
)

// txnStore collects what a two-phase test sink commits, once per transaction.
type txnStore[T any] struct {
	mu        sync.Mutex
	committed map[string]bool
	out       []T
	first     chan struct{} // closed at the first commit with records
	once      sync.Once
}

func newTxnStore[T any]() *txnStore[T] {
	return &txnStore[T]{committed: map[string]bool{}, first: make(chan struct{})}
}

func (s *txnStore[T]) values() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.out)
}

type txn[T any] struct {
	ID      string
	Records []T
}

type txnCommitter[T any] struct {
	st  *txnStore[T]
	run string
	sub int
	seq int
}

func (c *txnCommitter[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	// Transaction ids differ between runs and between restarts.
	c.sub, c.run = oc.Subtask, fmt.Sprint(runSeq.Add(1))
	return nil
}
func (c *txnCommitter[T]) Begin(context.Context) (*txn[T], error) {
	c.seq++
	return &txn[T]{ID: fmt.Sprintf("%s-%d-%d", c.run, c.sub, c.seq)}, nil
}
func (c *txnCommitter[T]) Write(_ context.Context, t *txn[T], v T, _ dataflow.Timestamp) error {
	t.Records = append(t.Records, v)
	return nil
}
func (c *txnCommitter[T]) Prepare(_ context.Context, t *txn[T]) (*txn[T], error) { return t, nil }
func (c *txnCommitter[T]) Commit(_ context.Context, t *txn[T]) error {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if !c.st.committed[t.ID] {
		c.st.committed[t.ID] = true
		c.st.out = append(c.st.out, t.Records...)
		if len(t.Records) > 0 {
			c.st.once.Do(func() { close(c.st.first) })
		}
	}
	return nil
}
func (c *txnCommitter[T]) Abort(context.Context, *txn[T]) error { return nil }
func (c *txnCommitter[T]) Close() error                         { return nil }

var runSeq atomic.Int64

func txnSink[T any](in dataflow.Stream[T], name string, st *txnStore[T], opts ...dataflow.Option) {
	dataflow.AddSink(in, name, dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *txn[T]] {
		return &txnCommitter[T]{st: st}
	}), opts...)
}

type winResult = window.Result[int64, int64]

// windowJob counts events per key in tumbling one-second windows of event
// time; record seq has event time seq milliseconds.
func windowJob(cfg dataflow.Config, total int64, rate float64, st *txnStore[winResult], countName string) *dataflow.Job {
	return windowJobSeen(cfg, total, rate, st, countName, nil)
}

// windowJobSeen is windowJob calling seen with every sequence number made.
func windowJobSeen(cfg dataflow.Config, total int64, rate float64, st *txnStore[winResult], countName string, seen func(int64)) *dataflow.Job {
	job := dataflow.NewJob("windows", cfg)
	src := memory.Generator(job, "source", memory.GeneratorConfig[event]{
		Count: total,
		Rate:  rate,
		Generate: func(seq int64) event {
			if seen != nil {
				seen(seq)
			}
			return event{Key: seq % 37, Seq: seq}
		},
		Watermarks: dataflow.BoundedOutOfOrderness(0, func(e event) time.Time {
			return time.UnixMilli(e.Seq)
		}),
	})
	counts := window.Aggregate(dataflow.KeyBy(src, func(e event) int64 { return e.Key }), countName,
		window.Tumbling(time.Second), window.Count[event]())
	txnSink(counts, "sink", st)
	return job
}

func sortResults(rs []winResult) []winResult {
	slices.SortFunc(rs, func(a, b winResult) int {
		if a.Window.Start != b.Window.Start {
			return cmp.Compare(a.Window.Start, b.Window.Start)
		}
		return int(a.Key - b.Key)
	})
	return rs
}

func TestSavepointStopAndRestoreAtOtherParallelism(t *testing.T) {
	const total = 30000
	ref := newTxnStore[winResult]()
	require.NoError(t, windowJob(dataflow.Config{Parallelism: 2}, total, 0, ref, "count").Run(context.Background()))
	want := sortResults(ref.values())
	require.NotEmpty(t, want)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ckpts, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	spDir := filepath.Join(t.TempDir(), "savepoint")
	sp, err := checkpoint.NewLocalStorage(spDir)
	require.NoError(t, err)

	// Run A at parallelism 2, stopped with a savepoint once results flow.
	// Both runs commit into one store, as a real sink commits into one
	// database: a transaction the savepoint recorded and run A committed is
	// committed again by run B's restore, and must count once.
	out := newTxnStore[winResult]()
	passed := make(chan struct{})
	jobA := windowJobSeen(dataflow.Config{Parallelism: 2, Checkpoint: checkpoint.Config{Interval: 10 * time.Millisecond},
		CheckpointStorage: ckpts}, total, total/3, out, "count", func(seq int64) {
		if seq == 3000 {
			close(passed)
		}
	})
	done := make(chan error, 1)
	go func() { done <- jobA.Run(ctx) }()
	select {
	case <-passed:
	case err := <-done:
		t.Fatalf("job ended before the savepoint: %v", err)
	}
	m, err := jobA.StopWithSavepoint(ctx, sp)
	require.NoError(t, err)
	require.NoError(t, <-done, "a stopped job's Run returns nil")
	require.Equal(t, checkpoint.KindSavepoint, m.Kind)
	for _, f := range m.Files() {
		require.False(t, filepath.IsAbs(f.Path))
		_, err := os.Stat(filepath.Join(spDir, filepath.FromSlash(f.Path)))
		require.NoError(t, err, "a savepoint is self-contained: %s", f.Path)
	}
	require.Less(t, len(out.values()), len(want), "stopped before the end")

	// Run B restores the savepoint at parallelism 3 and runs to the end.
	restoreFrom, err := checkpoint.OpenLocalStorage(spDir)
	require.NoError(t, err)
	jobB := windowJob(dataflow.Config{Parallelism: 3, RestoreFrom: restoreFrom}, total, 0, out, "count")
	require.NoError(t, jobB.Run(ctx))
	got := sortResults(out.values())
	require.Equal(t, want, got, "run A up to the savepoint plus run B from it equal one uninterrupted run")
}

func TestSavepointIntoChangedJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spDir := t.TempDir()
	sp, err := checkpoint.NewLocalStorage(spDir)
	require.NoError(t, err)
	// Run A makes at least 200 records before its savepoint.
	a := newTxnStore[winResult]()
	passed := make(chan struct{})
	jobA := windowJobSeen(dataflow.Config{}, 1<<40, 20000, a, "count", func(seq int64) {
		if seq == 200 {
			close(passed)
		}
	})
	done := make(chan error, 1)
	go func() { done <- jobA.Run(ctx) }()
	select {
	case <-passed:
	case err := <-done:
		t.Fatalf("job ended early: %v", err)
	}
	_, err = jobA.StopWithSavepoint(ctx, sp)
	require.NoError(t, err)
	require.NoError(t, <-done)

	ro, err := checkpoint.OpenLocalStorage(spDir)
	require.NoError(t, err)
	// The window operator was renamed: its state has no operator.
	renamed := windowJob(dataflow.Config{RestoreFrom: ro}, 100, 0, newTxnStore[winResult](), "count-v2")
	err = renamed.Run(ctx)
	require.ErrorIs(t, err, dataflow.ErrRestore)
	require.ErrorContains(t, err, `operator "count"`)
	require.ErrorContains(t, err, "AllowNonRestoredState")

	// Allowed explicitly, the window state is dropped and the job runs. The
	// source restored its position, past the 100 records this job makes, and
	// the savepoint's sink had nothing prepared (no window fired in run A).
	out := newTxnStore[winResult]()
	allowed := windowJob(dataflow.Config{RestoreFrom: ro, AllowNonRestoredState: true}, 100, 0, out, "count-v2")
	require.NoError(t, allowed.Run(ctx))
	require.Empty(t, out.values())

	// Another max parallelism cannot take the keyed state.
	other := windowJob(dataflow.Config{RestoreFrom: ro, MaxParallelism: 64}, 100, 0, newTxnStore[winResult](), "count")
	err = other.Run(ctx)
	require.ErrorIs(t, err, dataflow.ErrRestore)
	require.ErrorContains(t, err, "max parallelism")

	// A savepoint directory that does not exist.
	_, err = checkpoint.OpenLocalStorage(filepath.Join(spDir, "missing"))
	require.Error(t, err)
	require.ErrorContains(t, err, "missing")
}

func TestCorruptCheckpointFailsLoudly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	ckpts, err := checkpoint.NewLocalStorage(dir)
	require.NoError(t, err)
	st := newTxnStore[winResult]()
	require.NoError(t, windowJob(dataflow.Config{Parallelism: 2, CheckpointStorage: ckpts,
		Checkpoint: checkpoint.Config{Interval: 5 * time.Millisecond}}, 5000, 20000, st, "count").Run(ctx))
	m, err := ckpts.Latest(ctx)
	require.NoError(t, err)
	var keyed checkpoint.FileRef
	for _, f := range m.Files() {
		if filepath.Ext(f.Path) == ".keyed" && f.Size > 0 {
			keyed = f
		}
	}
	require.NotEmpty(t, keyed.Path, "the final checkpoint has keyed state")
	path := filepath.Join(dir, filepath.FromSlash(keyed.Path))

	restore := func() error {
		return windowJob(dataflow.Config{Parallelism: 2, RestoreFrom: ckpts}, 5000, 0, newTxnStore[winResult](), "count").Run(ctx)
	}
	require.NoError(t, restore(), "an intact checkpoint restores")

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o644))
	err = restore()
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, keyed.Path)

	require.NoError(t, os.WriteFile(path, b[:len(b)/3], 0o644))
	err = restore()
	require.ErrorIs(t, err, checkpoint.ErrCorrupt, "truncated")

	require.NoError(t, os.Remove(path))
	err = restore()
	require.ErrorIs(t, err, checkpoint.ErrCorrupt, "missing")
	require.ErrorContains(t, err, keyed.Path)
}

func TestDrainFiresEverythingAndCommits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ckpts, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	out := newTxnStore[winResult]()
	passed := make(chan struct{})
	job := windowJobSeen(dataflow.Config{Parallelism: 2, CheckpointStorage: ckpts,
		Checkpoint: checkpoint.Config{Interval: 10 * time.Millisecond}}, 1<<40, 50000, out, "count", func(seq int64) {
		if seq == 3000 {
			close(passed)
		}
	})
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	select {
	case <-passed:
	case err := <-done:
		t.Fatalf("job ended early: %v", err)
	}
	require.NoError(t, job.Drain(ctx))
	require.NoError(t, <-done, "a drained job ends normally")

	// Every record the source emitted is counted in a fired window: the
	// windows still open when the job was drained fired too.
	m := job.Metrics()
	_, emitted, _ := metricsOf(m, "source")
	require.Greater(t, emitted, int64(1000), "one of two generator subtasks made record 3000")
	var counted int64
	for _, r := range out.values() {
		counted += r.Value
	}
	require.Equal(t, emitted, counted)
	last, err := ckpts.Latest(ctx)
	require.NoError(t, err)
	require.True(t, last.Final, "the drained job's last checkpoint is final")
}
