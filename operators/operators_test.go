package operators_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, job *dataflow.Job) {
	t.Helper()
	require.NoError(t, job.Run(context.Background()))
}

func TestMapFilterFlatMapKeepOrderAndTimestamps(t *testing.T) {
	job := dataflow.NewJob("basic")
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int]{Count: 6, Generate: func(s int64) int { return int(s) }})
	m := operators.Map(src, "square", func(v int) int { return v * v })
	f := operators.Filter(m, "even", func(v int) bool { return v%2 == 0 })
	fm := operators.FlatMap(f, "repeat", func(v int, emit func(int)) error {
		for range v % 3 {
			emit(v)
		}
		return nil
	})
	out := memory.Collect(fm, "out")
	run(t, job)
	// squares 0 1 4 9 16 25 -> even 0 4 16 -> repeated v%3 times: 0x0, 4x1, 16x1
	require.Equal(t, []int{4, 16}, out.Values())
}

func TestFlatMapErrorFailsJob(t *testing.T) {
	job := dataflow.NewJob("flatmap-error")
	src := memory.FromSlice(job, "src", []int{1, 2, 3})
	fm := operators.FlatMap(src, "explode", func(v int, emit func(int)) error {
		if v == 2 {
			return errors.New("cannot explode 2")
		}
		emit(v)
		return nil
	})
	memory.Discard(fm, "sink")
	err := job.Run(context.Background())
	require.ErrorContains(t, err, `operator "explode" (subtask 1/1) at slice index 1: cannot explode 2`)
}

func TestReduceEmitsRunningValuePerKey(t *testing.T) {
	job := dataflow.NewJob("reduce")
	src := memory.FromSlice(job, "src", []int{1, 2, 3, 4, 5, 6})
	sums := operators.Reduce(dataflow.KeyBy(src, func(v int) bool { return v%2 == 0 }), "sum", func(a, b int) int { return a + b })
	out := memory.Collect(sums, "out")
	run(t, job)
	require.Equal(t, []int{1, 2, 4, 6, 9, 12}, out.Values())
}

type avg struct{ Sum, N float64 }

type avgFn struct{}

func (avgFn) CreateAccumulator() avg   { return avg{} }
func (avgFn) Add(a avg, v float64) avg { return avg{a.Sum + v, a.N + 1} }
func (avgFn) Merge(a, b avg) avg       { return avg{a.Sum + b.Sum, a.N + b.N} }
func (avgFn) Result(a avg) float64     { return a.Sum / a.N }

func TestAggregateWithCustomFunctionAndParallelism(t *testing.T) {
	for _, p := range []int{1, 3} {
		job := dataflow.NewJob("aggregate", dataflow.Config{Parallelism: p})
		src := memory.FromSlice(job, "src", []float64{1, 2, 3, 4, 10, 20})
		avgs := operators.Aggregate(dataflow.KeyBy(src, func(v float64) bool { return v >= 10 }), "avg", operators.AggregateFunction[float64, avg, float64](avgFn{}))
		out := memory.Collect(avgs, "out")
		run(t, job)
		last := map[bool]float64{}
		for _, kv := range out.Values() {
			last[kv.Key] = kv.Value
		}
		require.Equal(t, map[bool]float64{false: 2.5, true: 15}, last, "parallelism %d", p)
	}
}

func TestCountAndSum(t *testing.T) {
	job := dataflow.NewJob("count-sum")
	src := memory.FromSlice(job, "src", []string{"a", "bb", "a", "ccc"})
	ks := dataflow.KeyBy(src, func(s string) string { return s })
	counts := memory.Collect(operators.Aggregate(ks, "count", operators.Count[string]()), "counts")
	lens := memory.Collect(operators.Aggregate(ks, "length", operators.Sum(func(s string) int { return len(s) })), "lengths")
	run(t, job)
	require.Equal(t, []dataflow.KV[string, int64]{{Key: "a", Value: 1}, {Key: "bb", Value: 1}, {Key: "a", Value: 2}, {Key: "ccc", Value: 1}}, counts.Values())
	require.Equal(t, []dataflow.KV[string, int]{{Key: "a", Value: 1}, {Key: "bb", Value: 2}, {Key: "a", Value: 2}, {Key: "ccc", Value: 3}}, lens.Values())
	f := operators.Count[int]()
	require.Equal(t, int64(5), f.Merge(2, 3))
}

func TestProcessFinishAndSideOutputWithParallelism(t *testing.T) {
	job := dataflow.NewJob("process", dataflow.Config{Parallelism: 2})
	src := memory.FromSlice(job, "src", []int{1, 2, 3, 4, 5, 6, 7, 8})
	big := dataflow.NewOutputTag[int]("big")
	small := operators.Process(dataflow.Rebalance(src), "split", func(ctx *operators.ProcessContext[int], v int) error {
		if v > 5 {
			operators.EmitSide(ctx, big, v)
			return nil
		}
		ctx.Emit(v)
		return nil
	})
	smallOut := memory.Collect(small, "small")
	bigOut := memory.Collect(dataflow.SideOutput(small, big), "bigs")
	run(t, job)
	s, b := smallOut.Values(), bigOut.Values()
	slices.Sort(s)
	slices.Sort(b)
	require.Equal(t, []int{1, 2, 3, 4, 5}, s)
	require.Equal(t, []int{6, 7, 8}, b)
}

func TestNilFunctionsAreBuildErrors(t *testing.T) {
	job := dataflow.NewJob("nil")
	src := memory.FromSlice(job, "src", []int{1})
	memory.Discard(operators.Map[int, int](src, "map", nil), "s1")
	memory.Discard(operators.FlatMap[int, int](src, "flatmap", nil), "s2")
	memory.Discard(operators.Process[int, int](src, "process", nil), "s3")
	ks := dataflow.KeyBy(src, func(v int) int { return v })
	memory.Discard(operators.Reduce(ks, "reduce", nil), "s4")
	memory.Discard(operators.Aggregate[int, int, int64, int64](ks, "aggregate", nil), "s5")
	err := job.Validate()
	for _, name := range []string{"map", "flatmap", "process", "reduce", "aggregate"} {
		require.ErrorContains(t, err, `nil function: operator "`+name+`"`)
	}
}

func TestInvalidAggregateFunctionIsABuildError(t *testing.T) {
	job := dataflow.NewJob("bad-sum")
	src := memory.FromSlice(job, "src", []int{1})
	memory.Discard(operators.Aggregate(dataflow.KeyBy(src, func(v int) int { return v }), "sum", operators.Sum[int, int](nil)), "sink")
	err := job.Validate()
	require.ErrorIs(t, err, operators.ErrInvalidAggregation)
	require.ErrorContains(t, err, `operator "sum": operators: invalid aggregation: Sum's value function is nil`)
}
