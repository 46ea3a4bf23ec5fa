package operators

import (
	"context"
	"fmt"

	"github.com/sluicedata/sluice/dataflow"
)

// KeyedContext is a ProcessContext that also knows the current record's key.
// Keyed state declared in Open (on OperatorContext.State) is scoped to it.
type KeyedContext[K comparable, Out any] struct {
	ProcessContext[Out]
	key K
}

// Key is the key of the record being processed, or of the timer that fired.
func (c *KeyedContext[K, Out]) Key() K { return c.key }

// Timers registers and deletes timers for the current key. When one fires, the
// function's OnTimer runs (see TimerFunction).
func (c *KeyedContext[K, Out]) Timers() dataflow.TimerService { return c.oc.Timers() }

// TimerFunction is implemented by keyed process functions that register
// timers. In OnTimer, ctx.Key() is the timer's key, keyed state is scoped to
// it, and for an event-time timer emitted records carry the timer's time.
type TimerFunction[K comparable, Out any] interface {
	OnTimer(ctx *KeyedContext[K, Out], timer dataflow.Timer) error
}

// KeyedProcessFunction handles one record of a keyed stream at a time. Declare
// state in Open (implement Opener) with the functions of package state on
// oc.State(); a value may also implement Finisher and Closer.
type KeyedProcessFunction[K comparable, In, Out any] interface {
	ProcessElement(ctx *KeyedContext[K, Out], v In) error
}

// KeyedProcess runs a KeyedProcessFunction made by newFn, one per subtask, on a
// keyed stream: records are partitioned by key, and keyed state is scoped to
// the current record's key.
func KeyedProcess[K comparable, In, Out any](in dataflow.KeyedStream[K, In], name string, newFn func() KeyedProcessFunction[K, In, Out], opts ...dataflow.Option) dataflow.Stream[Out] {
	return dataflow.AddKeyedOperator(in, name, nilIf(newFn == nil, func(out dataflow.Output[Out]) dataflow.Operator[In] {
		o := &keyedProcessOp[K, In, Out]{fn: newFn(), key: in.KeyFunc()}
		o.ctx.out = out
		return o
	}), opts...)
}

type keyedProcessOp[K comparable, In, Out any] struct {
	fn  KeyedProcessFunction[K, In, Out]
	key func(In) K
	ctx KeyedContext[K, Out]
}

func (o *keyedProcessOp[K, In, Out]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	o.ctx.oc = oc
	if op, ok := o.fn.(Opener); ok {
		return op.Open(ctx, oc)
	}
	return nil
}

func (o *keyedProcessOp[K, In, Out]) Process(v In, ts dataflow.Timestamp) error {
	o.ctx.ts = ts
	o.ctx.key = o.key(v)
	return o.fn.ProcessElement(&o.ctx, v)
}

func (o *keyedProcessOp[K, In, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }

// OnTimer makes the operator a dataflow.TimerHandler.
func (o *keyedProcessOp[K, In, Out]) OnTimer(key K, timer dataflow.Timer) error {
	f, ok := o.fn.(TimerFunction[K, Out])
	if !ok {
		return fmt.Errorf("%w: the function %T has no OnTimer", dataflow.ErrNoTimerHandler, o.fn)
	}
	o.ctx.key = key
	o.ctx.ts = dataflow.NoTimestamp
	if timer.Domain == dataflow.EventTime {
		o.ctx.ts = timer.Time
	}
	return f.OnTimer(&o.ctx, timer)
}

func (o *keyedProcessOp[K, In, Out]) Finish(context.Context) error {
	if f, ok := o.fn.(Finisher[Out]); ok {
		o.ctx.ts = dataflow.NoTimestamp
		var zero K
		o.ctx.key = zero
		return f.Finish(&o.ctx.ProcessContext)
	}
	return nil
}

func (o *keyedProcessOp[K, In, Out]) Close() error {
	if c, ok := o.fn.(Closer); ok {
		return c.Close()
	}
	return nil
}
