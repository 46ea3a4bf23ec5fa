package dataflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/internal/exchange"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// This file is the task's side of checkpoints: control messages from the
// coordinator, barrier alignment, the synchronous capture, the asynchronous
// write, completion notices, and restoring operators from a checkpoint.

type controlKind uint8

const (
	ctlTrigger controlKind = iota
	ctlComplete
	ctlAbort
	ctlDrain
)

// control is a message from the coordinator to a task.
type control struct {
	kind controlKind
	opts *checkpoint.Options // trigger, complete
	id   int64               // abort
}

// mailbox passes control messages to a task. put never blocks (the
// coordinator must not wait on a task held up by backpressure); the task
// checks has cheaply between batches and drains with take.
type mailbox struct {
	mu     sync.Mutex
	msgs   []control
	has    atomic.Bool
	notify chan struct{}
}

func newMailbox() *mailbox { return &mailbox{notify: make(chan struct{}, 1)} }

func (m *mailbox) put(c control) {
	m.mu.Lock()
	m.msgs = append(m.msgs, c)
	m.has.Store(true)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []control {
	m.mu.Lock()
	msgs := m.msgs
	m.msgs = nil
	m.has.Store(false)
	m.mu.Unlock()
	return msgs
}

// runState is shared by the tasks of one run of a job.
type runState struct {
	stopped  atomic.Int32  // tasks told that a stopping savepoint completed
	stopDone chan struct{} // closed when every task was told
	coord    *checkpoint.Coordinator
	tasks    []*task
	writers  sync.WaitGroup // asynchronous snapshot writers
	opts     sync.Map       // checkpoint id -> *checkpoint.Options, for barriers
}

// Trigger, Complete and Abort make runState the coordinator's Runtime.
func (r *runState) Trigger(o *checkpoint.Options, tasks []int) {
	r.opts.Store(o.ID, o)
	for _, i := range tasks {
		r.tasks[i].mail.put(control{kind: ctlTrigger, opts: o})
	}
}

func (r *runState) Complete(o *checkpoint.Options) {
	r.forget(o.ID)
	for _, t := range r.tasks {
		t.mail.put(control{kind: ctlComplete, opts: o})
	}
}

func (r *runState) Abort(id int64) {
	r.forget(id)
	for _, t := range r.tasks {
		t.mail.put(control{kind: ctlAbort, id: id})
	}
}

// forget drops the options of checkpoints before id: their barriers have
// passed every task (the coordinator runs one checkpoint at a time).
func (r *runState) forget(id int64) {
	r.opts.Range(func(k, _ any) bool {
		if k.(int64) < id {
			r.opts.Delete(k)
		}
		return true
	})
}

// alignment tracks the barrier of one checkpoint across a task's channels.
type alignment struct {
	opts *checkpoint.Options
	seen []bool
	n    int
}

// opSnap is what one operator captured synchronously for a checkpoint.
type opSnap struct {
	state    []byte
	hasState bool
	keyed    *state.Snapshot
	timers   timerSnapshot // nil: no timers
}

// handleControl runs the coordinator's messages. It reports whether the
// final checkpoint completed (the task may exit).
func (t *task) handleControl() (final bool) {
	for _, c := range t.mail.take() {
		switch c.kind {
		case ctlTrigger:
			t.checkpoint(c.opts)
		case ctlComplete:
			id := c.opts.ID
			for i := range t.ops {
				t.cur = i
				if err := t.ops[i].life.notifyComplete(t.ctx, id); err != nil {
					t.fail(i, fmt.Errorf("checkpoint %d complete: %w", id, err))
				}
			}
			if c.opts.Final {
				final = true
			}
			if c.opts.Stop && int(t.rs.stopped.Add(1)) == len(t.rs.tasks) {
				close(t.rs.stopDone)
			}
		case ctlDrain:
			t.draining = true
		case ctlAbort:
			// A task aligning this checkpoint keeps aligning: the barrier
			// still travels, and its acknowledgement is ignored.
			for i := range t.ops {
				t.cur = i
				if err := t.ops[i].life.notifyAborted(t.ctx, c.id); err != nil {
					t.fail(i, fmt.Errorf("checkpoint %d aborted: %w", c.id, err))
				}
			}
		}
	}
	return final
}

// onBarrier handles barrier id from channel ch: the channel is held back
// until every live channel has delivered it, then the task snapshots.
func (t *task) onBarrier(ch int, id int64) {
	if t.align.opts == nil {
		o := t.rs.options(id)
		if o == nil {
			t.stop(fmt.Errorf("dataflow: task %s (subtask %d): barrier for unknown checkpoint %d", t.name, t.subtask, id))
		}
		t.align = alignment{opts: o, seen: make([]bool, len(t.chWm))}
	} else if t.align.opts.ID != id {
		t.stop(fmt.Errorf("dataflow: task %s (subtask %d): barrier %d while aligning %d", t.name, t.subtask, id, t.align.opts.ID))
	}
	if !t.align.seen[ch] {
		t.align.seen[ch] = true
		t.align.n++
		t.inputs[0].block(ch)
	}
	t.checkAligned()
}

// checkAligned snapshots once every channel that has not ended delivered the
// barrier being aligned.
func (t *task) checkAligned() {
	if t.align.opts == nil {
		return
	}
	for i, seen := range t.align.seen {
		if !seen && !t.ended[i] {
			return
		}
	}
	o := t.align.opts
	t.align = alignment{}
	t.checkpoint(o)
	t.inputs[0].unblockAll()
}

// checkpoint captures every operator of the chain, head first, forwards the
// barrier, and hands the writing to a goroutine of its own.
func (t *task) checkpoint(o *checkpoint.Options) {
	if o.ID <= t.lastSnap {
		// Already taken: a task that finished right after aligning the
		// barrier is also asked by the coordinator, whose acknowledgement
		// is still on its way.
		return
	}
	t.lastSnap = o.ID
	snaps := make([]opSnap, len(t.ops))
	var err error
	for i := range t.ops {
		t.cur = i
		if snaps[i], err = t.ops[i].life.snapshot(t.ctx, o); err != nil {
			err = t.opErr(i, fmt.Errorf("checkpoint %d: %w", o.ID, err))
			break
		}
	}
	// discard releases the captured snapshots, which a backend's Close
	// waits for.
	discard := func() {
		for _, s := range snaps {
			if s.keyed != nil {
				s.keyed.Discard()
			}
		}
	}
	if !t.inputDone {
		for _, w := range t.writers {
			if werr := w.Emit(t.ctx, exchange.Event{Kind: exchange.Barrier, Value: o.ID}); werr != nil {
				discard()
				t.stop(werr)
			}
		}
		t.flushAt = time.Now().Add(t.linger)
	}
	if err != nil {
		discard()
		t.rs.coord.Decline(o.ID, t.idx, err)
		return
	}
	t.rs.writers.Go(func() { t.writeSnapshot(o, snaps) })
}

// writeSnapshot writes what checkpoint captured and acknowledges it.
func (t *task) writeSnapshot(o *checkpoint.Options, snaps []opSnap) {
	var acks []checkpoint.Ack
	var err error
	for i, s := range snaps {
		a := checkpoint.Ack{Operator: t.ops[i].name, Subtask: t.subtask, Parallelism: t.par}
		if o.Storage != nil && err == nil {
			name := fileSafe(t.ops[i].name) + "." + fmt.Sprint(t.subtask)
			if s.keyed != nil {
				var ref checkpoint.FileRef
				if ref, err = writeFile(t.ctx, o, name+".keyed", s.keyed.Write); err == nil {
					a.Keyed, a.KeyedFull = &ref, s.keyed.Full()
				}
			}
			if s.timers != nil && err == nil {
				var ref checkpoint.FileRef
				if ref, err = writeFile(t.ctx, o, name+".timers", s.timers.write); err == nil {
					a.Timers = &ref
				}
			}
			if s.hasState && err == nil {
				a.State, err = writeBytes(t.ctx, o, name+".state", s.state)
			}
			if err != nil {
				err = &OperatorError{Operator: t.ops[i].name, Subtask: t.subtask, Parallelism: t.par,
					Err: fmt.Errorf("checkpoint %d: write to %s: %w", o.ID, o.Storage.Location(), err)}
			}
		}
		if s.keyed != nil {
			s.keyed.Discard()
		}
		acks = append(acks, a)
	}
	if err != nil {
		t.rs.coord.Decline(o.ID, t.idx, err)
		return
	}
	t.rs.coord.Ack(o.ID, t.idx, acks)
}

func writeBytes(ctx context.Context, o *checkpoint.Options, name string, b []byte) (*checkpoint.FileRef, error) {
	ref, err := writeFile(ctx, o, name, func(ctx context.Context, w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	})
	if err != nil {
		return nil, err
	}
	return &ref, nil
}

func writeFile(ctx context.Context, o *checkpoint.Options, name string, write func(context.Context, io.Writer) (int64, error)) (checkpoint.FileRef, error) {
	w, err := o.Storage.Create(ctx, o.ID, name)
	if err != nil {
		return checkpoint.FileRef{}, err
	}
	if _, err := write(ctx, w); err != nil {
		_ = w.Abort()
		return checkpoint.FileRef{}, err
	}
	ref, err := w.Commit()
	if err != nil {
		_ = w.Abort()
	}
	return ref, err
}

// fileSafe turns an operator name into a file name: unusual characters become
// '_', and a hash keeps distinct names distinct.
func fileSafe(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return fmt.Sprintf("%s-%08x", s, uint32(keygroup.Hash([]byte(name))))
}

// awaitFinal runs after the task finished its input: from now on it
// snapshots on the coordinator's triggers (its state no longer changes), and
// it returns once the final checkpoint is complete, so that two-phase sinks
// commit their last transaction before the job ends.
func (t *task) awaitFinal() error {
	t.inputDone = true
	if o := t.rs.coord.TaskFinished(t.ctx, t.idx); o != nil {
		t.checkpoint(o)
	}
	for {
		if t.handleControl() {
			return nil
		}
		select {
		case <-t.mail.notify:
		case <-t.ctx.Done():
			return t.ctx.Err()
		}
	}
}

// options returns the options of checkpoint id: every barrier of a run's
// checkpoint is preceded by a trigger at the sources, which recorded them.
func (r *runState) options(id int64) *checkpoint.Options {
	v, _ := r.opts.Load(id)
	o, _ := v.(*checkpoint.Options)
	return o
}

// restoreFrom is the checkpoint a run restores from.
type restoreFrom struct {
	storage checkpoint.Storage
	m       *checkpoint.Manifest
}

// opRestore is one operator's part of it.
type opRestore struct {
	r  *restoreFrom
	op *checkpoint.OperatorState
}

func (r *opRestore) readAll(ctx context.Context, ref checkpoint.FileRef) ([]byte, error) {
	rc, err := r.r.storage.Open(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("read %s: %w", ref.Path, err)
	}
	return buf.Bytes(), nil
}

// loadRestored fills oc.Restored from the checkpoint, if the job restores.
func (oc *OperatorContext) loadRestored(ctx context.Context) error {
	r := oc.restore
	if r == nil {
		return nil
	}
	rs := &RestoredState{CheckpointID: r.r.m.ID, Subtasks: make([][]byte, len(r.op.Subtasks))}
	for i, st := range r.op.Subtasks {
		if st.Operator == nil {
			continue
		}
		b, err := r.readAll(ctx, *st.Operator)
		if err != nil {
			return fmt.Errorf("restore state of old subtask %d from checkpoint %d: %w", i, r.r.m.ID, err)
		}
		rs.Subtasks[i] = b
	}
	oc.Restored = rs
	return nil
}

// restoreKeyed loads keyed state and timers of the old subtasks whose key
// groups overlap this subtask's. Timers load on a goroutine of their own
// while the keyed state loads: they touch nothing the backend does.
func (oc *OperatorContext) restoreKeyed(ctx context.Context, be state.Backend, timers timerDriver) error {
	r := oc.restore
	if r == nil {
		return nil
	}
	var chains []state.Chain
	var paths []string
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	type timerFile struct {
		old int
		rng keygroup.Range
		ref checkpoint.FileRef
	}
	var timerFiles []timerFile
	oldPar := r.op.Parallelism
	for i, st := range r.op.Subtasks {
		rng := keygroup.RangeFor(i, oldPar, oc.MaxParallelism)
		if rng.End <= oc.KeyGroups.Start || rng.Start >= oc.KeyGroups.End {
			continue
		}
		if len(st.Keyed) > 0 {
			var ch state.Chain
			for _, ref := range st.Keyed {
				rc, err := r.r.storage.Open(ctx, ref)
				if err != nil {
					return fmt.Errorf("restore keyed state of old subtask %d from checkpoint %d: %w", i, r.r.m.ID, err)
				}
				closers = append(closers, rc)
				ch = append(ch, rc)
				paths = append(paths, ref.Path)
			}
			chains = append(chains, ch)
		}
		if st.Timers != nil {
			timerFiles = append(timerFiles, timerFile{i, rng, *st.Timers})
		}
	}
	timersDone := make(chan error, 1)
	go func() {
		for _, f := range timerFiles {
			rc, err := r.r.storage.Open(ctx, f.ref)
			if err != nil {
				timersDone <- fmt.Errorf("restore timers of old subtask %d from checkpoint %d: %w", f.old, r.r.m.ID, err)
				return
			}
			err = timers.restore(rc, oc.KeyGroups, f.rng)
			rc.Close()
			if err != nil {
				timersDone <- fmt.Errorf("restore timers of old subtask %d from checkpoint %d (%s): %w", f.old, r.r.m.ID, f.ref.Path, err)
				return
			}
		}
		timersDone <- nil
	}()
	var err error
	if len(chains) > 0 {
		if err = be.Restore(ctx, chains...); err != nil {
			if errors.Is(err, state.ErrCorrupt) && !errors.Is(err, checkpoint.ErrCorrupt) {
				err = fmt.Errorf("%w: %w", checkpoint.ErrCorrupt, err)
			}
			err = fmt.Errorf("restore keyed state from checkpoint %d in %s (files %s): %w", r.r.m.ID, r.r.storage.Location(), strings.Join(paths, ", "), err)
		}
	}
	if terr := <-timersDone; err == nil {
		err = terr
	}
	return err
}

// ErrRestore is wrapped by the errors of a checkpoint or savepoint that does
// not fit the job.
var ErrRestore = errors.New("dataflow: cannot restore")

// hasState reports whether any subtask of op saved state.
func hasState(op checkpoint.OperatorState) bool {
	for _, st := range op.Subtasks {
		if len(st.Keyed) > 0 || st.Timers != nil || st.Operator != nil {
			return true
		}
	}
	return false
}

// checkRestore matches the checkpoint's operators with the job's by name.
func (j *Job) checkRestore(c *compiled, r *restoreFrom) error {
	m := r.m
	byName := map[string]*node{}
	for _, ch := range c.chains {
		for _, n := range ch.nodes {
			byName[n.name] = n
		}
	}
	for _, op := range m.Operators {
		n, ok := byName[op.Name]
		if !ok {
			if j.cfg.AllowNonRestoredState || !hasState(op) {
				continue // nothing to lose
			}
			return fmt.Errorf("%w from %s (checkpoint %d): it has state for operator %q, which the job does not have; rename the operator back, or set AllowNonRestoredState to drop that state",
				ErrRestore, r.storage.Location(), m.ID, op.Name)
		}
		keyed := false
		for _, st := range op.Subtasks {
			if len(st.Keyed) > 0 || st.Timers != nil {
				keyed = true
			}
		}
		if keyed && !n.keyed {
			return fmt.Errorf("%w from %s (checkpoint %d): operator %q has keyed state but is not keyed in the job", ErrRestore, r.storage.Location(), m.ID, op.Name)
		}
		if keyed && m.MaxParallelism != j.cfg.MaxParallelism {
			return fmt.Errorf("%w from %s (checkpoint %d): its max parallelism (key groups) is %d, the job's %d; it must not change while keyed state is kept",
				ErrRestore, r.storage.Location(), m.ID, m.MaxParallelism, j.cfg.MaxParallelism)
		}
		if len(op.Subtasks) != op.Parallelism {
			return fmt.Errorf("%w from %s (checkpoint %d): operator %q lists %d subtasks for parallelism %d",
				ErrRestore, r.storage.Location(), m.ID, op.Name, len(op.Subtasks), op.Parallelism)
		}
	}
	return nil
}
