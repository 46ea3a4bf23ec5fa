package window_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/window"
)

func w(start, end dataflow.Timestamp) window.Window { return window.Window{Start: start, End: end} }

func TestWindowBasics(t *testing.T) {
	a := w(0, 10)
	require.Equal(t, dataflow.Timestamp(9), a.MaxTimestamp())
	require.True(t, a.Contains(0))
	require.True(t, a.Contains(9))
	require.False(t, a.Contains(10))
	require.False(t, a.Contains(-1))
	require.Equal(t, 10*time.Nanosecond, a.Duration())
	require.Equal(t, time.Duration(math.MaxInt64), window.GlobalWindow.Duration())
	require.Equal(t, "[1970-01-01T00:00:00Z, 1970-01-01T00:01:00Z)", w(0, dataflow.Timestamp(time.Minute)).String())
	require.Equal(t, "[-inf, +inf)", window.GlobalWindow.String())
}

func TestIntersectsAndCover(t *testing.T) {
	cases := []struct {
		a, b      window.Window
		intersect bool
		cover     window.Window
	}{
		{w(0, 10), w(5, 15), true, w(0, 15)},
		{w(0, 10), w(10, 20), true, w(0, 20)}, // touching counts, as in Flink
		{w(0, 10), w(11, 20), false, w(0, 20)},
		{w(0, 10), w(2, 3), true, w(0, 10)},
		{w(-20, -10), w(-5, 0), false, w(-20, 0)},
		{window.GlobalWindow, w(0, 1), true, window.GlobalWindow},
	}
	for _, c := range cases {
		require.Equal(t, c.intersect, c.a.Intersects(c.b), "%v %v", c.a, c.b)
		require.Equal(t, c.intersect, c.b.Intersects(c.a), "%v %v", c.b, c.a)
		require.Equal(t, c.cover, c.a.Cover(c.b))
		require.Equal(t, c.cover, c.b.Cover(c.a))
	}
}

func TestCleanupTime(t *testing.T) {
	require.Equal(t, dataflow.Timestamp(9), w(0, 10).CleanupTime(0))
	require.Equal(t, dataflow.Timestamp(9+5), w(0, 10).CleanupTime(5))
	// Saturates instead of wrapping around to the past.
	near := w(math.MaxInt64-10, math.MaxInt64)
	require.Equal(t, dataflow.MaxWatermark, near.CleanupTime(time.Hour))
	require.Equal(t, dataflow.MaxWatermark-1, window.GlobalWindow.CleanupTime(0))
	require.Equal(t, dataflow.MaxWatermark, window.GlobalWindow.CleanupTime(1))
}

func TestValidateLateness(t *testing.T) {
	require.NoError(t, window.ValidateLateness(0))
	require.NoError(t, window.ValidateLateness(time.Minute))
	err := window.ValidateLateness(-time.Second)
	require.ErrorIs(t, err, window.ErrInvalidWindow)
	require.EqualError(t, err, "window: invalid window configuration: allowed lateness -1s is negative")
}
