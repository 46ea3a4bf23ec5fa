package dataflow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicedata/sluice/checkpoint"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// Run validates the job, starts every subtask and waits until the input ends
// and everything downstream has finished (bounded sources), the job fails, or
// ctx is cancelled.
//
// On failure Run restarts the job as Config.Restart allows, from the latest
// completed checkpoint; when it gives up it returns the last error, an
// *OperatorError naming the operator and subtask. When ctx is cancelled, or
// the job is stopped (StopWithSavepoint), Run returns ctx's error or nil. In
// every case all goroutines the job started have returned and every opened
// operator has been closed before Run returns.
func (j *Job) Run(ctx context.Context) error {
	if !j.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %q", ErrAlreadyRunning, j.name)
	}
	defer func() { j.running.Store(false); j.setRun(nil) }()
	c, err := j.compile()
	if err != nil {
		return err
	}
	cfg := j.cfg
	if cfg.CheckpointStorage != nil {
		if err := cfg.Checkpoint.Validate(); err != nil {
			return fmt.Errorf("dataflow: job %q: %w", j.name, err)
		}
	}
	if v, ok := cfg.Restart.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("dataflow: job %q: restart strategy: %w", j.name, err)
		}
	}
	restart := cfg.Restart
	if restart == nil {
		restart = checkpoint.NoRestart()
	}
	var from *restoreFrom
	if rs := cfg.RestoreFrom; rs != nil {
		m, err := rs.Latest(ctx)
		switch {
		case errors.Is(err, checkpoint.ErrNoCheckpoint) && rs == cfg.CheckpointStorage:
			// Resuming a job that never completed a checkpoint: start fresh.
		case err != nil:
			return fmt.Errorf("%w: job %q from %s: %w", ErrRestore, j.name, rs.Location(), err)
		default:
			from = &restoreFrom{storage: rs, m: m}
		}
	}
	for failures := 0; ; {
		if from != nil {
			if err := j.checkRestore(c, from); err != nil {
				return err
			}
		}
		err := j.runOnce(ctx, c, from)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		failures++
		delay, ok := restart.Next(failures, err)
		if !ok {
			return err
		}
		j.restarts.Add(1)
		cfg.Logger.Warn("job failed; restarting", "job", j.name, "attempt", failures, "delay", delay, "restart", restart, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		// Restart from the latest completed checkpoint; without one, from
		// where this run started.
		if st := cfg.CheckpointStorage; st != nil {
			m, lerr := st.Latest(ctx)
			switch {
			case lerr == nil:
				from = &restoreFrom{storage: st, m: m}
			case errors.Is(lerr, checkpoint.ErrNoCheckpoint):
			default:
				return fmt.Errorf("%w: job %q after failure (%v): latest checkpoint in %s: %w", ErrRestore, j.name, err, st.Location(), lerr)
			}
		}
	}
}

// errStopped is the cancellation cause of a run stopped with a savepoint.
var errStopped = errors.New("dataflow: job stopped")

// runOnce runs the job's tasks once, restored from from if not nil.
func (j *Job) runOnce(ctx context.Context, c *compiled, from *restoreFrom) error {
	tasks, err := j.instantiate(c, from)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rs := &runState{tasks: tasks, stopDone: make(chan struct{})}
	cc := checkpoint.CoordinatorConfig{Job: j.name, MaxParallelism: j.cfg.MaxParallelism, Config: j.cfg.Checkpoint,
		Storage: j.cfg.CheckpointStorage, Tasks: len(tasks), FirstID: j.nextCheckpointID}
	if from != nil {
		cc.Restored = from.m
	}
	for i, t := range tasks {
		t.ctx, t.rs, t.idx, t.mail = runCtx, rs, i, newMailbox()
		if t.src != nil {
			cc.Sources = append(cc.Sources, i)
		}
	}
	coord, err := checkpoint.NewCoordinator(ctx, cc, rs)
	if err != nil {
		return err
	}
	rs.coord = coord
	// A restart goes on after the ids this run used, failed ones included.
	defer func() { j.nextCheckpointID = coord.NextID() }()
	j.runStarted(coord)
	j.setRun(&activeRun{coord: coord, cancel: cancel, tasks: tasks})
	defer j.setRun(nil)
	var bg sync.WaitGroup // the coordinator and the stop watcher
	tasksDone := make(chan struct{})
	var coordErr error
	bg.Go(func() {
		if coordErr = coord.Run(runCtx); coordErr != nil {
			cancel(coordErr)
		}
	})
	bg.Go(func() {
		// A stopping savepoint ends the run once every task was told.
		select {
		case <-rs.stopDone:
			cancel(errStopped)
		case <-runCtx.Done():
		case <-tasksDone:
		}
	})
	var tg sync.WaitGroup
	for _, t := range tasks {
		tg.Go(func() {
			if err := t.run(); err != nil {
				cancel(err) // only the first cause is kept
			}
		})
	}
	// The tasks end after the final checkpoint completed (which also ends
	// the coordinator), or with runCtx.
	tg.Wait()
	j.runEnded(tasks)
	close(tasksDone)
	err = context.Cause(runCtx)
	// A coordinator still running (no final checkpoint happened because a
	// task failed, or the run was stopped) ends with runCtx.
	cancel(nil)
	bg.Wait()
	rs.writers.Wait()
	if err == nil {
		err = coordErr
	}
	return err
}

type buildCtx struct {
	t    *task
	idx  int
	outs []any // per port: the typed Output (fan-out over its consumers)
	oc   *OperatorContext
}

func (b *buildCtx) watermarkers() []watermarker {
	ws := make([]watermarker, len(b.outs))
	for i, o := range b.outs {
		ws[i] = o.(watermarker)
	}
	return ws
}

// instantiate makes every subtask of every chain and wires the exchanges.
func (j *Job) instantiate(c *compiled, from *restoreFrom) (tasks []*task, err error) {
	cfg := j.cfg
	// Channel layout of each chain head's gate: one channel per producer
	// subtask of each input edge (one for forward edges).
	type gateInfo struct {
		gates  []any // per subtask
		notify []chan struct{}
		chans  int
	}
	base := map[*edge]int{}
	heads := map[*chain]*gateInfo{}
	for _, ch := range c.chains {
		h := ch.head()
		if h.kind == kindSource {
			continue
		}
		gi := &gateInfo{}
		for _, e := range h.inputs {
			base[e] = gi.chans
			if c.part[e] == partForward {
				gi.chans++
			} else {
				gi.chans += c.par[e.from]
			}
		}
		for s := 0; s < ch.par; s++ {
			n := make(chan struct{}, 1)
			gi.notify = append(gi.notify, n)
			gi.gates = append(gi.gates, h.in.newGate(gi.chans, cfg.QueueBatches, cfg.BatchSize, n))
		}
		heads[ch] = gi
	}

	for _, ch := range c.chains {
		for s := 0; s < ch.par; s++ {
			t := &task{name: ch.name(), subtask: s, par: ch.par, linger: cfg.Linger, clock: cfg.Clock, ops: make([]opSlot, len(ch.nodes))}
			inputs := map[*node]any{}
			for i := len(ch.nodes) - 1; i >= 0; i-- {
				n := ch.nodes[i]
				b := &buildCtx{t: t, idx: i, oc: &OperatorContext{
					Job: j.name, Operator: n.name, Subtask: s, Parallelism: ch.par,
					MaxParallelism: cfg.MaxParallelism, KeyGroups: keygroup.RangeFor(s, ch.par, cfg.MaxParallelism),
					side: map[string]any{}, m: newOpMetrics(),
				}}
				if from != nil {
					if op, ok := from.m.Operator(n.name); ok {
						b.oc.restore = &opRestore{r: from, op: op}
					}
				}
				var counts []*int64
				var blocked []blockedTimer
				b.oc.chained = len(n.ports) > 0
				for pi, p := range n.ports {
					var outs []any
					for _, e := range p.consumers {
						if pi == 0 && !c.chained[e] {
							b.oc.chained = false
						}
						if c.chained[e] {
							outs = append(outs, inputs[e.to])
							counts = append(counts, inputs[e.to].(counted).counter())
							continue
						}
						gi := heads[c.chainOf[e.to]]
						var targets []target
						if c.part[e] == partForward {
							targets = []target{{gi.gates[s], base[e]}}
						} else {
							for k := 0; k < c.par[e.to]; k++ {
								targets = append(targets, target{gi.gates[k], base[e] + s})
							}
						}
						out, w := p.typ.newWriter(targets, c.part[e], e.hash, cfg.MaxParallelism, cfg.BatchSize, t)
						t.writers = append(t.writers, w)
						outs = append(outs, out)
						counts = append(counts, out.(counted).counter())
						blocked = append(blocked, out.(blockedTimer))
					}
					f := p.typ.fanout(outs)
					b.outs = append(b.outs, f)
					if p.tag != "" {
						b.oc.side[p.tag] = f
					}
				}
				in, life, err := buildNode(n, b)
				if err != nil {
					return nil, fmt.Errorf("dataflow: %s %q (subtask %d): %w", n.kind, n.name, s, err)
				}
				inputs[n] = in
				t.ops[i] = opSlot{name: n.name, oc: b.oc, life: life, outs: counts, blocked: blocked}
				switch l := life.(type) {
				case interface{ counters() *opCounters }:
					t.ops[i].c = l.counters()
				}
				if n.kind == kindSource {
					t.src = life.(sourceRunner)
				}
			}
			if gi := heads[ch]; gi != nil {
				h := ch.head()
				t.inputs = []input{h.in.newInput(gi.gates[s], 0, inputs[h])}
				t.head = inputs[h].(watermarker)
				t.notify = gi.notify[s]
				t.chWm = make([]Timestamp, gi.chans)
				for i := range t.chWm {
					t.chWm[i] = MinWatermark
				}
				t.ended = make([]bool, gi.chans)
				t.idle = make([]bool, gi.chans)
			}
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

// buildNode runs the node's factory, which is user code and may panic.
func buildNode(n *node, b *buildCtx) (in any, life lifecycle, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in factory: %v", r)
		}
	}()
	return n.build(b)
}
