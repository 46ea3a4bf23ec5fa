package dataflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

func TestBuildErrorsNameTheOperatorAndNothingRuns(t *testing.T) {
	var factoryCalls atomic.Int64
	source := func(job *dataflow.Job, name string, opts ...dataflow.Option) dataflow.Stream[int] {
		return dataflow.AddSource(job, name, func() dataflow.Source[int] {
			factoryCalls.Add(1)
			return &funcSource[int]{poll: func(context.Context, dataflow.Output[int]) (dataflow.SourceStatus, error) {
				return dataflow.EndOfInput, nil
			}}
		}, opts...)
	}
	cases := []struct {
		name  string
		build func(job *dataflow.Job)
		is    error
		says  string
	}{
		{"name used twice", func(job *dataflow.Job) {
			s := source(job, "src")
			memory.Discard(operators.Map(s, "dup", func(v int) int { return v }), "dup")
		}, dataflow.ErrDuplicateName, `"dup" names operator #1 and #2`},
		{"empty name", func(job *dataflow.Job) {
			memory.Discard(operators.Map(source(job, "src"), "", func(v int) int { return v }), "sink")
		}, dataflow.ErrEmptyName, "operator #1"},
		{"nil function", func(job *dataflow.Job) {
			memory.Discard(operators.Filter(source(job, "src"), "keep", nil), "sink")
		}, dataflow.ErrNilFunction, `operator "keep"`},
		{"nil key function", func(job *dataflow.Job) {
			memory.Discard(operators.Aggregate(dataflow.KeyBy[string](source(job, "src"), nil), "agg", operators.Count[int]()), "sink")
		}, dataflow.ErrNilFunction, `KeyBy on the output of "src"`},
		{"stream with no consumer", func(job *dataflow.Job) {
			s := source(job, "src")
			operators.Map(s, "dangling", func(v int) int { return v })
			memory.Discard(s, "sink")
		}, dataflow.ErrNoConsumer, `operator "dangling" is not used`},
		{"unused side output", func(job *dataflow.Job) {
			s := operators.Map(source(job, "src"), "m", func(v int) int { return v })
			memory.Discard(s, "sink")
			dataflow.SideOutput(s, dataflow.NewOutputTag[string]("late"))
		}, dataflow.ErrNoConsumer, `side output "late" of "m" is not used`},
		{"no sink", func(job *dataflow.Job) {
			source(job, "src")
		}, dataflow.ErrNoSink, `job "bad"`},
		{"zero parallelism", func(job *dataflow.Job) {
			memory.Discard(source(job, "src", dataflow.Parallelism(0)), "sink")
		}, dataflow.ErrParallelism, `operator "src": parallelism 0`},
		{"parallelism above max", func(job *dataflow.Job) {
			memory.Discard(source(job, "src"), "sink", dataflow.Parallelism(129))
		}, dataflow.ErrParallelism, `operator "sink": parallelism 129 is above max parallelism 128`},
		{"forward with different parallelism", func(job *dataflow.Job) {
			memory.Discard(dataflow.Forward(source(job, "src")), "sink", dataflow.Parallelism(2))
		}, dataflow.ErrForward, `"src" (parallelism 1) to "sink" (parallelism 2)`},
		{"side output tag with two types", func(job *dataflow.Job) {
			s := operators.Map(source(job, "src"), "m", func(v int) int { return v })
			memory.Discard(s, "sink")
			memory.Discard(dataflow.SideOutput(s, dataflow.NewOutputTag[string]("x")), "a")
			memory.Discard(dataflow.SideOutput(s, dataflow.NewOutputTag[int]("x")), "b")
		}, dataflow.ErrSideOutputType, `operator "m" tag "x" as string and int`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := dataflow.NewJob("bad")
			c.build(job)
			for _, err := range []error{job.Validate(), job.Run(context.Background())} {
				require.ErrorIs(t, err, c.is)
				require.ErrorContains(t, err, c.says)
			}
			_, err := job.Plan()
			require.ErrorIs(t, err, c.is)
			require.Zero(t, factoryCalls.Load(), "nothing may start for an invalid job")
		})
	}
}

func TestBadJobConfig(t *testing.T) {
	job := dataflow.NewJob("cfg", dataflow.Config{Parallelism: 300})
	memory.Discard(memory.FromSlice(job, "src", []int{1}), "sink")
	require.ErrorIs(t, job.Validate(), dataflow.ErrParallelism)
	require.ErrorContains(t, job.Validate(), "job default: parallelism 300 is above max parallelism 128")

	job = dataflow.NewJob("cfg", dataflow.Config{BatchSize: -1})
	memory.Discard(memory.FromSlice(job, "src", []int{1}), "sink")
	require.ErrorContains(t, job.Validate(), "batch size -1 must be at least 1")
}

func TestAllErrorsAreReportedTogether(t *testing.T) {
	job := dataflow.NewJob("many")
	s := memory.FromSlice(job, "src", []int{1})
	operators.Map(s, "a", (func(int) int)(nil))
	operators.Map(s, "a", func(v int) int { return v })
	err := job.Validate()
	require.ErrorIs(t, err, dataflow.ErrNilFunction)
	require.ErrorIs(t, err, dataflow.ErrDuplicateName)
	require.ErrorIs(t, err, dataflow.ErrNoSink)
}

func planJob(t *testing.T) *dataflow.Plan {
	t.Helper()
	job := dataflow.NewJob("views", dataflow.Config{Parallelism: 2})
	src := memory.FromSlice(job, "views", []string{"a", "b"})
	valid := operators.Filter(src, "valid", func(s string) bool { return s != "" })
	counts := operators.Aggregate(dataflow.KeyBy(valid, func(s string) string { return s }), "count", operators.Count[string](), dataflow.Parallelism(4))
	memory.Discard(counts, "sink", dataflow.Parallelism(4))
	memory.Discard(dataflow.Broadcast(valid), "audit", dataflow.Parallelism(1))
	p, err := job.Plan()
	require.NoError(t, err)
	return p
}

func TestPlanTextDOTAndJSON(t *testing.T) {
	p := planJob(t)
	require.Equal(t, `job "views" (max parallelism 128)
task 0 x2: views -> valid
  source "views" out=string
  operator "valid" in=string out=string
task 1 x4: count -> sink
  operator "count" in=string out=dataflow.KV[string,int64] keyed
  sink "sink" in=dataflow.KV[string,int64]
task 2 x1: audit
  sink "audit" in=string
exchange hash: valid => count
exchange broadcast: valid => audit
`, p.String())

	dot := p.DOT()
	require.True(t, strings.HasPrefix(dot, `digraph "views" {`))
	require.Contains(t, dot, `subgraph cluster_1 {`)
	require.Contains(t, dot, `n1 -> n2 [label="hash"];`)
	require.Contains(t, dot, `n0 -> n1 [label="chained", style=dashed];`)

	js, err := p.JSON()
	require.NoError(t, err)
	var back dataflow.Plan
	require.NoError(t, json.Unmarshal(js, &back))
	require.Equal(t, *p, back)
	require.Len(t, back.Chains, 3)
	require.Equal(t, []string{"count", "sink"}, back.Chains[1].Operators)
	require.True(t, back.Operators[2].Keyed)
}
