package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

const keys = 64

// perKeyEvents makes n events whose key is seq%keys. With a generator of
// parallelism p dividing keys, every key comes from one source subtask, in
// increasing Seq order.
func perKeyEvents(job *dataflow.Job, n int64, opts ...dataflow.Option) dataflow.Stream[event] {
	return memory.Generator(job, "events", memory.GeneratorConfig[event]{
		Count:    n,
		Generate: func(seq int64) event { return event{Key: seq % keys, Seq: seq} },
	}, opts...)
}

func TestHashExchangeKeepsPerKeyOrderAndOwnership(t *testing.T) {
	for _, c := range []struct{ src, dst int }{{1, 1}, {1, 4}, {4, 3}, {2, 2}, {4, 1}} {
		t.Run(fmt.Sprintf("%dto%d", c.src, c.dst), func(t *testing.T) {
			job := dataflow.NewJob("order", dataflow.Config{BatchSize: 7})
			src := perKeyEvents(job, 20_000, dataflow.Parallelism(c.src))
			ks := dataflow.KeyBy(src, func(e event) int64 { return e.Key })
			checked := dataflow.AddKeyedOperator(ks, "check", func(out dataflow.Output[event]) dataflow.Operator[event] {
				last := map[int64]int64{}
				var oc *dataflow.OperatorContext
				return &opFunc[event]{
					open: func(c *dataflow.OperatorContext) error { oc = c; return nil },
					process: func(e event, ts dataflow.Timestamp) error {
						if kg := dataflow.KeyGroupOf(e.Key, oc.MaxParallelism); !oc.KeyGroups.Contains(kg) {
							return fmt.Errorf("key %d (group %d) reached subtask %d owning %v", e.Key, kg, oc.Subtask, oc.KeyGroups)
						}
						if prev, ok := last[e.Key]; ok && e.Seq <= prev {
							return fmt.Errorf("key %d: seq %d after %d", e.Key, e.Seq, prev)
						}
						last[e.Key] = e.Seq
						out.Collect(e, ts)
						return nil
					},
				}
			}, dataflow.Parallelism(c.dst))
			col := memory.Collect(checked, "sink", dataflow.Parallelism(c.dst))
			require.NoError(t, job.Run(context.Background()))
			require.Equal(t, 20_000, col.Len())
			// Every key was handled by exactly one subtask.
			owner := map[int64]int{}
			for _, r := range col.Records() {
				if s, ok := owner[r.Value.Key]; ok {
					require.Equal(t, s, r.Subtask, "key %d on two subtasks", r.Value.Key)
				}
				owner[r.Value.Key] = r.Subtask
			}
		})
	}
}

// pipelineResults runs a job exercising every operator kind at parallelism p
// and returns its results in an order-independent form: the final running sum
// per key and the number of records per key.
func pipelineResults(t *testing.T, p int) []string {
	t.Helper()
	job := dataflow.NewJob("results", dataflow.Config{Parallelism: p, BatchSize: 16})
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Count: 30_000, Generate: func(s int64) int64 { return s }})
	ev := operators.Map(src, "to-event", func(v int64) event { return event{Key: v * v % 1000, Seq: v} })
	even := operators.Filter(ev, "even", func(e event) bool { return e.Key%2 == 0 })
	twice := operators.FlatMap(even, "twice", func(e event, emit func(event)) error {
		emit(e)
		emit(event{Key: e.Key + 1, Seq: e.Seq})
		return nil
	})
	odd := operators.Filter(twice, "odd-only", func(e event) bool { return e.Key%2 == 1 })
	both := dataflow.Union(twice, operators.Map(odd, "negate", func(e event) event { return event{Key: -e.Key, Seq: e.Seq} }))
	regrouped := operators.Map(both, "regroup", func(e event) event { return event{Key: e.Key % 37, Seq: e.Seq} })
	sums := operators.Reduce(dataflow.KeyBy(regrouped, func(e event) int64 { return e.Key }), "sum",
		func(a, b event) event { return event{Key: a.Key, Seq: a.Seq + b.Seq} })
	sumOut := memory.Collect(sums, "sums")
	counts := operators.Aggregate(dataflow.KeyBy(both, func(e event) string { return fmt.Sprint(e.Key % 5) }), "count", operators.Count[event]())
	countOut := memory.Collect(counts, "counts")
	require.NoError(t, job.Run(context.Background()))

	var out []string
	final := map[int64]int64{}
	for _, e := range sumOut.Values() { // per subtask in arrival order: the last is the final sum
		final[e.Key] = e.Seq
	}
	for k, v := range final {
		out = append(out, fmt.Sprintf("sum %d=%d", k, v))
	}
	n := map[string]int64{}
	for _, kv := range countOut.Values() {
		n[kv.Key] = max(n[kv.Key], kv.Value)
	}
	for k, v := range n {
		out = append(out, fmt.Sprintf("count %s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

func TestResultsIdenticalAtParallelism1To4(t *testing.T) {
	want := pipelineResults(t, 1)
	require.NotEmpty(t, want)
	for _, p := range []int{2, 4} {
		require.Equal(t, want, pipelineResults(t, p), "parallelism %d", p)
	}
}

func TestRebalanceSpreadsEvenly(t *testing.T) {
	job := dataflow.NewJob("rebalance")
	src := memory.FromSlice(job, "items", make([]int, 4000))
	col := memory.Collect(dataflow.Rebalance(src), "sink", dataflow.Parallelism(4))
	plan, err := job.Plan()
	require.NoError(t, err)
	require.Equal(t, "rebalance", plan.Edges[0].Exchange)
	require.NoError(t, job.Run(context.Background()))
	per := map[int]int{}
	for _, r := range col.Records() {
		per[r.Subtask]++
	}
	require.Equal(t, map[int]int{0: 1000, 1: 1000, 2: 1000, 3: 1000}, per)
}

func TestBroadcastReachesEverySubtask(t *testing.T) {
	job := dataflow.NewJob("broadcast")
	src := memory.FromSlice(job, "items", []int{1, 2, 3}, dataflow.Parallelism(2))
	col := memory.Collect(dataflow.Broadcast(src), "sink", dataflow.Parallelism(3))
	require.NoError(t, job.Run(context.Background()))
	per := map[int][]int{}
	for _, r := range col.Records() {
		per[r.Subtask] = append(per[r.Subtask], r.Value)
	}
	for s := 0; s < 3; s++ {
		slices.Sort(per[s])
		require.Equal(t, []int{1, 2, 3}, per[s], "subtask %d", s)
	}
}

func TestForwardChainedAndUnchained(t *testing.T) {
	for _, chain := range []bool{true, false} {
		job := dataflow.NewJob("forward")
		var opts []dataflow.Option
		if !chain {
			opts = append(opts, dataflow.DisableChaining())
		}
		src := memory.FromSlice(job, "items", []int{0, 1, 2, 3, 4, 5, 6, 7}, dataflow.Parallelism(2))
		m := operators.Map(dataflow.Forward(src), "inc", func(v int) int { return v + 1 }, append(opts, dataflow.Parallelism(2))...)
		col := memory.Collect(m, "sink", dataflow.Parallelism(2))
		plan, err := job.Plan()
		require.NoError(t, err)
		require.Equal(t, chain, plan.Edges[0].Chained)
		require.Equal(t, "forward", plan.Edges[0].Exchange)
		require.NoError(t, job.Run(context.Background()))
		// Forward keeps subtask i's slice part on subtask i, in order.
		per := map[int][]int{}
		for _, r := range col.Records() {
			per[r.Subtask] = append(per[r.Subtask], r.Value)
		}
		require.Equal(t, map[int][]int{0: {1, 2, 3, 4}, 1: {5, 6, 7, 8}}, per, "chained=%v", chain)
	}
}

func TestProcessTimestampsAndSideOutputs(t *testing.T) {
	job := dataflow.NewJob("side")
	base := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int]{
		Count:      10,
		Generate:   func(s int64) int { return int(s) },
		Watermarks: dataflow.Monotonic(func(v int) time.Time { return base.Add(time.Duration(v) * time.Second) }),
	})
	odd := dataflow.NewOutputTag[string]("odd")
	main := operators.Process(src, "split", func(ctx *operators.ProcessContext[int], v int) error {
		if v%2 == 1 {
			operators.EmitSide(ctx, odd, fmt.Sprintf("odd %d at %s", v, ctx.Timestamp().Time().Format("15:04:05")))
			return nil
		}
		ctx.EmitAt(v*10, ctx.Timestamp()+1)
		return nil
	})
	evens := memory.Collect(main, "evens")
	odds := memory.Collect(dataflow.SideOutput(main, odd), "odds")
	require.NoError(t, job.Run(context.Background()))
	require.Equal(t, []int{0, 20, 40, 60, 80}, evens.Values())
	require.Equal(t, dataflow.TimestampOf(base.Add(2*time.Second))+1, evens.Records()[1].Timestamp)
	require.Equal(t, []string{"odd 1 at 13:00:01", "odd 3 at 13:00:03", "odd 5 at 13:00:05", "odd 7 at 13:00:07", "odd 9 at 13:00:09"}, odds.Values())
}

// zero divides by zero at run time (a constant would not compile).
var zero int64

type lifecycleFn struct {
	log  *guarded[[]string]
	seen int
}

func (f *lifecycleFn) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	f.log.do(func(l *[]string) {
		*l = append(*l, fmt.Sprintf("open %s %d/%d", oc.Operator, oc.Subtask, oc.Parallelism))
	})
	return nil
}
func (f *lifecycleFn) ProcessElement(ctx *operators.ProcessContext[int], v int) error {
	f.seen++
	return nil
}
func (f *lifecycleFn) Finish(ctx *operators.ProcessContext[int]) error {
	ctx.Emit(f.seen)
	return nil
}
func (f *lifecycleFn) Close() error {
	f.log.do(func(l *[]string) { *l = append(*l, "close") })
	return nil
}

func TestRichProcessLifecyclePerSubtask(t *testing.T) {
	log := &guarded[[]string]{}
	job := dataflow.NewJob("rich")
	src := memory.FromSlice(job, "items", make([]int, 10))
	counts := operators.RichProcess(dataflow.Rebalance(src), "count", func() operators.ProcessFunction[int, int] {
		return &lifecycleFn{log: log}
	}, dataflow.Parallelism(2))
	col := memory.Collect(counts, "sink", dataflow.Parallelism(2))
	require.NoError(t, job.Run(context.Background()))
	require.Equal(t, []int{5, 5}, col.Values(), "each subtask has its own function and emits at Finish")
	slices.Sort(log.v)
	require.Equal(t, []string{"close", "close", "open count 0/2", "open count 1/2"}, log.v)
}

func TestWatermarksAreMinimumOverInputsAndNeverGoBack(t *testing.T) {
	job := dataflow.NewJob("watermarks")
	base := time.Unix(1_000, 0)
	mk := func(name string, step time.Duration) dataflow.Stream[int] {
		return memory.Generator(job, name, memory.GeneratorConfig[int]{
			Count:      2000,
			Generate:   func(s int64) int { return int(s) },
			Watermarks: dataflow.Monotonic(func(v int) time.Time { return base.Add(time.Duration(v) * step) }),
		})
	}
	fast, slow := mk("fast", time.Second), mk("slow", time.Millisecond)
	// Every timestamp of the slow input is at most slowEnd; of the fast one,
	// only its first two (1000 s and 1001 s) are. So 2002 records have a
	// timestamp at most slowEnd.
	slowEnd := dataflow.TimestampOf(base.Add(1999 * time.Millisecond))
	const atMostSlowEnd = 2000 + 2
	var wms []dataflow.Timestamp
	var late, early, seenAtMostSlowEnd int
	dataflow.AddSink(dataflow.Union(fast, slow), "observe", func() dataflow.Operator[int] {
		return &opFunc[int]{
			process: func(_ int, ts dataflow.Timestamp) error {
				if len(wms) > 0 && ts <= wms[len(wms)-1] {
					late++ // a record behind the watermark: must not happen with monotonic sources
				}
				if ts <= slowEnd {
					seenAtMostSlowEnd++
				}
				return nil
			},
			watermark: func(wm dataflow.Timestamp) error {
				// The watermark is the minimum over the inputs: it passes the
				// slow input's last timestamp only once that input has
				// delivered everything (and ended, which raises its watermark
				// to the maximum). The fast input may still be running then.
				if wm > slowEnd && seenAtMostSlowEnd < atMostSlowEnd {
					early++
				}
				wms = append(wms, wm)
				return nil
			},
		}
	})
	require.NoError(t, job.Run(context.Background()))
	require.Zero(t, late)
	require.Zero(t, early, "the watermark passed the slow input before it had delivered all its records")
	require.Equal(t, atMostSlowEnd, seenAtMostSlowEnd)
	require.True(t, slices.IsSorted(wms), "watermarks went backwards: %v", wms)
	require.Equal(t, dataflow.MaxWatermark, wms[len(wms)-1])
}

func TestIdleSourceFlushesPartialBatches(t *testing.T) {
	// One record, then nothing: the record must reach the sink although its
	// batch never fills, and without waiting for a timer.
	job := dataflow.NewJob("flush", dataflow.Config{BatchSize: 1024, Linger: time.Hour})
	got := make(chan int, 1)
	src := dataflow.AddSource(job, "one", func() dataflow.Source[int] {
		polls := 0
		return &funcSource[int]{poll: func(ctx context.Context, out dataflow.Output[int]) (dataflow.SourceStatus, error) {
			polls++
			switch polls {
			case 1:
				out.Collect(42, dataflow.NoTimestamp)
				return dataflow.MoreAvailable, nil
			case 2:
				return dataflow.NothingAvailable, nil
			}
			<-ctx.Done()
			return dataflow.NothingAvailable, ctx.Err()
		}}
	})
	dataflow.AddSink(dataflow.Rebalance(src), "sink", func() dataflow.Operator[int] {
		return &opFunc[int]{process: func(v int, _ dataflow.Timestamp) error { got <- v; return nil }}
	}, dataflow.Parallelism(2))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- job.Run(ctx) }()
	require.Equal(t, 42, <-got)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

func TestSlowSinkBoundsInFlightRecords(t *testing.T) {
	// A fast unbounded source and a slow sink: backpressure must hold the source
	// back, so records in flight never exceed what the queues can hold.
	cfg := dataflow.Config{BatchSize: 32, QueueBatches: 2}
	job := dataflow.NewJob("backpressure", cfg)
	var produced atomic.Int64
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Generate: func(s int64) int64 { produced.Add(1); return s }})
	m := operators.Map(src, "map", func(v int64) int64 { return v }, dataflow.DisableChaining())
	var consumed, maxInFlight int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dataflow.AddSink(m, "slow", func() dataflow.Operator[int64] {
		return &opFunc[int64]{process: func(int64, dataflow.Timestamp) error {
			consumed++
			maxInFlight = max(maxInFlight, produced.Load()-consumed)
			for range 200 { // slow: burn a little time per record, no sleeping
				_ = fmt.Sprint(consumed)
			}
			if consumed == 20_000 {
				cancel()
			}
			return nil
		}}
	}, dataflow.DisableChaining())
	require.ErrorIs(t, job.Run(ctx), context.Canceled)
	// Two exchanges; each holds at most QueueBatches batches in the channel, one
	// batch being filled by the writer and one being processed by the reader,
	// and the generator emits up to 256 records per poll.
	bound := int64(2*(cfg.QueueBatches+2)*cfg.BatchSize + 256)
	require.LessOrEqual(t, maxInFlight, bound)
	require.Greater(t, maxInFlight, int64(cfg.BatchSize), "the source should have run ahead a little")
}

func TestUserErrorsNameOperatorSubtaskAndPosition(t *testing.T) {
	t.Run("error in chained process", func(t *testing.T) {
		job := dataflow.NewJob("fail")
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Count: 1000, Generate: func(s int64) int64 { return s }})
		bad := operators.Process(src, "picky", func(ctx *operators.ProcessContext[int64], v int64) error {
			if v == 500 {
				return errors.New("500 is not allowed")
			}
			return nil
		})
		memory.Collect(bad, "sink")
		err := job.Run(context.Background())
		var oe *dataflow.OperatorError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, "picky", oe.Operator)
		require.Equal(t, 0, oe.Subtask)
		require.Contains(t, oe.Position, "generator seq 500")
		require.EqualError(t, err, `operator "picky" (subtask 1/1) at generator seq 500: 500 is not allowed`)
	})
	t.Run("panic after an exchange", func(t *testing.T) {
		job := dataflow.NewJob("panic")
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Count: 1000, Generate: func(s int64) int64 { return s }})
		ks := dataflow.KeyBy(src, func(v int64) int64 { return v % 10 })
		red := operators.Reduce(ks, "divide", func(a, _ int64) int64 { return a / zero }, dataflow.Parallelism(3))
		memory.Collect(red, "sink", dataflow.Parallelism(3))
		err := job.Run(context.Background())
		var oe *dataflow.OperatorError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, "divide", oe.Operator)
		require.Equal(t, 3, oe.Parallelism)
		require.Contains(t, err.Error(), "integer divide by zero")
	})
	t.Run("open and sink failures", func(t *testing.T) {
		job := dataflow.NewJob("open")
		src := memory.FromSlice(job, "items", []int{1})
		dataflow.AddSink(src, "sink", func() dataflow.Operator[int] {
			return &opFunc[int]{open: func(oc *dataflow.OperatorContext) error { return errors.New("no database") }}
		})
		err := job.Run(context.Background())
		require.ErrorContains(t, err, `operator "sink" (subtask 1/1)`)
		require.ErrorContains(t, err, "open: no database")
	})
	t.Run("panic in factory", func(t *testing.T) {
		job := dataflow.NewJob("factory")
		src := memory.FromSlice(job, "items", []int{1})
		dataflow.AddSink(src, "sink", func() dataflow.Operator[int] { panic("boom") })
		require.ErrorContains(t, job.Run(context.Background()), `sink "sink" (subtask 0): panic in factory: boom`)
	})
}

func TestCancelStopsEverythingWithoutLeaks(t *testing.T) {
	for _, p := range []int{1, 3} {
		job := dataflow.NewJob("cancel", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Generate: func(s int64) int64 { return s }})
		ks := dataflow.KeyBy(src, func(v int64) int64 { return v % 100 })
		counts := operators.Aggregate(ks, "count", operators.Count[int64]())
		ctx, cancel := context.WithCancel(context.Background())
		var n atomic.Int64
		dataflow.AddSink(counts, "sink", func() dataflow.Operator[dataflow.KV[int64, int64]] {
			return &opFunc[dataflow.KV[int64, int64]]{process: func(dataflow.KV[int64, int64], dataflow.Timestamp) error {
				if n.Add(1) == 50_000 {
					cancel()
				}
				return nil
			}}
		})
		require.ErrorIs(t, job.Run(ctx), context.Canceled)
		goleak.VerifyNone(t)
	}
}

func TestFailureCancelsOtherSubtasksWithoutLeaks(t *testing.T) {
	job := dataflow.NewJob("fail-one", dataflow.Config{Parallelism: 4})
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Generate: func(s int64) int64 { return s }})
	bad := operators.Process(dataflow.Rebalance(src), "fails-on-subtask-2", func(ctx *operators.ProcessContext[int64], v int64) error {
		if ctx.Operator().Subtask == 2 && v > 10_000 {
			return errors.New("bad record")
		}
		return nil
	})
	memory.Discard(bad, "sink")
	err := job.Run(context.Background())
	var oe *dataflow.OperatorError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, 2, oe.Subtask)
	goleak.VerifyNone(t)
}

func TestRunTwiceAtOnceIsRefused(t *testing.T) {
	job := dataflow.NewJob("twice")
	started := make(chan struct{}, 1)
	src := dataflow.AddSource(job, "block", func() dataflow.Source[int] {
		return &funcSource[int]{poll: func(ctx context.Context, out dataflow.Output[int]) (dataflow.SourceStatus, error) {
			started <- struct{}{} // one poll per run: it blocks until cancelled
			<-ctx.Done()
			return dataflow.NothingAvailable, ctx.Err()
		}}
	})
	memory.Discard(src, "sink")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- job.Run(ctx) }()
	<-started
	require.ErrorIs(t, job.Run(ctx), dataflow.ErrAlreadyRunning)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	// A job can run again once the previous run returned.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { <-started; cancel2() }()
	require.ErrorIs(t, job.Run(ctx2), context.Canceled)
}

func TestPlanWhileRunning(t *testing.T) {
	job := dataflow.NewJob("plan-live", dataflow.Config{Parallelism: 2})
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Generate: func(s int64) int64 { return s }})
	counts := operators.Aggregate(dataflow.KeyBy(src, func(v int64) int64 { return v % 10 }), "count", operators.Count[int64]())
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	started := make(chan struct{})
	dataflow.AddSink(counts, "sink", func() dataflow.Operator[dataflow.KV[int64, int64]] {
		return &opFunc[dataflow.KV[int64, int64]]{process: func(dataflow.KV[int64, int64], dataflow.Timestamp) error {
			if n.Add(1) == 1 {
				close(started)
			}
			return nil
		}}
	}, dataflow.Parallelism(1))
	errc := make(chan error)
	go func() { errc <- job.Run(ctx) }()
	<-started
	for range 5 {
		p, err := job.Plan() // the race detector checks Plan does not touch what Run reads
		require.NoError(t, err)
		require.Len(t, p.Chains, 3)
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

type closeRecorder struct {
	dataflow.OperatorBase
	closed *atomic.Bool
}

func (c *closeRecorder) Process(int, dataflow.Timestamp) error { return nil }
func (c *closeRecorder) Close() error                          { c.closed.Store(true); return nil }

func TestPanicInOpenClosesWhatWasOpened(t *testing.T) {
	job := dataflow.NewJob("open-panic")
	src := memory.FromSlice(job, "src", []int{1})
	bad := dataflow.AddOperator(src, "bad-open", func(out dataflow.Output[int]) dataflow.Operator[int] {
		return &opFunc[int]{open: func(*dataflow.OperatorContext) error { panic("cannot open") }}
	})
	var sinkClosed atomic.Bool
	dataflow.AddSink(bad, "sink", func() dataflow.Operator[int] { return &closeRecorder{closed: &sinkClosed} })
	err := job.Run(context.Background())
	require.ErrorContains(t, err, `operator "bad-open" (subtask 1/1): panic: cannot open`)
	require.True(t, sinkClosed.Load(), "the sink, opened before the panic, is closed")
}
