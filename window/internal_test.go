package window

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

// Flink's TimeWindowTest.testGetWindowStartWithOffset, case for case.
func TestStartOfMatchesFlink(t *testing.T) {
	day, eight := dataflow.Timestamp(24*time.Hour/time.Millisecond), dataflow.Timestamp(8*time.Hour/time.Millisecond)
	cases := []struct{ ts, offset, size, want dataflow.Timestamp }{
		// [0,7),[7,14),[14,21)...
		{1, 0, 7, 0}, {6, 0, 7, 0}, {7, 0, 7, 7}, {8, 0, 7, 7},
		// [-4,3),[3,10),[10,17)...
		{1, 3, 7, -4}, {2, 3, 7, -4}, {3, 3, 7, 3}, {9, 3, 7, 3}, {10, 3, 7, 10},
		// [-2,5),[5,12),[12,19)...
		{1, -2, 7, -2}, {-2, -2, 7, -2}, {3, -2, 7, -2}, {4, -2, 7, -2}, {7, -2, 7, 5}, {12, -2, 7, 12},
		// GMT+8 days, in milliseconds.
		{1470902048450, -eight, day, 1470844800000},
		// Negative timestamps round down, not toward zero.
		{-1, 0, 7, -7}, {-7, 0, 7, -7}, {-8, 0, 7, -14}, {-1, 3, 7, -4}, {-5, 3, 7, -11},
	}
	for _, c := range cases {
		require.Equal(t, c.want, startOf(c.ts, c.offset, c.size), "ts %d offset %d size %d", c.ts, c.offset, c.size)
		// Flink's formula, where it cannot overflow.
		flink := c.ts - ((c.ts-c.offset)%c.size+c.size)%c.size
		require.Equal(t, flink, startOf(c.ts, c.offset, c.size))
	}
}
