package dataflow

import (
	"context"
	"time"

	"github.com/sluicedata/sluice/internal/exchange"
)

// record is a value with its event time, as it travels between tasks.
type record[T any] struct {
	v  T
	ts Timestamp
}

// elemType builds the typed runtime pieces for one element type. It is used
// while a job is being set up, never per record.
type elemType interface {
	name() string
	newGate(channels, capacity, batch int, notify chan struct{}) any
	newInput(gate any, base int, head any) input
	newWriter(targets []target, part partitioning, hash func() any, maxP, batch int, t *task) (out any, w flusher)
	fanout(outs []any) any
}

type target struct {
	gate    any
	channel int
}

// flusher is the untyped side of an exchange writer that the task drives.
type flusher interface {
	Flush(ctx context.Context) error
	Emit(ctx context.Context, ev exchange.Event) error
	Pending() int
}

type typed[T any] struct{}

func typeOf[T any]() elemType { return typed[T]{} }

func (typed[T]) name() string { return typeName[T]() }

func (typed[T]) newGate(channels, capacity, batch int, notify chan struct{}) any {
	return exchange.NewGate[record[T]](channels, capacity, batch, notify)
}

func (typed[T]) newInput(gate any, base int, head any) input {
	return &gateInput[T]{gate: gate.(*exchange.Gate[record[T]]), base: base, head: head.(Output[T])}
}

func (typed[T]) newWriter(targets []target, kind partitioning, hash func() any, maxP, batch int, t *task) (any, flusher) {
	ts := make([]exchange.Target[record[T]], len(targets))
	for i, tg := range targets {
		ts[i] = exchange.Target[record[T]]{Gate: tg.gate.(*exchange.Gate[record[T]]), Channel: tg.channel}
	}
	var part exchange.Partitioner[record[T]]
	switch kind {
	case partHash:
		h := hash().(func(T) uint64)
		m := uint64(maxP)
		part = func(r record[T], n int) int {
			kg := int(h(r.v) % m)
			return kg * n / maxP
		}
	default: // rebalance (forward and single targets never call the partitioner)
		// Round-robin, starting at the producer's own index so that the
		// spread is deterministic and producers do not all start on target 0.
		next := t.subtask
		part = func(_ record[T], n int) int {
			if next >= n {
				next %= n
			}
			i := next
			next++
			return i
		}
	}
	w := &writerOut[T]{w: exchange.NewWriter(ts, part, kind == partBroadcast, batch), t: t}
	return w, w
}

func (typed[T]) fanout(outs []any) any {
	switch len(outs) {
	case 0:
		return discard[T]{}
	case 1:
		return outs[0].(Output[T])
	}
	f := make(fanout[T], len(outs))
	for i, o := range outs {
		f[i] = o.(Output[T])
	}
	return f
}

type fanout[T any] []Output[T]

func (f fanout[T]) Collect(v T, ts Timestamp) {
	for _, o := range f {
		o.Collect(v, ts)
	}
}

func (f fanout[T]) EmitWatermark(wm Timestamp) {
	for _, o := range f {
		o.EmitWatermark(wm)
	}
}

func (f fanout[T]) MarkIdle() {
	for _, o := range f {
		o.MarkIdle()
	}
}

// writerOut is the Output that feeds an exchange.
//
// A watermark is not sent at once: the writer keeps the latest one and sends
// it after its records at the next flush (when the task runs out of input,
// after the linger time, or before any other event). Sending it would force
// every partly filled batch out, and a source that emits a watermark per poll
// would then defeat batching. Delaying a watermark is always safe, and the
// delay is bounded by the linger.
type writerOut[T any] struct {
	w     *exchange.Writer[record[T]]
	n     int64 // records written, for metrics
	t     *task
	wm    Timestamp
	hasWm bool
	idle  bool // an Idle event is held; any record or watermark cancels it
}

func (o *writerOut[T]) counter() *int64 { return &o.n }

// Blocked is the time the writer waited for room downstream.
func (o *writerOut[T]) Blocked() time.Duration { return o.w.Blocked() }

func (o *writerOut[T]) Collect(v T, ts Timestamp) {
	o.n++
	o.idle = false
	if err := o.w.Write(o.t.ctx, record[T]{v, ts}); err != nil {
		o.t.stop(err)
	}
}

func (o *writerOut[T]) EmitWatermark(wm Timestamp) {
	o.wm, o.hasWm, o.idle = wm, true, false
}

func (o *writerOut[T]) MarkIdle() { o.idle = true }

// Pending counts buffered records, and a held watermark or idle mark as one each.
func (o *writerOut[T]) Pending() int {
	n := o.w.Pending()
	if o.hasWm {
		n++
	}
	if o.idle {
		n++
	}
	return n
}

// Flush sends the buffered records, then the held watermark, then the held
// idle mark.
func (o *writerOut[T]) Flush(ctx context.Context) error {
	if err := o.w.Flush(ctx); err != nil {
		return err
	}
	if o.hasWm {
		o.hasWm = false
		if err := o.w.Emit(ctx, exchange.Event{Kind: exchange.Watermark, Value: int64(o.wm)}); err != nil {
			return err
		}
	}
	if o.idle {
		o.idle = false
		return o.w.Emit(ctx, exchange.Event{Kind: exchange.Idle})
	}
	return nil
}

// Emit sends ev after everything buffered, the held watermark included.
func (o *writerOut[T]) Emit(ctx context.Context, ev exchange.Event) error {
	if err := o.Flush(ctx); err != nil {
		return err
	}
	return o.w.Emit(ctx, ev)
}

// input is one typed gate of a task, driven by the task's untyped loop.
type input interface {
	// poll handles one message if one is ready and reports whether it did.
	poll(t *task) bool
	// block holds back channel ch (barrier alignment); unblockAll releases all.
	block(ch int)
	unblockAll()
}

func (g *gateInput[T]) block(ch int) { g.gate.Block(ch - g.base) }
func (g *gateInput[T]) unblockAll()  { g.gate.UnblockAll() }

type gateInput[T any] struct {
	gate *exchange.Gate[record[T]]
	base int // index of this gate's first channel among the task's channels
	head Output[T]
}

func (g *gateInput[T]) poll(t *task) bool {
	ch, m, ok := g.gate.Poll()
	if !ok {
		return false
	}
	if m.Event.Kind != exchange.NoEvent {
		t.onEvent(g.base+ch, m.Event)
		return true
	}
	if t.idle[g.base+ch] {
		t.activate(g.base + ch)
	}
	head := g.head
	for i := range m.Records {
		r := &m.Records[i]
		head.Collect(r.v, r.ts)
	}
	g.gate.Recycle(ch, m.Records)
	return true
}
