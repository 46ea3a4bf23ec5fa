package dataflow

import (
	"context"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/sluicedata/sluice/internal/exchange"
	"github.com/sluicedata/sluice/internal/keygroup"
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
	newWriter(targets []target, part partitioning, hash func(int) any, maxP, batch int, t *task) (out any, w flusher)
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
	g := &gateInput[T]{gate: gate.(*exchange.Gate[record[T]]), base: base, head: head.(Output[T])}
	g.keyed, _ = head.(keyedHead[T])
	return g
}

func (typed[T]) newWriter(targets []target, kind partitioning, hash func(int) any, maxP, batch int, t *task) (any, flusher) {
	ts := make([]exchange.Target[record[T]], len(targets))
	for i, tg := range targets {
		ts[i] = exchange.Target[record[T]]{Gate: tg.gate.(*exchange.Gate[record[T]]), Channel: tg.channel}
	}
	mode := exchange.RoundRobin // forward: one target; rebalance: round-robin from the producer's own index
	switch kind {
	case partHash:
		mode = exchange.Keyed
	case partBroadcast:
		mode = exchange.Broadcast
	}
	ew, err := exchange.NewWriter(ts, mode, t.subtask, maxP, batch)
	if err != nil {
		panic(fmt.Sprintf("dataflow: %v", err)) // the plan is validated: a programming error
	}
	w := &writerOut[T]{w: ew, t: t}
	if kind == partHash {
		k := &keyedOut[T]{writerOut: w, keyGroups: hash(maxP).(keyGroupsFunc[T]), stage: make([]record[T], 0, batch), kgs: make([]uint16, batch)}
		return k, k
	}
	return w, w
}

// keyGroupsFunc sets kgs[i] to the key group of rs[i].v, for every i.
type keyGroupsFunc[T any] func(rs []record[T], kgs []uint16)

// keyGroupsOf returns the keyGroupsFunc of key over maxP key groups. It
// hashes a whole batch in one loop: the hashes of different records do not
// depend on each other, so the CPU overlaps them.
func keyGroupsOf[K comparable, T any](key func(T) K, maxP int) keyGroupsFunc[T] {
	m := uint64(maxP)
	mask, pow2 := m-1, m&(m-1) == 0
	switch {
	case pow2 && keygroup.FixedSize[K]() == 8 && isSignedInt64[K]():
		var x keygroup.Uint64Hasher
		return func(rs []record[T], kgs []uint16) {
			kgs = kgs[:len(rs)]
			for i := range rs {
				k := key(rs[i].v)
				kgs[i] = uint16(x.Hash(*(*uint64)(unsafe.Pointer(&k))^1<<63) & mask)
			}
		}
	case pow2:
		h := keygroup.HashFuncFor[K]()
		return func(rs []record[T], kgs []uint16) {
			kgs = kgs[:len(rs)]
			for i := range rs {
				kgs[i] = uint16(h(key(rs[i].v)) & mask)
			}
		}
	}
	h := keygroup.HashFuncFor[K]()
	return func(rs []record[T], kgs []uint16) {
		kgs = kgs[:len(rs)]
		for i := range rs {
			kgs[i] = uint16(h(key(rs[i].v)) % m)
		}
	}
}

// isSignedInt64 reports whether K is a signed integer of 8 bytes, whose
// canonical encoding is its bits with the sign flipped, big-endian.
func isSignedInt64[K any]() bool {
	k := reflect.TypeFor[K]().Kind()
	return k == reflect.Int64 || k == reflect.Int && unsafe.Sizeof(int(0)) == 8
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

// keyedOut is the Output of a keyed (hash) exchange. It stages records
// and partitions them a batch at a time: one loop computes the key groups
// of the whole batch, and the writer scatters it by key group, carrying
// each record's key group to the consumer, which then never hashes the key
// again (see gateInput.poll).
type keyedOut[T any] struct {
	*writerOut[T]
	keyGroups keyGroupsFunc[T]
	stage     []record[T]
	kgs       []uint16
}

func (o *keyedOut[T]) Collect(v T, ts Timestamp) {
	o.n++
	o.idle = false
	o.stage = append(o.stage, record[T]{v, ts})
	if len(o.stage) == cap(o.stage) {
		if err := o.partition(o.t.ctx); err != nil {
			o.t.stop(err)
		}
	}
}

// partition hands the staged records to the writer.
func (o *keyedOut[T]) partition(ctx context.Context) error {
	if len(o.stage) == 0 {
		return nil
	}
	o.keyGroups(o.stage, o.kgs)
	err := o.w.WriteKeyed(ctx, o.stage, o.kgs[:len(o.stage)])
	clear(o.stage) // drop references
	o.stage = o.stage[:0]
	return err
}

func (o *keyedOut[T]) Pending() int { return len(o.stage) + o.writerOut.Pending() }

func (o *keyedOut[T]) Flush(ctx context.Context) error {
	if err := o.partition(ctx); err != nil {
		return err
	}
	return o.writerOut.Flush(ctx)
}

func (o *keyedOut[T]) Emit(ctx context.Context, ev exchange.Event) error {
	if err := o.partition(ctx); err != nil {
		return err
	}
	return o.writerOut.Emit(ctx, ev)
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
	gate  *exchange.Gate[record[T]]
	base  int // index of this gate's first channel among the task's channels
	head  Output[T]
	keyed keyedHead[T] // head, if it takes key groups
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
	b := m.Batch
	if kh := g.keyed; kh != nil && b.KeyGroups != nil {
		kh.collectKeyed(b.Records, b.KeyGroups)
	} else {
		head := g.head
		for i := range b.Records {
			r := &b.Records[i]
			head.Collect(r.v, r.ts)
		}
	}
	g.gate.Recycle(ch, b)
	return true
}

// keyedHead is the head of a chain fed by a keyed exchange: it takes a
// batch's records with the key groups the producer computed.
type keyedHead[T any] interface {
	collectKeyed(rs []record[T], kgs []uint16)
}
