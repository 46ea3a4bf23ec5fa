package window_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

type click struct {
	User string
	N    int
}

var t0 = time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)

func atSec(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func fmtWin(w window.Window) string {
	return fmt.Sprintf("[%v,%v)", w.Start.Time().Sub(t0).Seconds(), w.End.Time().Sub(t0).Seconds())
}

// lateLog collects the late side output; the collecting sink publishes what
// it got at each watermark and at end of input.
var lateLog *memory.Collector[click]

// harness runs a keyed window count whose results come out as strings; late
// records go to lateLog.
func harness(t *testing.T, assigner window.Assigner, opts ...window.Option) *dataflow.TestHarness[click, string] {
	t.Helper()
	late := dataflow.NewOutputTag[click]("late")
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[string] {
		res := window.Aggregate(dataflow.KeyBy(in, func(c click) string { return c.User }), "count", assigner,
			operators.Count[click](), append(opts, window.LateOutput(late))...)
		lateLog = memory.Collect(dataflow.SideOutput(res, late), "late")
		return operators.Map(res, "fired", func(r window.Result[string, int64]) string {
			return fmt.Sprintf("%s %s=%d", r.Key, fmtWin(r.Window), r.Value)
		})
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func take(h *dataflow.TestHarness[click, string]) []string {
	var out []string
	for _, r := range h.TakeOutput() {
		out = append(out, r.Value)
	}
	return out
}

func TestTumblingOutOfOrderFiresAtWatermark(t *testing.T) {
	h := harness(t, window.Tumbling(10*time.Second))
	require.NoError(t, h.Add(click{"a", 1}, atSec(3)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(12)))
	require.NoError(t, h.Add(click{"a", 3}, atSec(7))) // out of order, its window still open
	require.NoError(t, h.Add(click{"b", 4}, atSec(9)))
	require.NoError(t, h.AdvanceWatermark(atSec(9.5)))
	require.Empty(t, take(h))
	require.NoError(t, h.AdvanceWatermark(atSec(10)))
	require.Equal(t, []string{"a [0,10)=2", "b [0,10)=1"}, take(h), "fires once the watermark reaches the window's end")
	require.NoError(t, h.Finish())
	require.Equal(t, []string{"a [10,20)=1"}, take(h), "end of input fires every window")
}

func TestResultsCarryTheWindowAndItsMaxTimestamp(t *testing.T) {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[window.Result[string, int64]] {
		return window.Aggregate(dataflow.KeyBy(in, func(c click) string { return c.User }), "count", window.Tumbling(time.Minute), operators.Count[click]())
	})
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.Add(click{"a", 1}, atSec(30)))
	require.NoError(t, h.AdvanceWatermark(atSec(60)))
	out := h.Output()
	require.Len(t, out, 1)
	require.Equal(t, window.Window{Start: dataflow.TimestampOf(t0), End: dataflow.TimestampOf(atSec(60))}, out[0].Value.Window)
	require.Equal(t, dataflow.TimestampOf(atSec(60))-1, out[0].Timestamp)
}

func TestLateWithinLatenessRefiresAndBeyondGoesToSideOutput(t *testing.T) {
	h := harness(t, window.Tumbling(10*time.Second), window.AllowedLateness(5*time.Second))
	require.NoError(t, h.Add(click{"a", 1}, atSec(1)))
	require.NoError(t, h.AdvanceWatermark(atSec(10)))
	require.Equal(t, []string{"a [0,10)=1"}, take(h))
	require.NoError(t, h.Add(click{"a", 2}, atSec(2))) // late, within lateness
	require.Equal(t, []string{"a [0,10)=2"}, take(h), "a late record re-fires the window with the updated result")
	require.NoError(t, h.AdvanceWatermark(atSec(15)))  // lateness over: state dropped
	require.NoError(t, h.Add(click{"a", 3}, atSec(4))) // beyond lateness
	require.NoError(t, h.Finish())
	require.Empty(t, take(h), "a dropped window never fires again")
	require.Equal(t, []click{{"a", 3}}, lateLog.Values(), "beyond lateness: to the late output")
}

func TestLateRecordsWithoutSideOutputAreDropped(t *testing.T) {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[window.Result[string, int64]] {
		return window.Aggregate(dataflow.KeyBy(in, func(c click) string { return c.User }), "count", window.Tumbling(10*time.Second), operators.Count[click]())
	})
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.Add(click{"a", 1}, atSec(1)))
	require.NoError(t, h.AdvanceWatermark(atSec(20)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(2)))
	require.NoError(t, h.Finish())
	require.Len(t, h.Output(), 1, "the late record is dropped")
}

func TestSlidingWindowsOverlap(t *testing.T) {
	h := harness(t, window.Sliding(10*time.Second, 5*time.Second))
	require.NoError(t, h.Add(click{"a", 1}, atSec(7)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(12)))
	require.NoError(t, h.Finish())
	require.Equal(t, []string{"a [0,10)=1", "a [5,15)=2", "a [10,20)=1"}, take(h), "each record is in size/slide windows")
}

func TestEmptyWindowsAreNotEmitted(t *testing.T) {
	h := harness(t, window.Tumbling(10*time.Second))
	require.NoError(t, h.Add(click{"a", 1}, atSec(5)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(45)))
	require.NoError(t, h.AdvanceWatermark(atSec(100)))
	require.Equal(t, []string{"a [0,10)=1", "a [40,50)=1"}, take(h))
}

func TestSessionsMergeAlsoThroughALateRecord(t *testing.T) {
	h := harness(t, window.Session(10*time.Second), window.AllowedLateness(time.Minute))
	require.NoError(t, h.Add(click{"a", 1}, atSec(0)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(5)))  // extends [0,10) to [0,15)
	require.NoError(t, h.Add(click{"a", 3}, atSec(22))) // a second session [22,32)
	require.NoError(t, h.Add(click{"b", 4}, atSec(1)))
	require.NoError(t, h.AdvanceWatermark(atSec(16)))
	require.Equal(t, []string{"b [1,11)=1", "a [0,15)=2"}, take(h), "in time order")
	// A late record at 14, [14,24), bridges [0,15) and [22,32) into [0,32).
	require.NoError(t, h.Add(click{"a", 5}, atSec(14)))
	require.NoError(t, h.AdvanceWatermark(atSec(32)))
	require.Equal(t, []string{"a [0,32)=4"}, take(h), "two sessions bridged by a late record merge, with their counts")
	require.NoError(t, h.Finish())
	require.Empty(t, take(h))
}

func TestRecordWithoutTimestampFailsTheJob(t *testing.T) {
	h := harness(t, window.Tumbling(time.Second))
	err := h.AddAt(click{"a", 1}, dataflow.NoTimestamp)
	require.ErrorIs(t, err, window.ErrNoTimestamp)
	require.ErrorContains(t, err, `operator "count" (subtask 1/1) at harness input #1`)
}

func TestZeroTimestampIsAnOrdinaryTime(t *testing.T) {
	h := harness(t, window.Tumbling(time.Second))
	require.NoError(t, h.AddAt(click{"a", 1}, 0))
	require.NoError(t, h.AdvanceWatermarkTo(dataflow.Timestamp(time.Second)))
	require.Len(t, take(h), 1)
}

func TestBadWindowConfigIsABuildError(t *testing.T) {
	for _, c := range []struct {
		assigner window.Assigner
		opts     []window.Option
		says     string
	}{
		{window.Tumbling(0), nil, "size"},
		{window.Sliding(time.Second, 2*time.Second), nil, "slide"},
		{window.Session(-time.Second), nil, "gap"},
		{window.Tumbling(time.Second), []window.Option{window.AllowedLateness(-time.Second)}, "lateness"},
		{nil, nil, "nil assigner"},
		{window.Tumbling(time.Second), []window.Option{window.LateOutput(dataflow.NewOutputTag[string]("x"))}, "late output of string records"},
	} {
		job := dataflow.NewJob("bad")
		src := memory.FromSlice(job, "src", []click{{"a", 1}})
		res := window.Aggregate(dataflow.KeyBy(src, func(c click) string { return c.User }), "win", c.assigner, operators.Count[click](), c.opts...)
		memory.Discard(res, "sink")
		err := job.Validate()
		require.True(t, errors.Is(err, window.ErrInvalidWindow), "%v", err)
		require.ErrorContains(t, err, `operator "win"`)
		require.ErrorContains(t, err, c.says)
	}
}

// The same events, shuffled differently within the out-of-orderness bound and
// run at parallelism 1 and 4, give identical window results.
func TestDeterministicAcrossShufflesAndParallelism(t *testing.T) {
	const n = 20_000
	events := make([]click, n)
	at := make(map[int]time.Time, n)
	for i := range events {
		events[i] = click{User: fmt.Sprintf("u%d", i%50), N: i}
		at[i] = atSec(float64(i) * 0.01)
	}
	shuffle := func(seed int) []click {
		out := append([]click(nil), events...)
		// Swap within blocks of 100 events (1 s): within the 2 s bound.
		for b := 0; b+100 <= n; b += 100 {
			for i := 0; i < 100; i++ {
				j := b + (i*seed+7)%100
				out[b+i], out[j] = out[j], out[b+i]
			}
		}
		return out
	}
	run := func(p, seed int) map[string]int64 {
		in := shuffle(seed)
		job := dataflow.NewJob("det", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "events", memory.GeneratorConfig[click]{
			Count:      n,
			Generate:   func(seq int64) click { return in[seq] },
			Watermarks: dataflow.BoundedOutOfOrderness(2*time.Second, func(c click) time.Time { return at[c.N] }),
		}, dataflow.Parallelism(1))
		res := window.Aggregate(dataflow.KeyBy(src, func(c click) string { return c.User }), "count",
			window.Sliding(10*time.Second, 2*time.Second), operators.Count[click]())
		col := memory.Collect(res, "out")
		require.NoError(t, job.Run(t.Context()))
		got := map[string]int64{}
		for _, r := range col.Values() {
			k := r.Key + fmtWin(r.Window)
			_, dup := got[k]
			require.False(t, dup, "window %s fired twice", k)
			got[k] = r.Value
		}
		return got
	}
	want := run(1, 1)
	require.NotEmpty(t, want)
	require.Equal(t, want, run(1, 37))
	require.Equal(t, want, run(4, 61))
}

// An idle source does not stall windows: a source that emitted one record and
// then went quiet is marked idle after its timeout, and the busy source's
// windows fire. (Without idleness its watermark would hold them forever.)
func TestIdleSourceDoesNotStallWindows(t *testing.T) {
	job := dataflow.NewJob("idle-windows", dataflow.Config{Parallelism: 2})
	ts := func(c click) time.Time { return atSec(float64(c.N)) }
	busy := memory.Generator(job, "busy", memory.GeneratorConfig[click]{
		Generate:   func(seq int64) click { return click{User: fmt.Sprintf("u%d", seq%4), N: int(seq)} },
		Rate:       20_000,
		Watermarks: dataflow.Monotonic(ts),
	}, dataflow.Parallelism(1))
	quiet := memory.Generator(job, "quiet", memory.GeneratorConfig[click]{
		Generate:   func(seq int64) click { return click{User: "q", N: 0} },
		Rate:       0.0001, // one record, then nothing for hours
		Watermarks: dataflow.Monotonic(ts).WithIdleness(50 * time.Millisecond),
	}, dataflow.Parallelism(1))
	res := window.Aggregate(dataflow.KeyBy(dataflow.Union(busy, quiet), func(c click) string { return c.User }), "count",
		window.Tumbling(10*time.Second), operators.Count[click]())
	fired := make(chan window.Result[string, int64], 64)
	dataflow.AddSink(res, "sink", func() dataflow.Operator[window.Result[string, int64]] {
		return &resultSink{c: fired}
	}, dataflow.Parallelism(1))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- job.Run(ctx) }()
	select {
	case r := <-fired:
		require.Equal(t, dataflow.TimestampOf(t0), r.Window.Start, "the first window of the busy source")
	case <-ctx.Done():
		t.Fatal("no window fired: the idle source stalled the watermark")
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

type resultSink struct {
	dataflow.OperatorBase
	c chan window.Result[string, int64]
}

func (s *resultSink) Process(r window.Result[string, int64], _ dataflow.Timestamp) error {
	select {
	case s.c <- r:
	default: // the test reads only the first results
	}
	return nil
}

func TestInvalidAggregationIsABuildError(t *testing.T) {
	job := dataflow.NewJob("bad-agg")
	src := memory.FromSlice(job, "src", []click{{"a", 1}})
	res := window.Aggregate(dataflow.KeyBy(src, func(c click) string { return c.User }), "top", window.Tumbling(time.Second),
		window.TopN[click, string](0, func(c click) string { return c.User }))
	memory.Discard(res, "sink")
	err := job.Validate()
	require.ErrorIs(t, err, window.ErrInvalidAggregation)
	require.ErrorContains(t, err, `operator "top"`)
}

func TestTopNPerWindow(t *testing.T) {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[window.Result[bool, []window.KeyCount[string]]] {
		all := dataflow.KeyBy(in, func(click) bool { return true })
		return window.Aggregate(all, "top-users", window.Tumbling(time.Minute), window.TopN(2, func(c click) string { return c.User }))
	})
	require.NoError(t, err)
	defer h.Close()
	for i, u := range []string{"a", "b", "a", "c", "b", "a"} {
		require.NoError(t, h.Add(click{u, i}, atSec(float64(i))))
	}
	require.NoError(t, h.Add(click{"z", 9}, atSec(61)))
	require.NoError(t, h.Finish())
	out := h.Values()
	require.Len(t, out, 2)
	require.Equal(t, []window.KeyCount[string]{{Key: "a", Count: 3}, {Key: "b", Count: 2}}, out[0].Value)
	require.Equal(t, []window.KeyCount[string]{{Key: "z", Count: 1}}, out[1].Value)
}

// Many keys with a wide range of values: every key's window fires once,
// with its count, whatever path the operator takes (its key cache, a cache
// that overflows, no cache). Timers of one time are sorted by radix past a
// few hundred keys; keys spanning three bytes took an odd number of passes,
// which once lost every result but one.
func TestTumblingManyKeysEachWindowFiresOnce(t *testing.T) {
	const events, keys = 30_000, 3_000
	gen := func(seq int64) view {
		return view{Video: (seq * 7919 % keys) * 1009, At: dataflow.Timestamp(seq) * dataflow.Timestamp(time.Millisecond)}
	}
	want := map[window.Result[int64, int64]]bool{}
	counts := map[[2]int64]int64{}
	for seq := range int64(events) {
		v := gen(seq)
		counts[[2]int64{v.Video, int64(v.At / dataflow.Timestamp(10*time.Second))}]++
	}
	for kw, n := range counts {
		start := dataflow.Timestamp(kw[1]) * dataflow.Timestamp(10*time.Second)
		want[window.Result[int64, int64]{Key: kw[0], Window: window.Window{Start: start, End: start + dataflow.Timestamp(10*time.Second)}, Value: n}] = true
	}
	for _, cache := range []int{1 << 16, 100, 0} {
		for _, p := range []int{1, 3} {
			t.Run(fmt.Sprintf("cache %d/p%d", cache, p), func(t *testing.T) {
				defer window.SetMaxCachedKeys(cache)()
				job := dataflow.NewJob("many-keys", dataflow.Config{Parallelism: p})
				src := memory.Generator(job, "views", memory.GeneratorConfig[view]{Count: events, Generate: gen, Watermarks: dataflow.Monotonic(viewTime)})
				res := window.Aggregate(dataflow.KeyBy(src, func(v view) int64 { return v.Video }), "count", window.Tumbling(10*time.Second), operators.Count[view]())
				out := memory.Collect(res, "out")
				require.NoError(t, job.Run(context.Background()))
				got := map[window.Result[int64, int64]]bool{}
				for _, r := range out.Values() {
					require.False(t, got[r], "fired twice: %+v", r)
					got[r] = true
				}
				require.Equal(t, len(want), len(got))
				require.Equal(t, want, got)
			})
		}
	}
}
