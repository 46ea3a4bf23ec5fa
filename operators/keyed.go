package operators

import (
	"github.com/sluicedata/sluice/dataflow"
)

// AggregateFunction folds records into an accumulator and derives a result
// from it. Merge combines two accumulators (used by windows that merge).
type AggregateFunction[In, Acc, Out any] interface {
	CreateAccumulator() Acc
	Add(acc Acc, v In) Acc
	Merge(a, b Acc) Acc
	Result(acc Acc) Out
}

// Reduce keeps, per key, the running reduction of the records seen so far and
// emits the updated value after each record, with that record's event time.
// The first record of a key is emitted as it is.
func Reduce[K comparable, T any](in dataflow.KeyedStream[K, T], name string, fn func(acc, v T) T, opts ...dataflow.Option) dataflow.Stream[T] {
	return dataflow.AddKeyedOperator(in, name, nilIf(fn == nil, func(out dataflow.Output[T]) dataflow.Operator[T] {
		return &reduceOp[K, T]{key: in.KeyFunc(), fn: fn, out: out, acc: map[K]*T{}}
	}), opts...)
}

type reduceOp[K comparable, T any] struct {
	dataflow.OperatorBase
	key func(T) K
	fn  func(T, T) T
	out dataflow.Output[T]
	acc map[K]*T
}

func (o *reduceOp[K, T]) Process(v T, ts dataflow.Timestamp) error {
	k := o.key(v)
	p := o.acc[k]
	if p == nil {
		p = new(T)
		*p = v
		o.acc[k] = p
	} else {
		*p = o.fn(*p, v)
	}
	o.out.Collect(*p, ts)
	return nil
}

// Aggregate keeps, per key, a running accumulator and emits the key with the
// updated result after each record, with that record's event time.
func Aggregate[K comparable, In, Acc, Out any](in dataflow.KeyedStream[K, In], name string, agg AggregateFunction[In, Acc, Out], opts ...dataflow.Option) dataflow.Stream[dataflow.KV[K, Out]] {
	return dataflow.AddKeyedOperator(in, name, nilIf(agg == nil, func(out dataflow.Output[dataflow.KV[K, Out]]) dataflow.Operator[In] {
		return &aggregateOp[K, In, Acc, Out]{key: in.KeyFunc(), agg: agg, out: out, acc: map[K]*Acc{}}
	}), opts...)
}

type aggregateOp[K comparable, In, Acc, Out any] struct {
	dataflow.OperatorBase
	key func(In) K
	agg AggregateFunction[In, Acc, Out]
	out dataflow.Output[dataflow.KV[K, Out]]
	acc map[K]*Acc
}

func (o *aggregateOp[K, In, Acc, Out]) Process(v In, ts dataflow.Timestamp) error {
	k := o.key(v)
	p := o.acc[k]
	if p == nil {
		p = new(Acc)
		*p = o.agg.CreateAccumulator()
		o.acc[k] = p
	}
	*p = o.agg.Add(*p, v)
	o.out.Collect(dataflow.KV[K, Out]{Key: k, Value: o.agg.Result(*p)}, ts)
	return nil
}

// Count counts records.
func Count[T any]() AggregateFunction[T, int64, int64] { return countAgg[T]{} }

type countAgg[T any] struct{}

func (countAgg[T]) CreateAccumulator() int64 { return 0 }
func (countAgg[T]) Add(acc int64, _ T) int64 { return acc + 1 }
func (countAgg[T]) Merge(a, b int64) int64   { return a + b }
func (countAgg[T]) Result(acc int64) int64   { return acc }

// Number is the constraint of Sum.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Sum adds up the values that value extracts.
func Sum[T any, N Number](value func(T) N) AggregateFunction[T, N, N] { return sumAgg[T, N]{value} }

type sumAgg[T any, N Number] struct{ value func(T) N }

func (sumAgg[T, N]) CreateAccumulator() N { return 0 }
func (s sumAgg[T, N]) Add(acc N, v T) N   { return acc + s.value(v) }
func (sumAgg[T, N]) Merge(a, b N) N       { return a + b }
func (sumAgg[T, N]) Result(acc N) N       { return acc }
