package operators

import (
	"context"

	"github.com/sluicedata/sluice/dataflow"
)

// KeyedContext is a ProcessContext that also knows the current record's key.
// Keyed state declared in Open (on OperatorContext.State) is scoped to it.
type KeyedContext[K comparable, Out any] struct {
	ProcessContext[Out]
	key K
}

// Key is the key of the record being processed.
func (c *KeyedContext[K, Out]) Key() K { return c.key }

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
