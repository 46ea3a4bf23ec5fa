package window_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

// tick is an event of the pre-aggregation tests: reading seq of sensor at
// At ms, a value to add up.
type tick struct {
	Sensor int64
	Seq    int64
	At     int64
	Value  int64
}

const tickSensors = 37

// genTick makes event seq: 50 events per ms of event time, up to 30 ms out
// of order; with late set, one event in 97 is 400 ms behind, well past the
// watermarks' bound of 40 ms, so that it is late for its windows.
func genTick(late bool) func(seq int64) tick {
	return func(seq int64) tick {
		at := seq/50 - seq*13%31
		if late && seq%97 == 0 {
			at -= 400
		}
		return tick{Sensor: seq * 7 % tickSensors, Seq: seq, At: at, Value: seq % 1000}
	}
}

func tickTime(e tick) time.Time { return time.UnixMilli(e.At) }

type tickResult = window.Result[int64, string]

// preAggJob aggregates the ticks of each sensor in assigner's windows with
// agg (rendered with %v), from one source subtask into the window operator
// at parallelism p. With one producer the window operator's watermark is
// the source's: which records are late does not depend on timing.
func preAggJob[Acc, Out any](cfg dataflow.Config, n int64, late bool, p int, assigner window.Assigner, agg operators.AggregateFunction[tick, Acc, Out], opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
	job := dataflow.NewJob("preagg", cfg)
	src := memory.Generator(job, "ticks", memory.GeneratorConfig[tick]{Count: n, Generate: genTick(late),
		Watermarks: dataflow.BoundedOutOfOrderness(40*time.Millisecond, tickTime)}, dataflow.Parallelism(1))
	res := window.Aggregate(dataflow.KeyBy(src, func(e tick) int64 { return e.Sensor }), "agg", assigner, agg,
		append(opts, window.With(dataflow.Parallelism(p)))...)
	str := operators.Map(res, "fmt", func(r window.Result[int64, Out]) tickResult {
		return tickResult{Key: r.Key, Window: r.Window, Value: fmt.Sprint(r.Value)}
	})
	return job, memory.Collect(str, "out")
}

func sortTicks(rs []tickResult) []tickResult {
	slices.SortFunc(rs, func(a, b tickResult) int {
		return cmp.Or(cmp.Compare(a.Window.Start, b.Window.Start), cmp.Compare(a.Key, b.Key))
	})
	return rs
}

// batchTicks is the batch computation of a window aggregation over the
// ticks, for input with no late events: every window of every event.
func batchTicks[Acc, Out any](n int64, size, slide time.Duration, agg operators.AggregateFunction[tick, Acc, Out]) []tickResult {
	return batchTicksOf(genTick(false), func(int64) bool { return true }, n, size, slide, agg)
}

// batchTicksOf is batchTicks over the events gen makes that keep allows.
func batchTicksOf[Acc, Out any](gen func(int64) tick, keep func(int64) bool, n int64, size, slide time.Duration, agg operators.AggregateFunction[tick, Acc, Out]) []tickResult {
	type kw struct {
		k     int64
		start int64
	}
	accs := map[kw]Acc{}
	sz, sl := size.Milliseconds(), slide.Milliseconds()
	for seq := range n {
		if !keep(seq) {
			continue
		}
		e := gen(seq)
		last := e.At - ((e.At%sl)+sl)%sl
		for start := last; start > e.At-sz; start -= sl {
			k := kw{e.Sensor, start}
			a, ok := accs[k]
			if !ok {
				a = agg.CreateAccumulator()
			}
			accs[k] = agg.Add(a, e)
		}
	}
	var out []tickResult
	for k, a := range accs {
		start := dataflow.Timestamp(k.start) * dataflow.Timestamp(time.Millisecond)
		out = append(out, tickResult{Key: k.k, Value: fmt.Sprint(agg.Result(a)),
			Window: window.Window{Start: start, End: start + dataflow.Timestamp(size)}})
	}
	return sortTicks(out)
}

func planOf(t *testing.T, job *dataflow.Job) string {
	t.Helper()
	p, err := job.Plan()
	require.NoError(t, err)
	return p.String()
}

// The local pre-aggregation gives what adding the records one by one gives:
// for tumbling and sliding windows and every ready aggregation, out of order
// and with late events, at several parallelisms, with it on (the default),
// forced on and off; and, without late events, what a batch computation
// gives. It is in the plan only where there is an exchange.
func TestPreAggregationGivesTheSameResults(t *testing.T) {
	const n = 20_000
	type aggCase struct {
		name string
		run  func(t *testing.T, late bool, p int, assigner window.Assigner, opts ...window.Option) (*dataflow.Job, []tickResult)
		want func(size, slide time.Duration) []tickResult
	}
	mk := func(name string, run func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]), want func(size, slide time.Duration) []tickResult) aggCase {
		return aggCase{name, func(t *testing.T, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, []tickResult) {
			job, out := run(dataflow.Config{}, late, p, a, opts...)
			require.NoError(t, job.Run(context.Background()))
			return job, sortTicks(out.Values())
		}, want}
	}
	value := func(e tick) int64 { return e.Value }
	cases := []aggCase{
		mk("count", func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
			return preAggJob(cfg, n, late, p, a, window.Count[tick](), opts...)
		}, func(size, slide time.Duration) []tickResult { return batchTicks(n, size, slide, window.Count[tick]()) }),
		mk("sum", func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
			return preAggJob(cfg, n, late, p, a, window.Sum(value), opts...)
		}, func(size, slide time.Duration) []tickResult { return batchTicks(n, size, slide, window.Sum(value)) }),
		mk("min", func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
			return preAggJob(cfg, n, late, p, a, window.Min(value), opts...)
		}, func(size, slide time.Duration) []tickResult { return batchTicks(n, size, slide, window.Min(value)) }),
		mk("avg", func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
			return preAggJob(cfg, n, late, p, a, window.Avg(value), opts...)
		}, func(size, slide time.Duration) []tickResult { return batchTicks(n, size, slide, window.Avg(value)) }),
		mk("count-distinct", func(cfg dataflow.Config, late bool, p int, a window.Assigner, opts ...window.Option) (*dataflow.Job, *memory.Collector[tickResult]) {
			return preAggJob(cfg, n, late, p, a, window.CountDistinct(func(e tick) int64 { return e.Value % 17 }), opts...)
		}, func(size, slide time.Duration) []tickResult {
			return batchTicks(n, size, slide, window.CountDistinct(func(e tick) int64 { return e.Value % 17 }))
		}),
	}
	for _, w := range []struct {
		name        string
		assigner    window.Assigner
		size, slide time.Duration
	}{
		{"tumbling", window.Tumbling(50 * time.Millisecond), 50 * time.Millisecond, 50 * time.Millisecond},
		{"sliding", window.Sliding(60*time.Millisecond, 20*time.Millisecond), 60 * time.Millisecond, 20 * time.Millisecond},
	} {
		for _, c := range cases {
			t.Run(w.name+"/"+c.name, func(t *testing.T) {
				want := c.want(w.size, w.slide)
				job, got := c.run(t, false, 1, w.assigner)
				require.NotContains(t, planOf(t, job), "agg/local", "no exchange, no pre-aggregation")
				requireSameTicks(t, want, got)
				for _, p := range []int{2, 3} {
					job, got := c.run(t, false, p, w.assigner)
					require.Equal(t, w.name == "tumbling" || c.name != "count-distinct", strings.Contains(planOf(t, job), `"agg/local"`),
						"sliding windows of accumulators with references are not pre-aggregated")
					requireSameTicks(t, want, got)
				}
				// With late events, which of them the window operator drops
				// depends on when the exchange delivers the watermarks, with
				// and without pre-aggregation alike. Windows no late event
				// falls in give the same results; the others lie between
				// those without the late events and those with all.
				if c.name != "count" {
					return
				}
				onTime := func(seq int64) bool { return seq%97 != 0 }
				without := byWindow(batchTicksOf(genTick(true), onTime, n, w.size, w.slide, window.Count[tick]()))
				with := byWindow(batchTicksOf(genTick(true), func(int64) bool { return true }, n, w.size, w.slide, window.Count[tick]()))
				for _, opts := range [][]window.Option{nil, {window.PreAggregate(false)}} {
					for _, p := range []int{1, 3} {
						_, got := c.run(t, true, p, w.assigner, opts...)
						for _, r := range got {
							k := fmt.Sprint(r.Key, r.Window)
							require.Contains(t, with, k, "a window of the events")
							if without[k] == with[k] {
								require.Equal(t, with[k], r.Value, "window %s has no late events", k)
								continue
							}
							low := int64(0) // a window of late events only
							if v, ok := without[k]; ok {
								low = atoi(t, v)
							}
							require.GreaterOrEqual(t, atoi(t, r.Value), low, "window %s", k)
							require.LessOrEqual(t, atoi(t, r.Value), atoi(t, with[k]), "window %s", k)
						}
						for k := range without {
							require.Contains(t, byWindow(got), k, "windows without late events all fire")
						}
					}
				}
			})
		}
	}
}

// plainSum is an aggregation that does not say its Merge is exact: there is
// no pre-aggregation unless asked for.
type plainSum struct{}

func (plainSum) CreateAccumulator() int64  { return 0 }
func (plainSum) Add(a int64, e tick) int64 { return a + e.Value }
func (plainSum) Merge(a, b int64) int64    { return a + b }
func (plainSum) Result(a int64) int64      { return a }

// Pre-aggregation is on by default only where it cannot change results.
func TestPreAggregationOnlyWhereSafe(t *testing.T) {
	tumbling := window.Tumbling(50 * time.Millisecond)
	late := dataflow.NewOutputTag[tick]("late")
	sliding := window.Sliding(time.Second, 100*time.Millisecond)
	for _, c := range []struct {
		name string
		job  func() *dataflow.Job
		want bool
	}{
		{"sliding count", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, sliding, window.Count[tick]())
			return j
		}, true},
		{"sliding top-n", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, sliding, window.TopN(3, func(e tick) int64 { return e.Value }))
			return j
		}, false},
		{"tumbling top-n", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.TopN(3, func(e tick) int64 { return e.Value }))
			return j
		}, true},
		{"count", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Count[tick]())
			return j
		}, true},
		{"integer sum", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Sum(func(e tick) int64 { return e.Value }))
			return j
		}, true},
		{"float sum", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Sum(func(e tick) float64 { return float64(e.Value) }))
			return j
		}, false},
		{"float sum, asked for", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Sum(func(e tick) float64 { return float64(e.Value) }), window.PreAggregate(true))
			return j
		}, true},
		{"user aggregation", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, plainSum{})
			return j
		}, false},
		{"user aggregation, asked for", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, plainSum{}, window.PreAggregate(true))
			return j
		}, true},
		{"allowed lateness", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Count[tick](), window.AllowedLateness(time.Second), window.PreAggregate(true))
			return j
		}, false},
		{"late output", func() *dataflow.Job {
			job := dataflow.NewJob("late", dataflow.Config{Parallelism: 2})
			src := memory.Generator(job, "ticks", memory.GeneratorConfig[tick]{Count: 10, Generate: genTick(false), Watermarks: dataflow.Monotonic(tickTime)})
			res := window.Aggregate(dataflow.KeyBy(src, func(e tick) int64 { return e.Sensor }), "agg", tumbling, window.Count[tick](), window.LateOutput(late))
			memory.Discard(res, "out")
			memory.Discard(dataflow.SideOutput(res, late), "late")
			return job
		}, false},
		{"session windows", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, window.Session(time.Second), window.Count[tick](), window.PreAggregate(true))
			return j
		}, false},
		{"count trigger", func() *dataflow.Job {
			j, _ := preAggJob(dataflow.Config{}, 10, false, 2, tumbling, window.Count[tick](), window.WithTrigger(window.CountTrigger(3)))
			return j
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := planOf(t, c.job())
			require.Equal(t, c.want, strings.Contains(plan, `"agg/local"`), plan)
		})
	}
}

func byWindow(rs []tickResult) map[string]string {
	m := map[string]string{}
	for _, r := range rs {
		m[fmt.Sprint(r.Key, r.Window)] = r.Value
	}
	return m
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

func requireSameTicks(t *testing.T, want, got []tickResult) {
	t.Helper()
	for i := range min(len(want), len(got)) {
		require.Equal(t, want[i], got[i], "result %d of %d", i, len(want))
	}
	require.Len(t, got, len(want))
}

// A pre-aggregating job stopped with a savepoint at parallelism 2 and
// restored at 3 (pre-aggregating) or 1 (not), checkpointing all along,
// gives what one uninterrupted run gives, each window once: the local
// operator holds nothing across a checkpoint.
func TestPreAggregationThroughSavepoints(t *testing.T) {
	const total = 30_000
	sliding := window.Sliding(60*time.Millisecond, 20*time.Millisecond)
	run := func(cfg dataflow.Config, rate float64, p int, out *committed[tickResult], passed func(int64)) *dataflow.Job {
		job := dataflow.NewJob("preagg", cfg)
		gen := genTick(false)
		src := memory.Generator(job, "ticks", memory.GeneratorConfig[tick]{Count: total, Rate: rate,
			Generate: func(seq int64) tick {
				if passed != nil {
					passed(seq)
				}
				return gen(seq)
			},
			Watermarks: dataflow.BoundedOutOfOrderness(40*time.Millisecond, tickTime)})
		res := window.Aggregate(dataflow.KeyBy(src, func(e tick) int64 { return e.Sensor }), "agg", sliding,
			window.Sum(func(e tick) int64 { return e.Value }), window.With(dataflow.Parallelism(p)))
		str := operators.Map(res, "fmt", func(r window.Result[int64, int64]) tickResult {
			return tickResult{Key: r.Key, Window: r.Window, Value: fmt.Sprint(r.Value)}
		})
		dataflow.AddSink(str, "sink", dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[tickResult, *testTxn[tickResult]] {
			return &testCommitter[tickResult]{st: out}
		}))
		return job
	}
	want := batchTicks(total, 60*time.Millisecond, 20*time.Millisecond, window.Sum(func(e tick) int64 { return e.Value }))
	for _, restoreAt := range []int{3, 1} {
		t.Run(fmt.Sprintf("restore at %d", restoreAt), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ckpts, err := checkpoint.NewLocalStorage(t.TempDir())
			require.NoError(t, err)
			spDir := t.TempDir()
			sp, err := checkpoint.NewLocalStorage(spDir)
			require.NoError(t, err)
			out := &committed[tickResult]{ids: map[string]bool{}}
			passed := make(chan struct{})
			var once sync.Once
			jobA := run(dataflow.Config{Parallelism: 2, Checkpoint: checkpoint.Config{Interval: 5 * time.Millisecond}, CheckpointStorage: ckpts},
				total/2, 2, out, func(seq int64) {
					if seq >= total/3 {
						once.Do(func() { close(passed) })
					}
				})
			require.Contains(t, planOf(t, jobA), `"agg/local"`)
			runToSavepoint(t, ctx, jobA, passed, sp)
			require.Less(t, len(out.values()), len(want), "stopped before the end")

			restoreFrom, err := checkpoint.OpenLocalStorage(spDir)
			require.NoError(t, err)
			jobB := run(dataflow.Config{Parallelism: restoreAt, RestoreFrom: restoreFrom}, 0, restoreAt, out, nil)
			require.Equal(t, restoreAt > 1, strings.Contains(planOf(t, jobB), `"agg/local"`))
			require.NoError(t, jobB.Run(ctx))
			requireSameTicks(t, want, sortTicks(out.values()))
		})
	}
}
