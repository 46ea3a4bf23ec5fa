package operators

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keycache"
	"github.com/sluicedata/sluice/state"
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
// The first record of a key is emitted as it is. The reduction is keyed state
// named "reduce" (see package state), so it is snapshotted with the operator.
func Reduce[K comparable, T any](in dataflow.KeyedStream[K, T], name string, fn func(acc, v T) T, opts ...dataflow.Option) dataflow.Stream[T] {
	return dataflow.AddKeyedOperator(in, name, nilIf(fn == nil, func(out dataflow.Output[T]) dataflow.Operator[T] {
		return &reduceOp[K, T]{key: in.KeyFunc(), fn: fn, out: out}
	}), opts...)
}

type reduceOp[K comparable, T any] struct {
	dataflow.OperatorBase
	key   func(T) K
	fn    func(T, T) T
	out   dataflow.Output[T]
	acc   *state.Value[T]
	cache *keycache.Cache[K, T]
}

func (o *reduceOp[K, T]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.acc, err = state.NewValue[T](oc.State(), "reduce")
	o.cache = keycache.New[K, T](oc.State(), oc.MaxParallelism, maxCachedKeys)
	return err
}

func (o *reduceOp[K, T]) Process(v T, ts dataflow.Timestamp) error {
	e, err := cached(o.cache, o.key, v, o.acc)
	if err != nil {
		return err
	}
	if e != nil {
		if e.Dirty { // Dirty: the key has a value (read or reduced)
			v = o.fn(e.Value, v)
		}
		e.Value, e.Dirty = v, true
		o.out.Collect(v, ts)
		return nil
	}
	acc, ok, err := o.acc.Get()
	if err != nil {
		return err
	}
	if ok {
		v = o.fn(acc, v)
	}
	if err := o.acc.Update(v); err != nil {
		return err
	}
	o.out.Collect(v, ts)
	return nil
}

// Prefetch loads the cache entries of the records' keys (see
// dataflow.Prefetcher).
func (o *reduceOp[K, T]) Prefetch(vs []T) { keycache.PrefetchRecords(o.cache, o.key, vs) }

// SnapshotState writes the cached values to keyed state, which the runtime
// captures next.
func (o *reduceOp[K, T]) SnapshotState(context.Context, int64) ([]byte, error) {
	return nil, flushCache(o.cache, o.acc)
}

// Aggregate keeps, per key, a running accumulator and emits the key with the
// updated result after each record, with that record's event time. The
// accumulator is keyed state named "aggregate" (see package state): it must be
// a type the state codec can encode.
func Aggregate[K comparable, In, Acc, Out any](in dataflow.KeyedStream[K, In], name string, agg AggregateFunction[In, Acc, Out], opts ...dataflow.Option) dataflow.Stream[dataflow.KV[K, Out]] {
	if v, ok := agg.(interface{ Validate() error }); ok && in.Stream().Job() != nil {
		if err := v.Validate(); err != nil {
			in.Stream().Job().ReportError(name, err)
		}
	}
	return dataflow.AddKeyedOperator(in, name, nilIf(agg == nil, func(out dataflow.Output[dataflow.KV[K, Out]]) dataflow.Operator[In] {
		return &aggregateOp[K, In, Acc, Out]{key: in.KeyFunc(), agg: agg, out: out}
	}), opts...)
}

type aggregateOp[K comparable, In, Acc, Out any] struct {
	dataflow.OperatorBase
	key   func(In) K
	agg   AggregateFunction[In, Acc, Out]
	out   dataflow.Output[dataflow.KV[K, Out]]
	acc   *state.Value[Acc]
	cache *keycache.Cache[K, Acc]
}

func (o *aggregateOp[K, In, Acc, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.acc, err = state.NewValue[Acc](oc.State(), "aggregate")
	o.cache = keycache.New[K, Acc](oc.State(), oc.MaxParallelism, maxCachedKeys)
	return err
}

// Prefetch loads the cache entries of the records' keys (see
// dataflow.Prefetcher).
func (o *aggregateOp[K, In, Acc, Out]) Prefetch(vs []In) {
	keycache.PrefetchRecords(o.cache, o.key, vs)
}

// SnapshotState writes the cached accumulators to keyed state, which the
// runtime captures next.
func (o *aggregateOp[K, In, Acc, Out]) SnapshotState(context.Context, int64) ([]byte, error) {
	return nil, flushCache(o.cache, o.acc)
}

func (o *aggregateOp[K, In, Acc, Out]) Process(v In, ts dataflow.Timestamp) error {
	e, err := cached(o.cache, o.key, v, o.acc)
	if err != nil {
		return err
	}
	if e != nil {
		if !e.Dirty { // Dirty: the key has an accumulator (read or made)
			e.Value = o.agg.CreateAccumulator()
		}
		e.Value, e.Dirty = o.agg.Add(e.Value, v), true
		o.out.Collect(dataflow.KV[K, Out]{Key: e.Key, Value: o.agg.Result(e.Value)}, ts)
		return nil
	}
	acc, ok, err := o.acc.Get()
	if err != nil {
		return err
	}
	if !ok {
		acc = o.agg.CreateAccumulator()
	}
	acc = o.agg.Add(acc, v)
	if err := o.acc.Update(acc); err != nil {
		return err
	}
	o.out.Collect(dataflow.KV[K, Out]{Key: o.key(v), Value: o.agg.Result(acc)}, ts)
	return nil
}

// maxCachedKeys bounds the keys whose values the keyed Reduce and Aggregate
// keep in memory between checkpoints (see keycache); tests lower it.
var maxCachedKeys = 1 << 16

// cached returns the cache entry of v's key, reading the key's value from
// st into the cache on a miss (taking it out of st when the cache owns its
// values): an entry that is not Dirty has no value in keyed state. It
// returns nil when the cache is off: the caller then uses st itself, with
// the runtime's current key.
func cached[K comparable, In, V any](c *keycache.Cache[K, V], key func(In) K, v In, st *state.Value[V]) (*keycache.Entry[K, V], error) {
	if !c.On() {
		return nil, nil
	}
	k := key(v)
	if e := c.Get(k); e != nil {
		return e, nil
	}
	if c.Full() {
		if err := flushCache(c, st); err != nil {
			return nil, err
		}
		c.SetCurrentKey(k) // the flush moved the backend to other keys
		if !c.On() {
			return nil, nil
		}
	}
	val, ok, err := st.Get()
	if err != nil {
		return nil, err
	}
	if ok && c.Owns() {
		if err := st.Clear(); err != nil {
			return nil, err
		}
	}
	e := c.Put(k, val)
	e.Dirty = ok
	return e, nil
}

// flushCache writes the cache's changed values to st.
func flushCache[K comparable, V any](c *keycache.Cache[K, V], st *state.Value[V]) error {
	err := c.Flush(func(e *keycache.Entry[K, V]) error { return st.Update(e.Value) })
	if err != nil {
		return fmt.Errorf("write cached values to keyed state: %w", err)
	}
	return nil
}

// ExactMerger is an optional interface of an AggregateFunction: MergesExactly
// reports that Merge is exact, that is, merging the accumulators of any two
// runs of records gives the accumulator that adding all of them would, in
// any grouping and order. A runtime may then add records into partial
// accumulators before an exchange and merge those after it (a local-global
// aggregation, as window.Aggregate does), and get the same results. Sums of
// floating-point numbers are not exact (their rounding depends on the
// order), nor is a Merge that is only correct for some inputs.
type ExactMerger interface {
	MergesExactly() bool
}

// Count counts records.
func Count[T any]() CountFunc[T] { return CountFunc[T]{} }

// CountFunc is the AggregateFunction of Count.
type CountFunc[T any] struct{}

func (CountFunc[T]) CreateAccumulator() int64 { return 0 }
func (CountFunc[T]) Add(acc int64, _ T) int64 { return acc + 1 }
func (CountFunc[T]) Merge(a, b int64) int64   { return a + b }
func (CountFunc[T]) Result(acc int64) int64   { return acc }

// MergesExactly is true: counts add up exactly (see ExactMerger).
func (CountFunc[T]) MergesExactly() bool { return true }

// Number is the constraint of Sum.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// ErrInvalidAggregation is wrapped by the Validate errors of aggregate
// functions (a nil function); Aggregate reports them at build time.
var ErrInvalidAggregation = errors.New("operators: invalid aggregation")

// Sum adds up the values that value extracts. An empty sum is 0; integer sums
// wrap around on overflow, as Go's + does.
func Sum[T any, N Number](value func(T) N) SumFunc[T, N] { return SumFunc[T, N]{value} }

// SumFunc is the AggregateFunction of Sum.
type SumFunc[T any, N Number] struct{ value func(T) N }

func (SumFunc[T, N]) CreateAccumulator() N { return 0 }
func (s SumFunc[T, N]) Add(acc N, v T) N   { return acc + s.value(v) }
func (SumFunc[T, N]) Merge(a, b N) N       { return a + b }
func (SumFunc[T, N]) Result(acc N) N       { return acc }

// MergesExactly reports whether N is an integer type, whose sums (wrapping
// around on overflow) do not depend on the order of the additions; floating-
// point sums do (see ExactMerger).
func (SumFunc[T, N]) MergesExactly() bool { return isInteger[N]() }

func isInteger[N Number]() bool {
	switch reflect.TypeFor[N]().Kind() {
	case reflect.Float32, reflect.Float64:
		return false
	}
	return true
}

// Validate reports a nil value function.
func (s SumFunc[T, N]) Validate() error {
	if s.value == nil {
		return fmt.Errorf("%w: Sum's value function is nil", ErrInvalidAggregation)
	}
	return nil
}
