package window

import (
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// grid numbers the windows of a tumbling or sliding assigner: window k
// starts at offset + k·slide and ends size later, both clamped to the
// timestamp range (as span clamps them). Ordered by number, the windows are
// ordered by start, then end (windowLess). The fast operator keeps a window
// as its number: 8 bytes instead of a Window's 16.
type grid struct {
	size, slide, offset dataflow.Timestamp // offset in [0, slide)
	// lo and hi bound the numbers whose windows need no clamping and whose
	// arithmetic cannot overflow; the others (windows within a window's
	// size of the ends of the timestamp range) are computed exactly with
	// math/big.
	lo, hi int64
}

func newGrid(size, slide, offset dataflow.Timestamp) grid {
	g := grid{size: size, slide: slide, offset: offset}
	// lo = ceil((MinInt64 - offset) / slide), hi = floor((MaxInt64 - size - offset) / slide)
	s := big.NewInt(int64(slide))
	lo := new(big.Int).Sub(big.NewInt(math.MinInt64), big.NewInt(int64(offset)))
	lo.Add(lo, new(big.Int).Sub(s, big.NewInt(1)))
	lo.Div(lo, s) // Euclidean: floor for a positive divisor
	hi := new(big.Int).Sub(big.NewInt(math.MaxInt64), big.NewInt(int64(size)))
	hi.Sub(hi, big.NewInt(int64(offset)))
	hi.Div(hi, s)
	g.lo, g.hi = lo.Int64(), hi.Int64()
	return g
}

// latest returns the number of the latest-starting window that holds ts,
// and how far ts is past its start (distance).
func (g grid) latest(ts dataflow.Timestamp) (int64, dataflow.Timestamp) {
	q, r := ts/g.slide, ts%g.slide
	if r < 0 {
		q, r = q-1, r+g.slide
	}
	// ts = q·slide + r: the window starting at or before ts is q, or q-1
	// when r falls before the offset.
	if r < g.offset {
		q--
	}
	return int64(q), distance(ts, g.offset, g.slide)
}

// window returns window k.
func (g grid) window(k int64) Window {
	if k >= g.lo && k <= g.hi {
		// k·slide may wrap around where offset + k·slide does not: the
		// sum is exact.
		start := g.offset + dataflow.Timestamp(k)*g.slide
		return Window{Start: start, End: start + g.size}
	}
	start := new(big.Int).Mul(big.NewInt(k), big.NewInt(int64(g.slide)))
	start.Add(start, big.NewInt(int64(g.offset)))
	end := new(big.Int).Add(start, big.NewInt(int64(g.size)))
	return Window{Start: clampBig(start), End: clampBig(end)}
}

func clampBig(x *big.Int) dataflow.Timestamp {
	switch {
	case x.Cmp(big.NewInt(math.MinInt64)) < 0:
		return dataflow.MinWatermark
	case x.Cmp(big.NewInt(math.MaxInt64)) > 0:
		return dataflow.MaxWatermark
	}
	return dataflow.Timestamp(x.Int64())
}

// index returns the number of w, or an error if w is not a window of the
// grid (state written by an assigner of other windows).
func (g grid) index(w Window) (int64, error) {
	if g.lo <= g.hi {
		minStart, maxStart := g.offset+dataflow.Timestamp(g.lo)*g.slide, g.offset+dataflow.Timestamp(g.hi)*g.slide
		if w.Start >= minStart && w.Start <= maxStart {
			// Unsigned: the distance from minStart may exceed the int64
			// range.
			d := uint64(w.Start) - uint64(minStart)
			if d%uint64(g.slide) == 0 && w.End == w.Start+g.size {
				return g.lo + int64(d/uint64(g.slide)), nil
			}
			return 0, g.notOurs(w)
		}
	}
	// Near an end of the time range one of the bounds may be clamped, not
	// both (the window would be longer than the range): the number comes
	// from the other.
	t := new(big.Int)
	if w.End != dataflow.MaxWatermark {
		t.Sub(big.NewInt(int64(w.End)), big.NewInt(int64(g.size)))
	} else {
		t.SetInt64(int64(w.Start))
	}
	t.Sub(t, big.NewInt(int64(g.offset)))
	k, m := new(big.Int).DivMod(t, big.NewInt(int64(g.slide)), new(big.Int))
	if m.Sign() != 0 || !k.IsInt64() || g.window(k.Int64()) != w {
		return 0, g.notOurs(w)
	}
	return k.Int64(), nil
}

func (g grid) notOurs(w Window) error {
	return fmt.Errorf("%w: window %v is not one of the operator's windows (size %v, slide %v, offset %v): the state was written by another window assigner",
		errSlots, w, time.Duration(g.size), time.Duration(g.slide), time.Duration(g.offset))
}
