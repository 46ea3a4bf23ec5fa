package operators

import (
	"context"

	"github.com/sluicedata/sluice/dataflow"
)

// ProcessContext is what a process function sees of the record being processed
// and of its subtask. It is valid only during the call it is passed to.
type ProcessContext[Out any] struct {
	oc  *dataflow.OperatorContext
	out dataflow.Output[Out]
	ts  dataflow.Timestamp
}

// Timestamp is the event time of the current record (dataflow.NoTimestamp if it has none).
func (c *ProcessContext[Out]) Timestamp() dataflow.Timestamp { return c.ts }

// Emit sends v downstream with the current record's event time.
func (c *ProcessContext[Out]) Emit(v Out) { c.out.Collect(v, c.ts) }

// EmitAt sends v downstream with event time ts.
func (c *ProcessContext[Out]) EmitAt(v Out, ts dataflow.Timestamp) { c.out.Collect(v, ts) }

// Operator describes the subtask: operator name, subtask index, parallelism.
func (c *ProcessContext[Out]) Operator() *dataflow.OperatorContext { return c.oc }

// EmitSide sends v to the side output tag, with the current record's event
// time. Read it with dataflow.SideOutput on the operator's output stream.
func EmitSide[T, Out any](c *ProcessContext[Out], tag dataflow.OutputTag[T], v T) {
	tag.Output(c.oc).Collect(v, c.ts)
}

// ProcessFunction handles one record at a time, with access to its timestamp
// and to side outputs. A value may also implement Opener, Finisher and Closer.
type ProcessFunction[In, Out any] interface {
	ProcessElement(ctx *ProcessContext[Out], v In) error
}

// ProcessFunc adapts a plain function to ProcessFunction.
type ProcessFunc[In, Out any] func(ctx *ProcessContext[Out], v In) error

// ProcessElement calls f.
func (f ProcessFunc[In, Out]) ProcessElement(ctx *ProcessContext[Out], v In) error { return f(ctx, v) }

// Opener is implemented by functions that prepare per-subtask resources.
type Opener interface {
	Open(ctx context.Context, oc *dataflow.OperatorContext) error
}

// Finisher is implemented by functions that emit something at end of input.
type Finisher[Out any] interface {
	Finish(ctx *ProcessContext[Out]) error
}

// Closer is implemented by functions that release resources; Close is called
// also after a failure.
type Closer interface {
	Close() error
}

// Process runs fn for every record. fn is shared by all subtasks (see the
// package doc); use RichProcess for per-subtask fields.
func Process[In, Out any](in dataflow.Stream[In], name string, fn func(ctx *ProcessContext[Out], v In) error, opts ...dataflow.Option) dataflow.Stream[Out] {
	var newFn func() ProcessFunction[In, Out]
	if fn != nil {
		newFn = func() ProcessFunction[In, Out] { return ProcessFunc[In, Out](fn) }
	}
	return RichProcess(in, name, newFn, opts...)
}

// RichProcess runs a ProcessFunction made by newFn, one per subtask. The
// function's Open, Finish and Close run if it implements Opener, Finisher and
// Closer.
func RichProcess[In, Out any](in dataflow.Stream[In], name string, newFn func() ProcessFunction[In, Out], opts ...dataflow.Option) dataflow.Stream[Out] {
	return dataflow.AddOperator(in, name, nilIf(newFn == nil, func(out dataflow.Output[Out]) dataflow.Operator[In] {
		return &processOp[In, Out]{fn: newFn(), ctx: ProcessContext[Out]{out: out}}
	}), opts...)
}

type processOp[In, Out any] struct {
	fn  ProcessFunction[In, Out]
	ctx ProcessContext[Out]
}

func (o *processOp[In, Out]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	o.ctx.oc = oc
	if op, ok := o.fn.(Opener); ok {
		return op.Open(ctx, oc)
	}
	return nil
}

func (o *processOp[In, Out]) Process(v In, ts dataflow.Timestamp) error {
	o.ctx.ts = ts
	return o.fn.ProcessElement(&o.ctx, v)
}

func (o *processOp[In, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }

func (o *processOp[In, Out]) Finish(context.Context) error {
	if f, ok := o.fn.(Finisher[Out]); ok {
		o.ctx.ts = dataflow.NoTimestamp
		return f.Finish(&o.ctx)
	}
	return nil
}

func (o *processOp[In, Out]) Close() error {
	if c, ok := o.fn.(Closer); ok {
		return c.Close()
	}
	return nil
}
