package dataflow

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/internal/exchange"
	"github.com/sluicedata/sluice/state"
)

// lifecycle is the untyped side of an operator that the task drives.
type lifecycle interface {
	open(ctx context.Context) error
	finish(ctx context.Context) error
	close() error
	snapshot(ctx context.Context, o *checkpoint.Options) (opSnap, error)
	notifyComplete(ctx context.Context, id int64) error
	notifyAborted(ctx context.Context, id int64) error
}

// watermarker is the untyped part of an Output.
type watermarker interface {
	EmitWatermark(wm Timestamp)
	MarkIdle()
}

// task runs one subtask of one chain in one goroutine.
type task struct {
	// ctx lives exactly as long as one Run: Output.Collect has no context
	// parameter (it is called per record), but a full exchange must still
	// give way to cancellation, so the writers read it from here.
	ctx     context.Context
	name    string
	subtask int
	par     int
	ops     []opSlot
	opened  int  // ops from this index on were opened and must be closed
	cur     int  // index in ops of the operator running user code, for errors
	polling bool // records are flowing: a failure has a source position

	src    sourceRunner // set if the chain starts with a source
	inputs []input
	head   watermarker // the chain head's input, for watermarks from the network
	notify chan struct{}

	writers []flusher
	// batched are the chained keyed operators that prefetch (Prefetcher),
	// in chain order: flushBatches runs their buffered records.
	batched []batchedSlot
	linger  time.Duration
	flushAt time.Time

	timers []timerSlot // keyed operators' timer services, for processing time
	wake   *time.Timer // wakes an idle task for its next processing-time timer
	clock  func() time.Time

	chWm     []Timestamp // watermark per input channel
	ended    []bool
	idle     []bool // channel marked idle and not active since
	nEnded   int
	wm       Timestamp
	headIdle bool // the task told its outputs it is idle

	// checkpoints
	rs        *runState // nil in the TestHarness
	idx       int       // index among the run's tasks
	mail      *mailbox
	align     alignment
	inputDone bool  // finished: snapshots on trigger, forwards no barrier
	draining  bool  // a source told to end its input (Job.Drain)
	lastSnap  int64 // id of the last checkpoint snapshotted
}

type timerSlot struct {
	idx int // operator index, for errors
	d   timerDriver
}

type opSlot struct {
	name string
	oc   *OperatorContext
	life lifecycle
	// metrics: the operator's own counters (nil for sources' input side),
	// the counters of what it emits to, and its exchange writers.
	c       *opCounters
	outs    []*int64
	blocked []blockedTimer
}

type sourceRunner interface {
	poll(ctx context.Context) (SourceStatus, error)
	emitWatermark(wm Timestamp)
	position() string
}

// abort unwinds a task from deep inside a chain of Collect calls.
type abort struct{ err error }

// stop ends the task with err (already wrapped, or a context error).
func (t *task) stop(err error) { panic(abort{err}) }

// fail ends the task with err raised by operator i.
func (t *task) fail(i int, err error) { panic(abort{t.opErr(i, err)}) }

func (t *task) opErr(i int, err error) error {
	var oe *OperatorError
	if errors.As(err, &oe) || errors.Is(err, context.Canceled) && t.ctx.Err() != nil {
		return err
	}
	oe = &OperatorError{Operator: t.ops[i].name, Subtask: t.subtask, Parallelism: t.par, Err: err}
	if t.src != nil && t.polling {
		oe.Position = t.src.position()
		if n := t.batchedAfter(i); n > 0 {
			oe.Position += fmt.Sprintf(" (the failing record came %d records before it: the operator takes its input in batches)", n)
		}
	}
	return oe
}

func (t *task) recovered(r any) error {
	if a, ok := r.(abort); ok {
		return a.err
	}
	return t.opErr(t.cur, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
}

// run executes the task until end of input, failure or cancellation.
func (t *task) run() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = t.recovered(r)
		}
		if cerr := t.closeOps(); err == nil {
			err = cerr
		}
	}()
	if err := t.open(); err != nil {
		return err
	}
	if t.src != nil {
		err = t.runSource()
	} else {
		err = t.runInputs()
	}
	if err != nil {
		return err
	}
	if err := t.finish(); err != nil {
		return err
	}
	if t.rs != nil {
		return t.awaitFinal()
	}
	return nil
}

// open opens the operators from the tail, so every operator is ready before
// anything reaches it. t.opened tracks the first one opened (or tried), so
// that closeOps closes exactly those, even after a panic.
func (t *task) open() error {
	t.opened = len(t.ops)
	for i := len(t.ops) - 1; i >= 0; i-- {
		t.cur = i
		t.opened = i
		if err := t.ops[i].life.open(t.ctx); err != nil {
			return t.opErr(i, fmt.Errorf("open: %w", err))
		}
	}
	t.wm = MinWatermark
	t.flushAt = time.Now().Add(t.linger)
	return nil
}

// guard runs f, turning a failure inside the task into an error.
func (t *task) guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = t.recovered(r)
		}
	}()
	return f()
}

// closeOps closes the operators that were opened (from t.opened on), even
// after a failure, and reports the first error. It runs once.
func (t *task) closeOps() (err error) {
	if t.wake != nil {
		t.wake.Stop()
	}
	from := t.opened
	t.opened = len(t.ops)
	for i := from; i < len(t.ops); i++ {
		func() {
			defer func() {
				if r := recover(); r != nil && err == nil {
					err = t.opErr(i, fmt.Errorf("panic in close: %v", r))
				}
			}()
			if cerr := t.ops[i].life.close(); cerr != nil && err == nil {
				err = t.opErr(i, fmt.Errorf("close: %w", cerr))
			}
		}()
	}
	return err
}

func (t *task) runSource() error {
	done := t.ctx.Done()
	t.polling = true
	defer func() { t.polling = false }()
	for {
		select {
		case <-done:
			return t.ctx.Err()
		default:
		}
		if t.mail != nil && t.mail.has.Load() {
			t.handleControl()
			if t.draining {
				t.src.emitWatermark(MaxWatermark)
				return nil
			}
		}
		t.cur = 0
		st, err := t.src.poll(t.ctx)
		t.flushBatches()
		if err != nil {
			return t.opErr(0, err)
		}
		switch st {
		case MoreAvailable:
			t.tick()
		case NothingAvailable:
			if len(t.timers) > 0 {
				t.fireProcessingTimers(t.clock())
			}
			t.flush()
		case EndOfInput:
			t.src.emitWatermark(MaxWatermark)
			return nil
		}
	}
}

func (t *task) runInputs() error {
	for t.nEnded < len(t.chWm) {
		if t.mail != nil && t.mail.has.Load() {
			t.handleControl()
		}
		progressed := false
		for _, in := range t.inputs {
			if in.poll(t) {
				progressed = true
				t.flushBatches()
			}
		}
		if progressed {
			t.tick()
			continue
		}
		// Out of input: send what is buffered before waiting, so records never
		// sit in a batch while the task idles.
		t.flush()
		var wake <-chan time.Time
		if next, ok := t.nextProcessingTimer(); ok {
			d := next.Time().Sub(t.clock())
			if d <= 0 {
				t.fireProcessingTimers(t.clock())
				continue
			}
			if t.wake == nil {
				t.wake = time.NewTimer(d)
			} else {
				t.wake.Reset(d)
			}
			wake = t.wake.C
		}
		var mail <-chan struct{}
		if t.mail != nil {
			mail = t.mail.notify
		}
		select {
		case <-t.notify:
		case <-mail:
			t.handleControl()
		case <-wake:
			t.fireProcessingTimers(t.clock())
		case <-t.ctx.Done():
			return t.ctx.Err()
		}
	}
	if t.wm != MaxWatermark {
		t.wm = MaxWatermark
		t.head.EmitWatermark(MaxWatermark)
	}
	return nil
}

// finish runs after MaxWatermark: operators flush in chain order, then every
// output channel is told the input has ended.
func (t *task) finish() error {
	t.flushBatches()
	for i := range t.ops {
		t.cur = i
		if err := t.ops[i].life.finish(t.ctx); err != nil {
			return t.opErr(i, fmt.Errorf("finish: %w", err))
		}
	}
	for _, w := range t.writers {
		if err := w.Emit(t.ctx, exchange.Event{Kind: exchange.EndOfInput}); err != nil {
			return err
		}
	}
	return nil
}

func (t *task) onEvent(ch int, ev exchange.Event) {
	switch ev.Kind {
	case exchange.Watermark:
		if t.idle[ch] {
			t.activate(ch)
		}
		if wm := Timestamp(ev.Value); wm > t.chWm[ch] {
			t.chWm[ch] = wm
			t.advanceWatermark()
		}
	case exchange.Idle:
		if !t.idle[ch] {
			t.idle[ch] = true
			t.advanceWatermark()
		}
	case exchange.EndOfInput:
		if !t.ended[ch] {
			t.ended[ch] = true
			t.nEnded++
			t.advanceWatermark()
			t.checkAligned()
		}
	case exchange.Barrier:
		t.onBarrier(ch, ev.Value)
	default:
		t.stop(fmt.Errorf("dataflow: task %s (subtask %d): unexpected event kind %d on channel %d", t.name, t.subtask, ev.Kind, ch))
	}
}

// advanceWatermark moves the task's watermark to the minimum over the input
// channels that have neither ended nor gone idle, if that is higher than the
// current one. When every channel that has not ended is idle, the task marks
// its own outputs idle.
func (t *task) advanceWatermark() {
	minWm := MaxWatermark
	live, active := false, false
	for i, wm := range t.chWm {
		if t.ended[i] {
			continue
		}
		live = true
		if t.idle[i] {
			continue
		}
		active = true
		if wm < minWm {
			minWm = wm
		}
	}
	if live && !active {
		if !t.headIdle {
			t.headIdle = true
			t.head.MarkIdle()
		}
		return
	}
	t.headIdle = false
	if !active || minWm <= t.wm {
		return
	}
	t.wm = minWm
	t.head.EmitWatermark(minWm)
}

// activate makes an idle channel count again. Its watermark may be behind the
// task's: the task's watermark does not go back, it waits for the channel to
// catch up.
func (t *task) activate(ch int) {
	t.idle[ch] = false
	t.headIdle = false
}

// tick runs after each input batch or source poll: it flushes the outputs
// once the linger time has passed and fires due processing-time timers.
func (t *task) tick() {
	t.publish()
	if len(t.writers) == 0 && len(t.timers) == 0 {
		return
	}
	if len(t.writers) > 0 {
		if now := time.Now(); now.After(t.flushAt) {
			t.flush()
			t.flushAt = now.Add(t.linger)
		}
	}
	if len(t.timers) > 0 {
		t.fireProcessingTimers(t.clock())
	}
}

func (t *task) fireProcessingTimers(now time.Time) {
	t.flushBatches()
	ts := TimestampOf(now)
	for _, s := range t.timers {
		t.cur = s.idx
		if err := s.d.fireProcessing(ts); err != nil {
			t.fail(s.idx, err)
		}
	}
	t.flushBatches() // what the timers emitted into a prefetching operator
}

func (t *task) nextProcessingTimer() (Timestamp, bool) {
	var next Timestamp
	found := false
	for _, s := range t.timers {
		if ts, ok := s.d.nextProcessing(); ok && (!found || ts < next) {
			next, found = ts, true
		}
	}
	return next, found
}

func (t *task) flush() {
	t.flushBatches()
	t.publish()
	for _, w := range t.writers {
		if w.Pending() > 0 {
			if err := w.Flush(t.ctx); err != nil {
				t.stop(err)
			}
		}
	}
}

// link is an operator inside a chain: its upstream calls it directly.
type link[In any] struct {
	cnt opCounters
	op  Operator[In]
	// pf is op, if it prefetches: a keyed link then buffers the records
	// Collect gives it, up to prefetchBatch, and runs them as a batch
	// (runBatch) when the buffer is full and before anything else reaches
	// the operator (a watermark, a snapshot, the end of input, a
	// processing-time timer) or the task polls again (task.flushBatches).
	pf   Prefetcher[In]
	buf  []record[In]
	vals []In // the values of a batch, for Prefetch
	// after is, while runBatch runs the buffer, the number of its records
	// after the one being processed, for error positions; else 0.
	after int
	t     *task
	idx   int
	oc    *OperatorContext
	outs  []watermarker
	// Keyed operators: openKeyed makes the state backend and the function that
	// sets the current key from a record and its key group (-1: not known);
	// setKey runs before every Process.
	openKeyed func(ctx context.Context) (func(In, int), state.Backend, timerDriver, error)
	setKey    func(In, int)
	backend   state.Backend
	timers    timerDriver
}

func newLink[In any](b *buildCtx, op Operator[In]) *link[In] {
	return &link[In]{op: op, t: b.t, idx: b.idx, oc: b.oc, outs: b.watermarkers()}
}

func (l *link[In]) Collect(v In, ts Timestamp) {
	if l.buf != nil {
		l.buf = append(l.buf, record[In]{v: v, ts: ts})
		if len(l.buf) == prefetchBatch {
			l.flushBatch()
		}
		return
	}
	t := l.t
	prev := t.cur
	t.cur = l.idx
	l.cnt.in++
	if l.setKey != nil {
		l.setKey(v, -1)
	}
	if err := l.op.Process(v, ts); err != nil {
		t.fail(l.idx, err)
	}
	t.cur = prev
}

// collectKeyed is Collect for the records of a batch of a keyed exchange,
// each with the key group the producer computed (kgs, parallel to rs; see
// keyedHead): one call per batch, so that the loop over its records runs
// here, with the current operator and the count set once.
func (l *link[In]) collectKeyed(rs []record[In], kgs []uint16) {
	if l.pf == nil {
		l.runBatch(rs, kgs)
		return
	}
	l.flushBatch()
	for len(rs) > 0 {
		n := min(len(rs), prefetchBatch)
		l.runBatch(rs[:n], kgs[:n])
		rs, kgs = rs[n:], kgs[n:]
	}
}

// prefetchBatch is the number of records a Prefetcher is given at once:
// enough for their cache misses to overlap, few enough for what Prefetch
// loads to stay in the CPU caches until Process.
const prefetchBatch = 128

// runBatch processes rs, with their key groups kgs if not nil, after
// Prefetch if the operator has it.
func (l *link[In]) runBatch(rs []record[In], kgs []uint16) {
	t := l.t
	prev := t.cur
	t.cur = l.idx
	l.cnt.in += int64(len(rs))
	if l.pf != nil {
		l.vals = l.vals[:0]
		for i := range rs {
			l.vals = append(l.vals, rs[i].v)
		}
		l.pf.Prefetch(l.vals)
		clear(l.vals) // drop the references the values hold
	}
	buffered := len(l.buf) > 0 && &rs[0] == &l.buf[0]
	for i := range rs {
		r := &rs[i]
		if buffered {
			l.after = len(rs) - 1 - i
		}
		if l.setKey != nil {
			kg := -1
			if kgs != nil {
				kg = int(kgs[i])
			}
			l.setKey(r.v, kg)
		}
		if err := l.op.Process(r.v, r.ts); err != nil {
			t.fail(l.idx, err)
		}
	}
	l.after = 0
	t.cur = prev
}

// pendingAfter is the number of buffered records after the one being
// processed.
func (l *link[In]) pendingAfter() int { return l.after }

// flushBatch runs the records Collect buffered.
func (l *link[In]) flushBatch() {
	if len(l.buf) == 0 {
		return
	}
	l.runBatch(l.buf, nil)
	clear(l.buf)
	l.buf = l.buf[:0]
}

// batchedLink is the untyped side of a link that buffers records.
type batchedLink interface {
	flushBatch()
	pendingAfter() int
}

// flushBatches runs the records the chain's prefetching operators
// buffered, upstream first, so that what one emits reaches the next before
// its turn.
func (t *task) flushBatches() {
	for _, b := range t.batched {
		b.l.flushBatch()
	}
}

func (l *link[In]) counter() *int64       { return &l.cnt.in }
func (l *link[In]) counters() *opCounters { return &l.cnt }

func (l *link[In]) EmitWatermark(wm Timestamp) {
	l.flushBatch()
	l.cnt.wm = wm
	t := l.t
	prev := t.cur
	t.cur = l.idx
	if l.timers != nil {
		if err := l.timers.fireEvent(wm); err != nil {
			t.fail(l.idx, err)
		}
	}
	if err := l.op.ProcessWatermark(wm); err != nil {
		t.fail(l.idx, fmt.Errorf("watermark %v: %w", wm, err))
	}
	t.cur = prev
	for _, o := range l.outs {
		o.EmitWatermark(wm)
	}
}

func (l *link[In]) MarkIdle() {
	l.flushBatch()
	for _, o := range l.outs {
		o.MarkIdle()
	}
}

func (l *link[In]) open(ctx context.Context) error {
	if l.op == nil {
		return errors.New("operator factory returned nil")
	}
	if err := l.oc.loadRestored(ctx); err != nil {
		return err
	}
	if l.openKeyed != nil {
		setKey, be, timers, err := l.openKeyed(ctx)
		if err != nil {
			return err
		}
		l.setKey, l.backend, l.oc.state, l.timers = setKey, be, be, timers
		l.t.timers = append(l.t.timers, timerSlot{idx: l.idx, d: timers})
		if pf, ok := l.op.(Prefetcher[In]); ok {
			l.pf, l.buf = pf, make([]record[In], 0, prefetchBatch)
			l.t.addBatched(l.idx, l)
		}
		if err := l.oc.restoreKeyed(ctx, be, timers); err != nil {
			return err
		}
	}
	return l.op.Open(ctx, l.oc)
}

func (l *link[In]) snapshot(ctx context.Context, o *checkpoint.Options) (s opSnap, err error) {
	l.flushBatch()
	if sn, ok := l.op.(Snapshotter); ok {
		if s.state, err = sn.SnapshotState(ctx, o.ID); err != nil {
			return s, fmt.Errorf("snapshot state: %w", err)
		}
		s.hasState = s.state != nil
	}
	if o.Storage == nil {
		return s, nil
	}
	if l.timers != nil {
		if s.timers, err = l.timers.snapshot(); err != nil {
			return s, err
		}
	}
	if l.backend != nil {
		if s.keyed, err = l.backend.Snapshot(o.ID, state.SnapshotOptions{Full: o.Full}); err != nil {
			return s, fmt.Errorf("snapshot keyed state: %w", err)
		}
	}
	return s, nil
}

func (l *link[In]) notifyComplete(ctx context.Context, id int64) error {
	return notifyComplete(ctx, l.op, id)
}

func (l *link[In]) notifyAborted(ctx context.Context, id int64) error {
	return notifyAborted(ctx, l.op, id)
}

func notifyComplete(ctx context.Context, op any, id int64) error {
	if cl, ok := op.(CheckpointListener); ok {
		return cl.NotifyCheckpointComplete(ctx, id)
	}
	return nil
}

func notifyAborted(ctx context.Context, op any, id int64) error {
	if cl, ok := op.(CheckpointAbortListener); ok {
		return cl.NotifyCheckpointAborted(ctx, id)
	}
	return nil
}

func (l *link[In]) finish(ctx context.Context) error {
	l.flushBatch()
	return l.op.Finish(ctx)
}

// close closes the operator, then its state backend.
func (l *link[In]) close() error {
	var err error
	if l.op != nil {
		err = l.op.Close()
	}
	if l.backend != nil {
		if berr := l.backend.Close(); err == nil && berr != nil {
			err = fmt.Errorf("state backend: %w", berr)
		}
	}
	return err
}

type sourceNode[T any] struct {
	src Source[T]
	out *monotonicOutput[T]
	oc  *OperatorContext
}

func (s *sourceNode[T]) open(ctx context.Context) error {
	if err := s.oc.loadRestored(ctx); err != nil {
		return err
	}
	return s.src.Open(ctx, s.oc)
}

func (s *sourceNode[T]) snapshot(ctx context.Context, o *checkpoint.Options) (snap opSnap, err error) {
	if sn, ok := s.src.(Snapshotter); ok {
		if snap.state, err = sn.SnapshotState(ctx, o.ID); err != nil {
			return snap, fmt.Errorf("snapshot state: %w", err)
		}
		snap.hasState = snap.state != nil
	}
	return snap, nil
}

func (s *sourceNode[T]) notifyComplete(ctx context.Context, id int64) error {
	return notifyComplete(ctx, s.src, id)
}

func (s *sourceNode[T]) notifyAborted(ctx context.Context, id int64) error {
	return notifyAborted(ctx, s.src, id)
}
func (s *sourceNode[T]) counters() *opCounters        { return &s.out.cnt }
func (s *sourceNode[T]) finish(context.Context) error { return nil }
func (s *sourceNode[T]) close() error                 { return s.src.Close() }
func (s *sourceNode[T]) poll(ctx context.Context) (SourceStatus, error) {
	return s.src.Poll(ctx, s.out)
}
func (s *sourceNode[T]) emitWatermark(wm Timestamp) { s.out.EmitWatermark(wm) }
func (s *sourceNode[T]) position() string {
	if p, ok := s.src.(Positioner); ok {
		return p.Position()
	}
	return ""
}

// batchedAfter is, for the operator at index i of the chain while it runs
// records it buffered, the number of them after the one it is processing.
func (t *task) batchedAfter(i int) int {
	for _, b := range t.batched {
		if b.idx == i {
			return b.l.pendingAfter()
		}
	}
	return 0
}

// addBatched adds l, the operator at index idx of the chain, to the links
// flushBatches runs, in chain order (operators open from the tail).
func (t *task) addBatched(idx int, l batchedLink) {
	i, _ := slices.BinarySearchFunc(t.batched, idx, func(b batchedSlot, idx int) int { return b.idx - idx })
	t.batched = slices.Insert(t.batched, i, batchedSlot{idx, l})
}

type batchedSlot struct {
	idx int
	l   batchedLink
}
