package window

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/sluicedata/sluice/operators"
)

// The ready aggregations below implement operators.AggregateFunction, for
// windows and for the running operators.Aggregate alike (Count and Sum are
// the operators package's own). Their
// accumulators are plain data with exported fields, so the default state codec
// (msgpack) saves them; map keys must be types msgpack encodes as map keys
// (strings, numbers, bools).
//
// Add and Merge may update an accumulator in place (the maps of TopN and
// CountDistinct) and return it: pass each accumulator to at most one call and
// use the result, as operators.Aggregate does. Merge is associative and
// commutative: any grouping and order of merges gives the same result (for
// floating-point sums and averages, up to rounding).
//
// Aggregations that take a function have a Validate method that reports a
// nil function (and TopN a non-positive n), wrapping ErrInvalidAggregation,
// so the operator can fail at build time.

// Number is the constraint of Sum and Avg.
type Number = operators.Number

func nilFunc(what string) error {
	return fmt.Errorf("%w: %s is nil", ErrInvalidAggregation, what)
}

// Count counts the records of a window: operators.Count.
func Count[T any]() operators.CountFunc[T] { return operators.Count[T]() }

// SumAgg is operators.SumFunc with Validate errors wrapping this package's
// ErrInvalidAggregation. Make one with Sum.
type SumAgg[T any, N Number] struct{ operators.SumFunc[T, N] }

// Sum adds up the values that value extracts: operators.Sum.
func Sum[T any, N Number](value func(T) N) SumAgg[T, N] { return SumAgg[T, N]{operators.Sum(value)} }

// Validate reports a nil value function.
func (s SumAgg[T, N]) Validate() error {
	if s.SumFunc.Validate() != nil {
		return nilFunc("Sum's value function")
	}
	return nil
}

// MinMaxAcc is the accumulator of Min and Max.
type MinMaxAcc[V cmp.Ordered] struct {
	// Value is the smallest (Min) or largest (Max) value seen.
	Value V
	// Seen reports whether any value was added.
	Seen bool
}

// MinAgg keeps the smallest value. Make one with Min.
type MinAgg[T any, V cmp.Ordered] struct{ value func(T) V }

// Min keeps the smallest of the values that value extracts, as the builtin
// min orders them: a NaN makes the result NaN. The result of an accumulator
// that saw no value is the zero V; a window is never empty, so a window
// result always has a value.
func Min[T any, V cmp.Ordered](value func(T) V) MinAgg[T, V] { return MinAgg[T, V]{value} }

func (MinAgg[T, V]) CreateAccumulator() MinMaxAcc[V] { return MinMaxAcc[V]{} }
func (m MinAgg[T, V]) Add(acc MinMaxAcc[V], v T) MinMaxAcc[V] {
	return MinAgg[T, V]{}.Merge(acc, MinMaxAcc[V]{Value: m.value(v), Seen: true})
}
func (MinAgg[T, V]) Merge(a, b MinMaxAcc[V]) MinMaxAcc[V] {
	switch {
	case !a.Seen:
		return b
	case !b.Seen:
		return a
	}
	return MinMaxAcc[V]{Value: min(a.Value, b.Value), Seen: true}
}
func (MinAgg[T, V]) Result(acc MinMaxAcc[V]) V { return acc.Value }

// MergesExactly is true: the least of the least values is the least value
// (see operators.ExactMerger).
func (MinAgg[T, V]) MergesExactly() bool { return true }

// Validate reports a nil value function.
func (m MinAgg[T, V]) Validate() error {
	if m.value == nil {
		return nilFunc("Min's value function")
	}
	return nil
}

// MaxAgg keeps the largest value. Make one with Max.
type MaxAgg[T any, V cmp.Ordered] struct{ value func(T) V }

// Max keeps the largest of the values that value extracts, as the builtin max
// orders them: a NaN makes the result NaN. The result of an accumulator that
// saw no value is the zero V.
func Max[T any, V cmp.Ordered](value func(T) V) MaxAgg[T, V] { return MaxAgg[T, V]{value} }

func (MaxAgg[T, V]) CreateAccumulator() MinMaxAcc[V] { return MinMaxAcc[V]{} }
func (m MaxAgg[T, V]) Add(acc MinMaxAcc[V], v T) MinMaxAcc[V] {
	return MaxAgg[T, V]{}.Merge(acc, MinMaxAcc[V]{Value: m.value(v), Seen: true})
}
func (MaxAgg[T, V]) Merge(a, b MinMaxAcc[V]) MinMaxAcc[V] {
	switch {
	case !a.Seen:
		return b
	case !b.Seen:
		return a
	}
	return MinMaxAcc[V]{Value: max(a.Value, b.Value), Seen: true}
}
func (MaxAgg[T, V]) Result(acc MinMaxAcc[V]) V { return acc.Value }

// MergesExactly is true (see operators.ExactMerger).
func (MaxAgg[T, V]) MergesExactly() bool { return true }

// Validate reports a nil value function.
func (m MaxAgg[T, V]) Validate() error {
	if m.value == nil {
		return nilFunc("Max's value function")
	}
	return nil
}

// AvgAcc is the accumulator of Avg.
type AvgAcc struct {
	Sum   float64
	Count int64
}

// AvgAgg averages values. Make one with Avg.
type AvgAgg[T any, N Number] struct{ value func(T) N }

// Avg is the arithmetic mean of the values that value extracts, as a float64
// (the sum is kept in a float64, exact for integer sums up to 2^53). The
// average of no values is NaN (like SQL's NULL); a window is never empty.
func Avg[T any, N Number](value func(T) N) AvgAgg[T, N] { return AvgAgg[T, N]{value} }

func (AvgAgg[T, N]) CreateAccumulator() AvgAcc { return AvgAcc{} }
func (a AvgAgg[T, N]) Add(acc AvgAcc, v T) AvgAcc {
	return AvgAcc{Sum: acc.Sum + float64(a.value(v)), Count: acc.Count + 1}
}
func (AvgAgg[T, N]) Merge(a, b AvgAcc) AvgAcc {
	return AvgAcc{Sum: a.Sum + b.Sum, Count: a.Count + b.Count}
}
func (AvgAgg[T, N]) Result(acc AvgAcc) float64 {
	if acc.Count == 0 {
		return math.NaN()
	}
	return acc.Sum / float64(acc.Count)
}

// MergesExactly reports whether N is an integer type: a float64 sum of
// integers is exact up to 2^53 in any order, one of floating-point values
// depends on the order (see operators.ExactMerger).
func (AvgAgg[T, N]) MergesExactly() bool {
	return operators.Sum(func(T) N { return 0 }).MergesExactly()
}

// Validate reports a nil value function.
func (a AvgAgg[T, N]) Validate() error {
	if a.value == nil {
		return nilFunc("Avg's value function")
	}
	return nil
}

// KeyCount is one entry of a TopN result.
type KeyCount[K any] struct {
	Key   K
	Count int64
}

// CountsAcc is the accumulator of TopN: the exact count of every key.
type CountsAcc[K comparable] struct {
	Counts map[K]int64
}

// TopNAgg keeps the n most frequent keys. Make one with TopN or TopNFunc.
type TopNAgg[T any, K comparable] struct {
	n       int
	key     func(T) K
	compare func(a, b K) int
}

// TopN counts the records of each key that key extracts and results in the n
// keys with the highest counts, highest first; equal counts are ordered by
// key, ascending, so the result is deterministic. Fewer than n keys give a
// shorter result. The counts are exact: the accumulator holds every distinct
// key of the window. n must be positive.
func TopN[T any, K cmp.Ordered](n int, key func(T) K) TopNAgg[T, K] {
	return TopNAgg[T, K]{n: n, key: key, compare: cmp.Compare[K]}
}

// TopNFunc is TopN for keys that are comparable but not ordered: compare
// orders keys of equal count (negative when a comes first) and must be a
// total order for the result to be deterministic.
func TopNFunc[T any, K comparable](n int, key func(T) K, compare func(a, b K) int) TopNAgg[T, K] {
	return TopNAgg[T, K]{n: n, key: key, compare: compare}
}

func (TopNAgg[T, K]) CreateAccumulator() CountsAcc[K] { return CountsAcc[K]{} }
func (t TopNAgg[T, K]) Add(acc CountsAcc[K], v T) CountsAcc[K] {
	if acc.Counts == nil {
		acc.Counts = map[K]int64{}
	}
	acc.Counts[t.key(v)]++
	return acc
}
func (TopNAgg[T, K]) Merge(a, b CountsAcc[K]) CountsAcc[K] {
	if len(a.Counts) < len(b.Counts) {
		a, b = b, a
	}
	for k, n := range b.Counts {
		if a.Counts == nil {
			a.Counts = map[K]int64{}
		}
		a.Counts[k] += n
	}
	return a
}

// MergesExactly is true: counts per key add up (see operators.ExactMerger).
func (TopNAgg[T, K]) MergesExactly() bool { return true }

func (t TopNAgg[T, K]) Result(acc CountsAcc[K]) []KeyCount[K] {
	all := make([]KeyCount[K], 0, len(acc.Counts))
	for k, n := range acc.Counts {
		all = append(all, KeyCount[K]{Key: k, Count: n})
	}
	slices.SortFunc(all, func(a, b KeyCount[K]) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return t.compare(a.Key, b.Key)
	})
	return all[:min(len(all), max(t.n, 0))]
}

// Validate reports a non-positive n or a nil function.
func (t TopNAgg[T, K]) Validate() error {
	switch {
	case t.n <= 0:
		return fmt.Errorf("%w: TopN's n %d must be positive", ErrInvalidAggregation, t.n)
	case t.key == nil:
		return nilFunc("TopN's key function")
	case t.compare == nil:
		return nilFunc("TopNFunc's compare function")
	}
	return nil
}

// DistinctAcc is the accumulator of CountDistinct: the set of keys seen.
type DistinctAcc[K comparable] struct {
	Keys map[K]struct{}
}

// CountDistinctAgg counts distinct keys. Make one with CountDistinct.
type CountDistinctAgg[T any, K comparable] struct{ key func(T) K }

// CountDistinct counts the distinct keys that key extracts, exactly: the
// accumulator holds every distinct key of the window.
func CountDistinct[T any, K comparable](key func(T) K) CountDistinctAgg[T, K] {
	return CountDistinctAgg[T, K]{key}
}

func (CountDistinctAgg[T, K]) CreateAccumulator() DistinctAcc[K] { return DistinctAcc[K]{} }
func (c CountDistinctAgg[T, K]) Add(acc DistinctAcc[K], v T) DistinctAcc[K] {
	if acc.Keys == nil {
		acc.Keys = map[K]struct{}{}
	}
	acc.Keys[c.key(v)] = struct{}{}
	return acc
}
func (CountDistinctAgg[T, K]) Merge(a, b DistinctAcc[K]) DistinctAcc[K] {
	if len(a.Keys) < len(b.Keys) {
		a, b = b, a
	}
	for k := range b.Keys {
		if a.Keys == nil {
			a.Keys = map[K]struct{}{}
		}
		a.Keys[k] = struct{}{}
	}
	return a
}
func (CountDistinctAgg[T, K]) Result(acc DistinctAcc[K]) int64 { return int64(len(acc.Keys)) }

// MergesExactly is true: the union of sets (see operators.ExactMerger).
func (CountDistinctAgg[T, K]) MergesExactly() bool { return true }

// Validate reports a nil key function.
func (c CountDistinctAgg[T, K]) Validate() error {
	if c.key == nil {
		return nilFunc("CountDistinct's key function")
	}
	return nil
}
