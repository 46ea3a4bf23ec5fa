package operators

import (
	"github.com/sluicedata/sluice/dataflow"
)

// Map applies fn to every record.
func Map[In, Out any](in dataflow.Stream[In], name string, fn func(In) Out, opts ...dataflow.Option) dataflow.Stream[Out] {
	return dataflow.AddOperator(in, name, nilIf(fn == nil, func(out dataflow.Output[Out]) dataflow.Operator[In] {
		return &mapOp[In, Out]{fn: fn, out: out}
	}), opts...)
}

type mapOp[In, Out any] struct {
	dataflow.OperatorBase
	fn  func(In) Out
	out dataflow.Output[Out]
}

func (o *mapOp[In, Out]) Process(v In, ts dataflow.Timestamp) error {
	o.out.Collect(o.fn(v), ts)
	return nil
}

// Filter keeps the records for which keep returns true.
func Filter[T any](in dataflow.Stream[T], name string, keep func(T) bool, opts ...dataflow.Option) dataflow.Stream[T] {
	return dataflow.AddOperator(in, name, nilIf(keep == nil, func(out dataflow.Output[T]) dataflow.Operator[T] {
		return &filterOp[T]{keep: keep, out: out}
	}), opts...)
}

type filterOp[T any] struct {
	dataflow.OperatorBase
	keep func(T) bool
	out  dataflow.Output[T]
}

func (o *filterOp[T]) Process(v T, ts dataflow.Timestamp) error {
	if o.keep(v) {
		o.out.Collect(v, ts)
	}
	return nil
}

// FlatMap calls fn for every record; fn emits zero or more results through
// emit, each with the input's event time. An error fails the job.
func FlatMap[In, Out any](in dataflow.Stream[In], name string, fn func(v In, emit func(Out)) error, opts ...dataflow.Option) dataflow.Stream[Out] {
	return dataflow.AddOperator(in, name, nilIf(fn == nil, func(out dataflow.Output[Out]) dataflow.Operator[In] {
		o := &flatMapOp[In, Out]{fn: fn, out: out}
		o.emit = func(v Out) { o.out.Collect(v, o.ts) }
		return o
	}), opts...)
}

type flatMapOp[In, Out any] struct {
	dataflow.OperatorBase
	fn   func(In, func(Out)) error
	out  dataflow.Output[Out]
	emit func(Out)
	ts   dataflow.Timestamp
}

func (o *flatMapOp[In, Out]) Process(v In, ts dataflow.Timestamp) error {
	o.ts = ts
	return o.fn(v, o.emit)
}

// nilIf returns nil instead of f when cond holds, so that the dataflow layer
// reports a nil user function as a build error naming the operator.
func nilIf[F any](cond bool, f F) F {
	if cond {
		var zero F
		return zero
	}
	return f
}
