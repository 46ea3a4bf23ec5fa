package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Options describe one checkpoint to the tasks taking part in it.
type Options struct {
	ID   int64
	Kind Kind
	// Full asks for full keyed-state snapshots (savepoints, the first
	// checkpoint of a run, and the one after a checkpoint failed).
	Full bool
	// Final is the checkpoint taken once every task has finished its input.
	Final bool
	// Stop is a savepoint that stops the job: once every task has been told
	// it completed, the job ends, and no checkpoint follows it.
	Stop bool
	// Storage receives the checkpoint's files; nil means none are written (a
	// job without checkpointing still runs its final checkpoint, so that
	// two-phase sinks commit at end of input).
	Storage Storage
}

// Ack is what one operator subtask wrote for a checkpoint.
type Ack struct {
	Operator    string
	Subtask     int
	Parallelism int
	// Keyed is the keyed-state snapshot, and KeyedFull whether it is a full
	// base (else a delta on the subtask's previous snapshot).
	Keyed     *FileRef
	KeyedFull bool
	Timers    *FileRef
	State     *FileRef
}

// size is the bytes of the files a.
func (a Ack) size() int64 {
	var n int64
	for _, f := range []*FileRef{a.Keyed, a.Timers, a.State} {
		if f != nil {
			n += f.Size
		}
	}
	return n
}

// Runtime is the coordinator's view of the running job. The coordinator calls
// it from its own goroutine; its methods must not block for long.
type Runtime interface {
	// Trigger starts a checkpoint at the given tasks: sources inject a
	// barrier, tasks that have finished snapshot at once.
	Trigger(opts *Options, tasks []int)
	// Complete tells every task that the checkpoint is complete.
	Complete(o *Options)
	// Abort tells every task that checkpoint id will not complete.
	Abort(id int64)
}

// CoordinatorConfig sets up a Coordinator for one run of a job.
type CoordinatorConfig struct {
	Job            string
	MaxParallelism int
	// Config is the checkpointing configuration; it must be valid.
	Config Config
	// Storage keeps the checkpoints; nil disables periodic checkpoints.
	Storage Storage
	// Tasks is the number of tasks; each acknowledges every checkpoint.
	Tasks int
	// Sources are the tasks that start with a source: they receive triggers.
	Sources []int
	// Restored is the checkpoint the run restored from, if any. Ids continue
	// after it (and after any checkpoint already in Storage).
	Restored *Manifest
	// FirstID, if larger, is the first id to use: a job restarted after a
	// failure passes NextID of the run that failed, so that no id is used
	// twice, not even that of a checkpoint that failed or was aborted.
	FirstID int64
	// Clock is used for Manifest.Created; nil means time.Now.
	Clock func() time.Time
}

// Coordinator triggers checkpoints, collects acknowledgements, writes
// manifests and tells tasks when checkpoints complete. Run drives it; the
// other methods may be called from any goroutine.
//
// One checkpoint is in flight at a time. A checkpoint that times out or that a
// task declines is aborted; more than Config.TolerableFailures consecutive
// failures fail the job. A savepoint waits for the checkpoint in flight. Once
// every task has finished its input, the coordinator takes the final
// checkpoint and Run returns when it is complete.
type Coordinator struct {
	cfg    CoordinatorConfig
	rt     Runtime
	events chan any
	done   chan struct{} // closed when Run returns

	// owned by Run's goroutine
	nextID    int64
	nextIDPub atomic.Int64 // nextID, for NextID
	pending   *pending
	latest    *Manifest // latest completed checkpoint in cfg.Storage
	forceFull bool
	failures  int
	finished  map[int]bool
	savepts   []*savepointReq
	lastDone  time.Time // the end of the last checkpoint, completed or failed
	lastStart time.Time // the start of the last checkpoint

	statsMu sync.Mutex
	stats   Stats
}

// Stats describe a coordinator's checkpoints so far, for status and metrics.
type Stats struct {
	// Completed and Failed count checkpoints and savepoints.
	Completed, Failed int64
	// InProgress is the id of the checkpoint being taken, or 0.
	InProgress int64
	// Last is the last completed checkpoint or savepoint, if any.
	Last *CheckpointInfo
	// LastFailure is why the last failed checkpoint failed, if one did.
	LastFailure string
	// LastFailureTime is when it failed.
	LastFailureTime time.Time
}

// CheckpointInfo describes one completed checkpoint or savepoint.
type CheckpointInfo struct {
	ID       int64
	Kind     Kind
	Full     bool // not a delta on an earlier checkpoint
	Started  time.Time
	Duration time.Duration // from trigger to completion
	// Size is the bytes of the files the checkpoint wrote itself (files it
	// shares with earlier checkpoints not included).
	Size     int64
	Location string // the storage, for a checkpoint with storage
}

// Stats returns a copy of the coordinator's statistics. It is safe to call
// from any goroutine.
func (c *Coordinator) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s := c.stats
	if s.Last != nil {
		l := *s.Last
		s.Last = &l
	}
	return s
}

type pending struct {
	opts     *Options
	acks     map[int][]Ack
	started  time.Time
	deadline time.Time
	sp       *savepointReq
}

type ackEvent struct {
	id   int64
	task int
	acks []Ack
	err  error
}

type finishedEvent struct {
	task  int
	reply chan *Options
}

type savepointReq struct {
	storage Storage
	stop    bool
	reply   chan savepointResult
}

type savepointResult struct {
	m   *Manifest
	err error
}

// NewCoordinator makes a coordinator for one run; rt is the running job.
func NewCoordinator(ctx context.Context, cfg CoordinatorConfig, rt Runtime) (*Coordinator, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	cfg.Config = cfg.Config.WithDefaults()
	c := &Coordinator{cfg: cfg, rt: rt, events: make(chan any, 64), done: make(chan struct{}), nextID: 1, forceFull: true, finished: map[int]bool{}}
	if r := cfg.Restored; r != nil && r.ID >= c.nextID {
		c.nextID = r.ID + 1
	}
	c.nextID = max(c.nextID, cfg.FirstID)
	if cfg.Storage != nil {
		if p, ok := cfg.Storage.(Prober); ok {
			if err := p.Probe(ctx); err != nil {
				return nil, fmt.Errorf("checkpoint: job %q cannot take checkpoints: %w", cfg.Job, err)
			}
		}
		ids, err := cfg.Storage.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list checkpoints in %s: %w", cfg.Storage.Location(), err)
		}
		if n := len(ids); n > 0 && ids[n-1] >= c.nextID {
			c.nextID = ids[n-1] + 1
		}
	}
	c.nextIDPub.Store(c.nextID)
	return c, nil
}

// NextID is the id the coordinator's next checkpoint or savepoint would
// get: one after the last it started. Safe to call from any goroutine.
func (c *Coordinator) NextID() int64 { return c.nextIDPub.Load() }

// Ack records that task wrote its part of checkpoint id. Called by the task's
// asynchronous writer.
func (c *Coordinator) Ack(id int64, task int, acks []Ack) {
	c.send(ackEvent{id: id, task: task, acks: acks})
}

// send delivers ev to Run, or drops it once Run has returned.
func (c *Coordinator) send(ev any) {
	select {
	case c.events <- ev:
	case <-c.done:
	}
}

// Decline reports that task could not take its part in checkpoint id.
func (c *Coordinator) Decline(id int64, task int, err error) {
	c.send(ackEvent{id: id, task: task, err: err})
}

// TaskFinished records that task has finished its input and snapshots on
// trigger from now on. It returns the checkpoint in flight if the task has not
// acknowledged it yet: the task must snapshot for it now, since the barrier it
// was waiting for will not come. It returns nil once Run has returned.
func (c *Coordinator) TaskFinished(ctx context.Context, task int) *Options {
	reply := make(chan *Options, 1)
	select {
	case c.events <- finishedEvent{task: task, reply: reply}:
	case <-ctx.Done():
		return nil
	case <-c.done:
		return nil
	}
	select {
	case o := <-reply:
		return o
	case <-ctx.Done():
		return nil
	case <-c.done:
		return nil
	}
}

// Savepoint takes a savepoint into storage and returns its manifest once it is
// complete (sinks have been told).
func (c *Coordinator) Savepoint(ctx context.Context, storage Storage) (*Manifest, error) {
	return c.savepoint(ctx, storage, false)
}

// StopWithSavepoint takes a savepoint marked Stop: once it completes, Run
// returns and no further checkpoint is taken, so nothing is committed beyond
// the savepoint. The runtime ends the job once every task has been told.
func (c *Coordinator) StopWithSavepoint(ctx context.Context, storage Storage) (*Manifest, error) {
	return c.savepoint(ctx, storage, true)
}

func (c *Coordinator) savepoint(ctx context.Context, storage Storage, stop bool) (*Manifest, error) {
	req := &savepointReq{storage: storage, stop: stop, reply: make(chan savepointResult, 1)}
	select {
	case c.events <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, errors.New("checkpoint: the job is not running")
	}
	select {
	case r := <-req.reply:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		select {
		case r := <-req.reply:
			return r.m, r.err
		default:
			return nil, errors.New("checkpoint: the job stopped before the savepoint completed")
		}
	}
}

// ErrFinalFailed is wrapped by the error of a final checkpoint that failed.
var ErrFinalFailed = errors.New("checkpoint: final checkpoint failed")

// Run drives checkpoints until ctx ends (it returns nil), the final
// checkpoint completes (nil), or failures exceed the tolerable number (an
// error, which should fail the job).
func (c *Coordinator) Run(ctx context.Context) error {
	defer close(c.done)
	defer c.failSavepoints(errors.New("checkpoint: the job stopped before the savepoint completed"))
	c.lastDone = c.cfg.Clock()
	c.lastStart = c.lastDone
	periodic := c.cfg.Storage != nil && c.cfg.Config.Interval > 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return nil
		}
		c.startQueued()
		// Next wake-up: the pending checkpoint's deadline, or the next trigger.
		// A wake-up that is already due (the deadline or the next trigger
		// passed while the loop was busy) fires at once.
		var wake time.Duration
		armed := false
		now := c.cfg.Clock()
		if c.pending != nil {
			wake, armed = c.pending.deadline.Sub(now), true
		} else if periodic && len(c.finished) < c.cfg.Tasks {
			// Interval apart from the last start, and at least MinPause
			// after the last end (as in Flink).
			next := c.lastStart.Add(c.cfg.Config.Interval)
			if p := c.lastDone.Add(c.cfg.Config.MinPause); p.After(next) {
				next = p
			}
			wake, armed = next.Sub(now), true
		}
		var tc <-chan time.Time
		if armed {
			timer.Reset(max(wake, 0))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tc:
			if c.pending != nil {
				if !c.cfg.Clock().Before(c.pending.deadline) {
					if err := c.fail(ctx, fmt.Errorf("checkpoint %d expired after %v before every task acknowledged it (%d of %d did)",
						c.pending.opts.ID, c.cfg.Config.Timeout, len(c.pending.acks), c.cfg.Tasks)); err != nil {
						return err
					}
				}
			} else if periodic && len(c.finished) < c.cfg.Tasks {
				c.trigger(&Options{Kind: KindCheckpoint, Storage: c.cfg.Storage}, nil)
			}
		case ev := <-c.events:
			done, err := c.handle(ctx, ev)
			if err != nil || done {
				return err
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (c *Coordinator) handle(ctx context.Context, ev any) (done bool, err error) {
	switch e := ev.(type) {
	case ackEvent:
		p := c.pending
		if p == nil || p.opts.ID != e.id {
			return false, nil // late acknowledgement of an aborted checkpoint
		}
		if e.err != nil {
			return false, c.fail(ctx, fmt.Errorf("checkpoint %d declined by a task: %w", e.id, e.err))
		}
		p.acks[e.task] = e.acks
		if len(p.acks) == c.cfg.Tasks {
			return c.complete(ctx)
		}
	case finishedEvent:
		c.finished[e.task] = true
		var o *Options
		if c.pending != nil {
			if _, acked := c.pending.acks[e.task]; !acked {
				o = c.pending.opts
			}
		}
		e.reply <- o
	case *savepointReq:
		c.savepts = append(c.savepts, e)
	}
	return false, nil
}

// startQueued starts a queued savepoint, or the final checkpoint, when no
// checkpoint is in flight.
func (c *Coordinator) startQueued() {
	if c.pending != nil {
		return
	}
	if len(c.savepts) > 0 {
		sp := c.savepts[0]
		c.savepts = c.savepts[1:]
		c.trigger(&Options{Kind: KindSavepoint, Full: true, Stop: sp.stop, Storage: sp.storage}, sp)
		return
	}
	if len(c.finished) == c.cfg.Tasks {
		c.trigger(&Options{Kind: KindCheckpoint, Final: true, Storage: c.cfg.Storage}, nil)
	}
}

func (c *Coordinator) trigger(o *Options, sp *savepointReq) {
	o.ID = c.nextID
	c.nextID++
	c.nextIDPub.Store(c.nextID)
	if o.Kind == KindCheckpoint && c.forceFull {
		o.Full = true
	}
	now := c.cfg.Clock()
	c.lastStart = now
	c.pending = &pending{opts: o, acks: map[int][]Ack{}, started: now, deadline: now.Add(c.cfg.Config.Timeout), sp: sp}
	c.statsMu.Lock()
	c.stats.InProgress = o.ID
	c.statsMu.Unlock()
	tasks := append([]int(nil), c.cfg.Sources...)
	for t := range c.finished {
		if !contains(c.cfg.Sources, t) {
			tasks = append(tasks, t)
		}
	}
	sort.Ints(tasks)
	c.rt.Trigger(o, tasks)
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// fail aborts the pending checkpoint.
func (c *Coordinator) fail(ctx context.Context, cause error) error {
	p := c.pending
	c.pending = nil
	c.lastDone = c.cfg.Clock()
	c.statsMu.Lock()
	c.stats.Failed++
	c.stats.InProgress = 0
	c.stats.LastFailure = cause.Error()
	c.stats.LastFailureTime = c.lastDone
	c.statsMu.Unlock()
	c.rt.Abort(p.opts.ID)
	if p.opts.Storage != nil {
		_ = p.opts.Storage.Discard(ctx, p.opts.ID)
	}
	// The next snapshot's deltas would build on this one's, which no manifest
	// references: start from a full base.
	c.forceFull = true
	if p.sp != nil {
		p.sp.reply <- savepointResult{err: fmt.Errorf("savepoint: %w", cause)}
		return nil // a failed savepoint fails the request, not the job
	}
	if p.opts.Final {
		return fmt.Errorf("%w: %w", ErrFinalFailed, cause)
	}
	c.failures++
	if c.failures > c.cfg.Config.TolerableFailures {
		return fmt.Errorf("checkpoint: %w (%d consecutive failures, %d tolerated)", cause, c.failures, c.cfg.Config.TolerableFailures)
	}
	return nil
}

func (c *Coordinator) complete(ctx context.Context) (bool, error) {
	p := c.pending
	o := p.opts
	var m *Manifest
	if o.Storage != nil {
		var err error
		m, err = c.manifest(p)
		if err == nil {
			err = o.Storage.Commit(ctx, m)
		}
		if err != nil {
			return false, c.fail(ctx, fmt.Errorf("checkpoint %d: write manifest to %s: %w", o.ID, o.Storage.Location(), err))
		}
	}
	c.pending = nil
	c.lastDone = c.cfg.Clock()
	c.failures = 0
	info := &CheckpointInfo{ID: o.ID, Kind: o.Kind, Full: o.Full || o.Kind == KindSavepoint, Started: p.started,
		Duration: c.lastDone.Sub(p.started)}
	for _, acks := range p.acks {
		for _, a := range acks {
			info.Size += a.size()
		}
	}
	if o.Storage != nil {
		info.Location = o.Storage.Location()
	}
	c.statsMu.Lock()
	c.stats.Completed++
	c.stats.InProgress = 0
	c.stats.Last = info
	c.statsMu.Unlock()
	if o.Kind == KindCheckpoint && o.Storage != nil {
		c.latest = m
		c.forceFull = false
	} else {
		// The next checkpoint's deltas would build on the savepoint's base.
		c.forceFull = true
	}
	c.rt.Complete(o)
	if p.sp != nil {
		p.sp.reply <- savepointResult{m: m}
	}
	if o.Stop {
		return true, nil
	}
	if o.Kind == KindCheckpoint && o.Storage != nil && c.cfg.Config.Retain > 0 {
		// A failed prune leaves extra files behind, nothing worse.
		_ = o.Storage.Prune(ctx, c.cfg.Config.Retain)
	}
	return o.Final, nil
}

// manifest assembles the manifest of a checkpoint every task acknowledged.
// A delta extends the subtask's chain in the latest completed checkpoint.
func (c *Coordinator) manifest(p *pending) (*Manifest, error) {
	o := p.opts
	m := &Manifest{Version: FormatVersion, Kind: o.Kind, ID: o.ID, Job: c.cfg.Job, Final: o.Final,
		Created: c.cfg.Clock().UTC(), MaxParallelism: c.cfg.MaxParallelism}
	ops := map[string]*OperatorState{}
	for _, acks := range p.acks {
		for _, a := range acks {
			op := ops[a.Operator]
			if op == nil {
				op = &OperatorState{Name: a.Operator, Parallelism: a.Parallelism, Subtasks: make([]SubtaskState, a.Parallelism)}
				ops[a.Operator] = op
			}
			if a.Subtask < 0 || a.Subtask >= op.Parallelism {
				return nil, fmt.Errorf("operator %q: subtask %d of %d", a.Operator, a.Subtask, op.Parallelism)
			}
			st := &op.Subtasks[a.Subtask]
			st.Timers, st.Operator = a.Timers, a.State
			if a.Keyed != nil {
				if !a.KeyedFull {
					prev, err := c.chain(a.Operator, a.Subtask)
					if err != nil {
						return nil, err
					}
					st.Keyed = append(st.Keyed, prev...)
				}
				st.Keyed = append(st.Keyed, *a.Keyed)
			}
		}
	}
	for _, op := range ops {
		m.Operators = append(m.Operators, *op)
	}
	sort.Slice(m.Operators, func(i, j int) bool { return m.Operators[i].Name < m.Operators[j].Name })
	return m, nil
}

func (c *Coordinator) chain(op string, subtask int) ([]FileRef, error) {
	if c.latest != nil {
		if os, ok := c.latest.Operator(op); ok && subtask < len(os.Subtasks) && len(os.Subtasks[subtask].Keyed) > 0 {
			return os.Subtasks[subtask].Keyed, nil
		}
	}
	return nil, fmt.Errorf("operator %q subtask %d: an incremental snapshot has no base in the latest completed checkpoint", op, subtask)
}

func (c *Coordinator) failSavepoints(err error) {
	if c.pending != nil && c.pending.sp != nil {
		c.pending.sp.reply <- savepointResult{err: err}
	}
	for _, sp := range c.savepts {
		sp.reply <- savepointResult{err: err}
	}
	c.savepts = nil
	// Drain requests that raced with the end of Run.
	for {
		select {
		case ev := <-c.events:
			if sp, ok := ev.(*savepointReq); ok {
				sp.reply <- savepointResult{err: err}
			}
			if f, ok := ev.(finishedEvent); ok {
				f.reply <- nil
			}
		default:
			return
		}
	}
}
