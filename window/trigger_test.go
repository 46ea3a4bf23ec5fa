package window_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

func countHarness(t *testing.T, assigner window.Assigner, opts ...window.Option) *dataflow.TestHarness[click, string] {
	t.Helper()
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[string] {
		res := window.Aggregate(dataflow.KeyBy(in, func(c click) string { return c.User }), "count", assigner, operators.Count[click](), opts...)
		return operators.Map(res, "fmt", func(r window.Result[string, int64]) string {
			if r.Window == window.GlobalWindow {
				return fmt.Sprintf("%s global=%d", r.Key, r.Value)
			}
			return fmt.Sprintf("%s %s=%d", r.Key, fmtWin(r.Window), r.Value)
		})
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func TestCountWindows(t *testing.T) {
	a, trig := window.CountWindows(3)
	h := countHarness(t, a, window.WithTrigger(trig))
	for i := 0; i < 7; i++ {
		require.NoError(t, h.Add(click{"a", i}, atSec(float64(i))))
	}
	require.NoError(t, h.Add(click{"b", 9}, atSec(1)))
	require.Equal(t, []string{"a global=3", "a global=3"}, take(h), "every 3 records of a key, purged in between")
	require.NoError(t, h.Finish())
	require.Empty(t, take(h), "as in Flink, an unfinished count is not emitted at end of input")
}

func TestContinuousEventTimeTriggerFiresEarly(t *testing.T) {
	h := countHarness(t, window.Tumbling(time.Minute), window.WithTrigger(window.ContinuousEventTimeTrigger(10*time.Second)))
	require.NoError(t, h.Add(click{"a", 1}, atSec(3)))
	require.NoError(t, h.Add(click{"a", 2}, atSec(8)))
	require.NoError(t, h.AdvanceWatermark(atSec(10)))
	require.Equal(t, []string{"a [0,60)=2"}, take(h), "early result at 10 s")
	require.NoError(t, h.Add(click{"a", 3}, atSec(15)))
	require.NoError(t, h.AdvanceWatermark(atSec(30)))
	require.Equal(t, []string{"a [0,60)=3", "a [0,60)=3"}, take(h), "one early firing per interval passed: at 20 s and 30 s")
	require.NoError(t, h.AdvanceWatermark(atSec(60)))
	require.Equal(t, []string{"a [0,60)=3", "a [0,60)=3", "a [0,60)=3"}, take(h), "at 40 s, 50 s, and the final firing at the end")
}

func TestProcessingTimeTrigger(t *testing.T) {
	h := countHarness(t, window.Tumbling(time.Hour), window.WithTrigger(window.ProcessingTimeTrigger()))
	// Processing time starts at the epoch: the window [0,1h) of processing
	// time ends when the clock passes one hour.
	require.NoError(t, h.AddAt(click{"a", 1}, 5))
	require.NoError(t, h.AdvanceWatermarkTo(dataflow.Timestamp(30*time.Minute)))
	require.NoError(t, h.AdvanceProcessingTime(59*time.Minute))
	require.Empty(t, take(h))
	require.NoError(t, h.AdvanceProcessingTime(time.Minute))
	out := take(h)
	require.Len(t, out, 1)
	require.True(t, strings.HasSuffix(out[0], "=1"), out[0])
}

func TestPurgingTriggerEmitsOnlyNewRecords(t *testing.T) {
	h := countHarness(t, window.Tumbling(time.Minute), window.WithTrigger(window.Purging(window.CountTrigger(2))))
	for i := 0; i < 5; i++ {
		require.NoError(t, h.Add(click{"a", i}, atSec(float64(i))))
	}
	require.Equal(t, []string{"a [0,60)=2", "a [0,60)=2"}, take(h))
	require.NoError(t, h.Finish())
	require.Empty(t, take(h), "the count trigger does not fire the last, unfinished count at end of input")
}

// everyOtherRecord is a custom trigger: it fires on every second record of a
// window, counting in the per-window counter.
type everyOtherRecord struct{}

func (everyOtherRecord) OnElement(ctx window.TriggerContext, _ dataflow.Timestamp, _ window.Window) (window.TriggerResult, error) {
	n, err := ctx.Counter("n")
	if err != nil {
		return window.Continue, err
	}
	n++
	if err := ctx.SetCounter("n", n); err != nil {
		return window.Continue, err
	}
	if n%2 == 0 {
		return window.Fire, nil
	}
	return window.Continue, nil
}
func (everyOtherRecord) OnEventTime(window.TriggerContext, dataflow.Timestamp, window.Window) (window.TriggerResult, error) {
	return window.Continue, nil
}
func (everyOtherRecord) OnProcessingTime(window.TriggerContext, dataflow.Timestamp, window.Window) (window.TriggerResult, error) {
	return window.Continue, nil
}
func (everyOtherRecord) Clear(ctx window.TriggerContext, _ window.Window) error {
	return ctx.SetCounter("n", 0)
}

func TestCustomTrigger(t *testing.T) {
	h := countHarness(t, window.Tumbling(10*time.Second), window.WithTrigger(everyOtherRecord{}))
	for i := 0; i < 5; i++ {
		require.NoError(t, h.Add(click{"a", i}, atSec(float64(i))))
	}
	require.NoError(t, h.Add(click{"a", 9}, atSec(11))) // another window: its own counter
	require.NoError(t, h.Add(click{"a", 9}, atSec(12)))
	require.Equal(t, []string{"a [0,10)=2", "a [0,10)=4", "a [10,20)=2"}, take(h))
}

func TestProcessWindowFunctionSeesAllRecords(t *testing.T) {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[window.Result[string, string]] {
		return window.Process(dataflow.KeyBy(in, func(c click) string { return c.User }), "median", window.Session(5*time.Second),
			func(key string, w window.Window, records []click, emit func(string)) error {
				ns := make([]int, len(records))
				for i, r := range records {
					ns[i] = r.N
				}
				sort.Ints(ns)
				emit(fmt.Sprintf("%d records, median %d", len(ns), ns[len(ns)/2]))
				return nil
			})
	})
	require.NoError(t, err)
	defer h.Close()
	for i, n := range []int{7, 1, 9, 3, 5} {
		require.NoError(t, h.Add(click{"a", n}, atSec(float64(i))))
	}
	require.NoError(t, h.Add(click{"a", 100}, atSec(30))) // a new session
	require.NoError(t, h.Finish())
	out := h.Values()
	require.Len(t, out, 2)
	require.Equal(t, "5 records, median 5", out[0].Value)
	require.Equal(t, "[0,9)", fmtWin(out[0].Window))
	require.Equal(t, "1 records, median 100", out[1].Value)
}

func TestBadTriggerConfigIsABuildError(t *testing.T) {
	for _, c := range []struct {
		assigner window.Assigner
		trigger  window.Trigger
		says     string
	}{
		{window.Tumbling(time.Second), window.CountTrigger(0), "count trigger of 0 records"},
		{window.Tumbling(time.Second), window.Purging(window.CountTrigger(-1)), "count trigger of -1 records"},
		{window.Tumbling(time.Second), window.ContinuousEventTimeTrigger(0), "interval 0s must be positive"},
		{window.Session(time.Second), window.CountTrigger(2), "cannot be used with merging windows"},
		{window.Tumbling(time.Second), nil, "nil trigger"},
	} {
		job := dataflow.NewJob("bad")
		src := memory.FromSlice(job, "src", []click{{"a", 1}})
		res := window.Aggregate(dataflow.KeyBy(src, func(c click) string { return c.User }), "win", c.assigner, operators.Count[click](), window.WithTrigger(c.trigger))
		memory.Discard(res, "sink")
		err := job.Validate()
		require.ErrorIs(t, err, window.ErrInvalidWindow)
		require.ErrorContains(t, err, c.says)
	}
}
