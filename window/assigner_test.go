package window_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/window"
)

const (
	sec = dataflow.Timestamp(time.Second)
	ms  = dataflow.Timestamp(time.Millisecond)
)

func assign(t *testing.T, a window.Assigner, ts dataflow.Timestamp) []window.Window {
	t.Helper()
	got, err := a.AssignTo(nil, ts)
	require.NoError(t, err, "ts %d", ts)
	return got
}

// The cases of Flink's TumblingEventTimeWindowsTest and
// SlidingEventTimeWindowsTest (in milliseconds there), plus negative
// timestamps and zero.
func TestAssigners(t *testing.T) {
	cases := []struct {
		name string
		a    window.Assigner
		ts   dataflow.Timestamp
		want []window.Window
	}{
		{"tumbling/zero", window.Tumbling(5 * time.Second), 0, []window.Window{w(0, 5*sec)}},
		{"tumbling/last", window.Tumbling(5 * time.Second), 5*sec - 1, []window.Window{w(0, 5*sec)}},
		{"tumbling/next", window.Tumbling(5 * time.Second), 5 * sec, []window.Window{w(5*sec, 10*sec)}},
		{"tumbling/negative", window.Tumbling(5 * time.Second), -1, []window.Window{w(-5*sec, 0)}},
		{"tumbling/negative-start", window.Tumbling(5 * time.Second), -5 * sec, []window.Window{w(-5*sec, 0)}},
		{"tumbling/negative-before", window.Tumbling(5 * time.Second), -5*sec - 1, []window.Window{w(-10*sec, -5*sec)}},
		{"tumbling/offset", window.Tumbling(5 * time.Second).WithOffset(100 * time.Millisecond), 100 * ms, []window.Window{w(100*ms, 5100*ms)}},
		{"tumbling/offset-last", window.Tumbling(5 * time.Second).WithOffset(100 * time.Millisecond), 5099 * ms, []window.Window{w(100*ms, 5100*ms)}},
		{"tumbling/offset-next", window.Tumbling(5 * time.Second).WithOffset(100 * time.Millisecond), 5100 * ms, []window.Window{w(5100*ms, 10100*ms)}},
		{"tumbling/offset-zero", window.Tumbling(5 * time.Second).WithOffset(100 * time.Millisecond), 0, []window.Window{w(-4900*ms, 100*ms)}},
		{"tumbling/negative-offset", window.Tumbling(5 * time.Second).WithOffset(-100 * time.Millisecond), 0, []window.Window{w(-100*ms, 4900*ms)}},
		{"tumbling/negative-offset-next", window.Tumbling(5 * time.Second).WithOffset(-100 * time.Millisecond), 4900 * ms, []window.Window{w(4900*ms, 9900*ms)}},
		{"tumbling/offset-beyond-size", window.Tumbling(5 * time.Second).WithOffset(5100 * time.Millisecond), 100 * ms, []window.Window{w(100*ms, 5100*ms)}},

		{"sliding/zero", window.Sliding(5*time.Second, time.Second), 0, []window.Window{
			w(0, 5*sec), w(-1*sec, 4*sec), w(-2*sec, 3*sec), w(-3*sec, 2*sec), w(-4*sec, 1*sec)}},
		{"sliding/4999", window.Sliding(5*time.Second, time.Second), 4999 * ms, []window.Window{
			w(4*sec, 9*sec), w(3*sec, 8*sec), w(2*sec, 7*sec), w(1*sec, 6*sec), w(0, 5*sec)}},
		{"sliding/5000", window.Sliding(5*time.Second, time.Second), 5 * sec, []window.Window{
			w(5*sec, 10*sec), w(4*sec, 9*sec), w(3*sec, 8*sec), w(2*sec, 7*sec), w(1*sec, 6*sec)}},
		{"sliding/offset", window.Sliding(5*time.Second, time.Second).WithOffset(100 * time.Millisecond), 100 * ms, []window.Window{
			w(100*ms, 5100*ms), w(-900*ms, 4100*ms), w(-1900*ms, 3100*ms), w(-2900*ms, 2100*ms), w(-3900*ms, 1100*ms)}},
		{"sliding/negative", window.Sliding(10*time.Second, 5*time.Second), -1, []window.Window{w(-5*sec, 5*sec), w(-10*sec, 0)}},
		{"sliding/uneven-3", window.Sliding(5*time.Second, 2*time.Second), 0, []window.Window{w(0, 5*sec), w(-2*sec, 3*sec), w(-4*sec, 1*sec)}},
		{"sliding/uneven-2", window.Sliding(5*time.Second, 2*time.Second), sec, []window.Window{w(0, 5*sec), w(-2*sec, 3*sec)}},
		{"sliding/as-tumbling", window.Sliding(5*time.Second, 5*time.Second), 7 * sec, []window.Window{w(5*sec, 10*sec)}},

		{"session/zero", window.Session(5 * time.Second), 0, []window.Window{w(0, 5*sec)}},
		{"session/4999", window.Session(5 * time.Second), 4999 * ms, []window.Window{w(4999*ms, 9999*ms)}},
		{"session/negative", window.Session(5 * time.Second), -sec, []window.Window{w(-sec, 4*sec)}},

		{"global", window.Global(), 42, []window.Window{window.GlobalWindow}},
		{"global/no-timestamp", window.Global(), dataflow.NoTimestamp, []window.Window{window.GlobalWindow}},
		{"global/max", window.Global(), dataflow.MaxWatermark, []window.Window{window.GlobalWindow}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, c.a.Validate())
			got := assign(t, c.a, c.ts)
			require.Equal(t, c.want, got)
			if c.a.IsEventTime() {
				for _, win := range got {
					require.True(t, win.Contains(c.ts), "%v does not contain %d", win, c.ts)
				}
			}
		})
	}
}

// A day in UTC+8, written with Flink's negative offset or the equivalent
// positive one.
func TestTumblingTimeZoneOffset(t *testing.T) {
	ts := dataflow.TimestampOf(time.Date(2016, 8, 11, 7, 54, 8, 0, time.UTC)) // 15:54 in UTC+8
	wantStart := dataflow.TimestampOf(time.Date(2016, 8, 10, 16, 0, 0, 0, time.UTC))
	for _, off := range []time.Duration{-8 * time.Hour, 16 * time.Hour, 40 * time.Hour} {
		a := window.Tumbling(24 * time.Hour).WithOffset(off)
		require.Equal(t, 16*time.Hour, a.Offset())
		require.Equal(t, []window.Window{w(wantStart, wantStart+dataflow.Timestamp(24*time.Hour))}, assign(t, a, ts))
	}
}

func TestAssignerKinds(t *testing.T) {
	for _, c := range []struct {
		a                window.Assigner
		eventTime, merge bool
		str              string
	}{
		{window.Tumbling(time.Minute).WithOffset(time.Second), true, false, "tumbling(1m0s, offset 1s)"},
		{window.Sliding(time.Minute, 10*time.Second), true, false, "sliding(1m0s every 10s, offset 0s)"},
		{window.Session(time.Minute), true, true, "session(gap 1m0s)"},
		{window.Global(), false, false, "global"},
	} {
		require.Equal(t, c.eventTime, c.a.IsEventTime(), c.str)
		require.Equal(t, c.merge, c.a.IsMerging(), c.str)
		require.Equal(t, c.str, c.a.(interface{ String() string }).String())
	}
}

func TestAssignerValidation(t *testing.T) {
	cases := []struct {
		a   window.Assigner
		msg string
	}{
		{window.Tumbling(0), "tumbling window size 0s must be positive"},
		{window.Tumbling(-time.Second).WithOffset(time.Second), "tumbling window size -1s must be positive"},
		{window.TumblingAssigner{}, "tumbling window size 0s must be positive"},
		{window.Sliding(0, time.Second), "sliding window size 0s must be positive"},
		{window.Sliding(time.Second, 0), "sliding window slide 0s must be positive"},
		{window.Sliding(time.Second, -time.Second), "sliding window slide -1s must be positive"},
		{window.Sliding(time.Second, 2*time.Second), "sliding window slide 2s is larger than its size 1s"},
		{window.SlidingAssigner{}, "sliding window size 0s must be positive"},
		{window.Sliding(time.Hour, time.Microsecond), "sliding window size 1h0m0s with slide 1µs puts each record into more than 100000 windows"},
		{window.Session(0), "session gap 0s must be positive"},
		{window.Session(-time.Minute), "session gap -1m0s must be positive"},
	}
	for _, c := range cases {
		err := c.a.Validate()
		require.ErrorIs(t, err, window.ErrInvalidWindow)
		require.EqualError(t, err, "window: invalid window configuration: "+c.msg)
		// An invalid assigner fails every record the same way, never panics.
		dst := []window.Window{w(1, 2)}
		got, err := c.a.AssignTo(dst, 5)
		require.ErrorIs(t, err, window.ErrInvalidWindow)
		require.Equal(t, dst, got)
	}
}

func TestAssignBadTimestamps(t *testing.T) {
	for _, a := range []window.Assigner{window.Tumbling(time.Second), window.Sliding(time.Second, time.Millisecond), window.Session(time.Second)} {
		dst := []window.Window{w(1, 2)}
		got, err := a.AssignTo(dst, dataflow.NoTimestamp)
		require.ErrorIs(t, err, window.ErrNoTimestamp)
		require.Equal(t, dst, got)

		got, err = a.AssignTo(dst, dataflow.MaxWatermark)
		require.ErrorIs(t, err, window.ErrTimestampOutOfRange)
		require.Equal(t, dst, got)
	}
}

// Timestamps at both ends of the int64 range give clamped windows that still
// hold them, never windows that wrapped around.
func TestAssignExtremeTimestamps(t *testing.T) {
	const hour = dataflow.Timestamp(time.Hour)
	maxTs := dataflow.Timestamp(math.MaxInt64 - 1) // the latest assignable time, in 2262
	minTs := dataflow.Timestamp(math.MinInt64 + 1) // the earliest, in 1677
	lastStart := maxTs - (maxTs % hour)            // positive ts: plain modulo

	got := assign(t, window.Tumbling(time.Hour), maxTs)
	require.Equal(t, []window.Window{w(lastStart, dataflow.MaxWatermark)}, got)
	got = assign(t, window.Tumbling(time.Hour), lastStart-1)
	require.Equal(t, []window.Window{w(lastStart-hour, lastStart)}, got)
	// The window holding minTs would start before MinInt64: it is clamped.
	got = assign(t, window.Tumbling(time.Hour), minTs)
	require.Equal(t, dataflow.MinWatermark, got[0].Start)
	require.True(t, got[0].Contains(minTs))
	require.NotZero(t, minTs%hour)
	require.Equal(t, minTs-minTs%hour, got[0].End) // for negatives, truncation toward zero gives the next start

	got = assign(t, window.Session(time.Hour), maxTs-5)
	require.Equal(t, []window.Window{w(maxTs-5, dataflow.MaxWatermark)}, got)

	got = assign(t, window.Sliding(3*time.Hour, time.Hour), maxTs)
	require.Len(t, got, 3)
	for _, win := range got {
		require.True(t, win.Contains(maxTs))
		require.Equal(t, dataflow.MaxWatermark, win.End)
		require.Greater(t, win.Start, dataflow.Timestamp(0))
	}
	got = assign(t, window.Sliding(3*time.Hour, time.Hour), minTs)
	require.Len(t, got, 3)
	for _, win := range got {
		require.True(t, win.Contains(minTs), "%v", win)
		require.Less(t, win.End, dataflow.Timestamp(0))
	}

	// Sizes as large as the whole range do not overflow either.
	got = assign(t, window.Sliding(math.MaxInt64, math.MaxInt64/3), 12345)
	require.Len(t, got, 3)
	for _, win := range got {
		require.True(t, win.Contains(12345), "%v", win)
	}
}

func FuzzAssigners(f *testing.F) {
	f.Add(int64(0), int64(5000), int64(1000), int64(0))
	f.Add(int64(-1), int64(7), int64(3), int64(-2))
	f.Add(int64(math.MaxInt64-1), int64(time.Hour), int64(time.Minute), int64(time.Second))
	f.Add(int64(math.MinInt64+1), int64(time.Hour), int64(time.Minute), int64(-time.Second))
	f.Add(int64(12345), int64(math.MaxInt64), int64(math.MaxInt64/3), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, ts, size, slide, offset int64) {
		tsv := dataflow.Timestamp(ts)
		if tsv == dataflow.NoTimestamp || tsv == dataflow.MaxWatermark {
			return
		}
		size, slide = positive(size), positive(slide) // any, up to MaxInt64
		slide = (slide-1)%size + 1                    // 0 < slide <= size
		if size/slide > 1000 {
			slide = size/1000 + 1 // keep the number of windows small
		}

		tumbling := window.Tumbling(time.Duration(size)).WithOffset(time.Duration(offset))
		got := assign(t, tumbling, tsv)
		require.Len(t, got, 1)
		require.True(t, got[0].Contains(tsv), "tumbling %v: %v does not contain %d", tumbling, got[0], ts)
		// The window start is offset plus a multiple of size, unless clamped.
		if got[0].Start != dataflow.MinWatermark {
			require.Equal(t, dataflow.Timestamp(tumbling.Offset()), modulo(got[0].Start, dataflow.Timestamp(size)))
		}

		sliding := window.Sliding(time.Duration(size), time.Duration(slide)).WithOffset(time.Duration(offset))
		got = assign(t, sliding, tsv)
		n := size / slide
		if size%slide == 0 {
			require.Len(t, got, int(n), "%v at %d", sliding, ts)
		} else {
			require.True(t, len(got) == int(n) || len(got) == int(n)+1, "%v at %d: %d windows", sliding, ts, len(got))
		}
		seen := map[window.Window]bool{}
		for i, win := range got {
			require.True(t, win.Contains(tsv), "sliding %v: %v does not contain %d", sliding, win, ts)
			require.False(t, seen[win], "duplicate %v", win)
			seen[win] = true
			if i > 0 {
				require.Less(t, win.Start, got[i-1].Start+1, "latest start first")
			}
		}

		session := window.Session(time.Duration(size))
		got = assign(t, session, tsv)
		require.Len(t, got, 1)
		require.Equal(t, tsv, got[0].Start)
		require.True(t, got[0].Contains(tsv))
	})
}

// positive maps every int64 onto [1, MaxInt64].
func positive(n int64) int64 {
	if n < 0 {
		n = -(n + 1)
	}
	return max(n, 1)
}

func modulo(a, b dataflow.Timestamp) dataflow.Timestamp {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

func BenchmarkAssignTo(b *testing.B) {
	for _, c := range []struct {
		name string
		a    window.Assigner
	}{
		{"tumbling", window.Tumbling(10 * time.Second)},
		{"sliding-10s-2s", window.Sliding(10*time.Second, 2*time.Second)},
		{"session", window.Session(time.Minute)},
		{"global", window.Global()},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]window.Window, 0, 8)
			ts := dataflow.TimestampOf(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			b.ReportAllocs()
			var err error
			for b.Loop() {
				ts += dataflow.Timestamp(time.Millisecond)
				buf, err = c.a.AssignTo(buf[:0], ts)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// The benchmark's claim, checked on every test run: AssignTo through the
// interface does not allocate when dst has room.
func TestAssignToDoesNotAllocate(t *testing.T) {
	for _, a := range []window.Assigner{window.Tumbling(10 * time.Second), window.Sliding(10*time.Second, 2*time.Second), window.Session(time.Minute), window.Global()} {
		buf := make([]window.Window, 0, 8)
		ts := dataflow.Timestamp(0)
		allocs := testing.AllocsPerRun(1000, func() {
			ts += 7 * ms
			buf, _ = a.AssignTo(buf[:0], ts)
		})
		require.Zero(t, allocs, "%v", a)
		_, err := a.AssignTo(buf[:0], dataflow.NoTimestamp)
		if a.IsEventTime() {
			allocs = testing.AllocsPerRun(100, func() { _, _ = a.AssignTo(buf[:0], dataflow.NoTimestamp) })
			require.Zero(t, allocs, "error path of %v", a)
			require.ErrorIs(t, err, window.ErrNoTimestamp)
		}
	}
}
