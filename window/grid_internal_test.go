package window

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

// The grid's numbered windows are exactly the windows the assigners give
// (span, clamped at the ends of the time range), in the same order, and a
// window's number comes back from the window.
func TestGridMatchesTheAssigners(t *testing.T) {
	type shape struct{ size, slide, offset dataflow.Timestamp }
	shapes := []shape{
		{10, 10, 0}, {10, 10, 3}, {10, 3, 0}, {10, 3, 2}, {7, 2, 1},
		{dataflow.Timestamp(10 * time.Second), dataflow.Timestamp(10 * time.Second), 0},
		{dataflow.Timestamp(time.Hour), dataflow.Timestamp(time.Minute), dataflow.Timestamp(17 * time.Second)},
		{1 << 62, 1 << 61, 5},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range shapes {
		g := newGrid(sh.size, sh.slide, sh.offset)
		var tss []dataflow.Timestamp
		for _, base := range []dataflow.Timestamp{math.MinInt64 + 1, -sh.size, 0, math.MaxInt64 - 1} {
			for i := range dataflow.Timestamp(40) {
				switch {
				case base < 0 && base < math.MinInt64+2*sh.size:
					tss = append(tss, base+i*sh.size/16)
				case base > math.MaxInt64-2*sh.size:
					tss = append(tss, base-i*sh.size/16)
				default:
					tss = append(tss, base+i)
				}
			}
		}
		for range 1000 {
			tss = append(tss, dataflow.Timestamp(r.Int64()))
		}
		for _, ts := range tss {
			if checkTimestamp(ts) != nil {
				continue
			}
			var want []Window
			for d := distance(ts, sh.offset, sh.slide); d < sh.size; d += sh.slide {
				want = append(want, span(ts, d, sh.size))
			}
			var got []Window
			k, d := g.latest(ts)
			require.Equal(t, distance(ts, sh.offset, sh.slide), d)
			for ; d < sh.size; k, d = k-1, d+sh.slide {
				w := g.window(k)
				got = append(got, w)
				back, err := g.index(w)
				require.NoError(t, err, "%v: window %v", sh, w)
				require.Equal(t, k, back, "%v: window %v", sh, w)
			}
			require.Equal(t, want, got, "%v: ts %d", sh, ts)
			for i := 1; i < len(got); i++ {
				require.True(t, windowLess(got[i], got[i-1]), "numbers order windows as windowLess")
			}
		}
		// Windows of other assigners are refused, naming the window.
		for _, w := range []Window{{Start: sh.offset + 1, End: sh.offset + 1 + sh.size}, {Start: sh.offset, End: sh.offset + sh.size + 1}, GlobalWindow} {
			if sh.slide == 1 {
				continue
			}
			_, err := g.index(w)
			require.ErrorIs(t, err, errSlots, "%v: %v", sh, w)
		}
	}
}

// The fast operator's windows encode to the bytes of the core operator's,
// so that either restores the other's savepoint.
func TestGridSlotsEncodeAsWindows(t *testing.T) {
	g := newGrid(10, 3, 2)
	plain := slotsCodec[slot[int64], int64]{acc: state.Msgpack[int64](), slots: plainSlots[int64]{}}
	fast := slotsCodec[gslot[int64], int64]{acc: state.Msgpack[int64](), slots: gridSlots[int64]{g}}
	// Clamped at the start of the time range, and at its end.
	gs := []gslot[int64]{{k: g.lo - 1, acc: 1}, {k: g.lo, acc: 2}, {k: -4, acc: 2}, {k: 0, acc: 3}, {k: 7, acc: 4}, {k: g.hi, acc: 5}, {k: g.hi + 1, acc: 6}}
	require.Equal(t, dataflow.MinWatermark, g.window(g.lo-1).Start)
	require.Equal(t, dataflow.MaxWatermark, g.window(g.hi+1).End)
	var ps []slot[int64]
	for _, x := range gs {
		ps = append(ps, slot[int64]{win: g.window(x.k), acc: x.acc})
	}
	a, err := fast.Append(nil, gs)
	require.NoError(t, err)
	b, err := plain.Append(nil, ps)
	require.NoError(t, err)
	require.Equal(t, b, a)
	back, err := fast.Decode(b)
	require.NoError(t, err)
	require.Equal(t, gs, back)

	// A window of another size does not decode into the grid.
	other, err := plain.Append(nil, []slot[int64]{{win: Window{Start: 2, End: 14}, acc: 1}})
	require.NoError(t, err)
	_, err = fast.Decode(other)
	require.ErrorIs(t, err, errSlots)
	require.ErrorContains(t, err, "not one of the operator's windows")
}
