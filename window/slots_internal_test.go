package window

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

func TestSlotsCodecRoundTrips(t *testing.T) {
	c := slotsCodec[slot[CountsAcc[string]], CountsAcc[string]]{acc: state.Msgpack[CountsAcc[string]](), slots: plainSlots[CountsAcc[string]]{}}
	counts := func(n int) CountsAcc[string] {
		acc := CountsAcc[string]{Counts: map[string]int64{}}
		for i := range n {
			acc.Counts[fmt.Sprint("key-", i)] = int64(i)
		}
		return acc
	}
	in := []slot[CountsAcc[string]]{
		{win: GlobalWindow, acc: CountsAcc[string]{Counts: map[string]int64{"a": 1}}},
		{win: Window{Start: dataflow.MinWatermark, End: -5}, acc: counts(20)}, // a 2-byte length
		{win: Window{Start: 0, End: 10}},
		{win: Window{Start: 10, End: dataflow.MaxWatermark}, acc: CountsAcc[string]{Counts: map[string]int64{"b": 2, "c": math.MaxInt64}}},
	}
	b, err := c.Append([]byte("prefix"), in)
	require.NoError(t, err)
	require.Equal(t, "prefix", string(b[:6]), "appends")
	out, err := c.Decode(b[6:])
	require.NoError(t, err)
	require.Equal(t, in, out)

	// A 3-byte length.
	big := []slot[CountsAcc[string]]{{win: Window{Start: 1, End: 2}, acc: counts(2000)}, {win: Window{Start: 3, End: 4}}}
	b2, err := c.Append(nil, big)
	require.NoError(t, err)
	out, err = c.Decode(b2)
	require.NoError(t, err)
	require.Equal(t, big, out)

	empty, err := c.Append(nil, nil)
	require.NoError(t, err)
	out, err = c.Decode(empty)
	require.NoError(t, err)
	require.Empty(t, out)

	// Every truncation, and a trailing byte, is refused rather than misread.
	for n := range len(b) - 6 {
		_, err := c.Decode(b[6 : 6+n])
		require.ErrorIs(t, err, errSlots, "truncated to %d bytes", n)
	}
	_, err = c.Decode(append(b[6:], 0))
	require.ErrorIs(t, err, errSlots)
}

func TestFindSlotKeepsWindowsSorted(t *testing.T) {
	var s []slot[int64]
	for _, start := range []dataflow.Timestamp{4, 0, 8, 2, 6, 2} {
		w := Window{Start: start, End: start + 10}
		i, ok := findSlot(s, w)
		if ok {
			s[i].acc++
			continue
		}
		s = insertSlot(s, i, slot[int64]{win: w, acc: 1})
	}
	var starts []dataflow.Timestamp
	for _, x := range s {
		starts = append(starts, x.win.Start)
	}
	require.Equal(t, []dataflow.Timestamp{0, 2, 4, 6, 8}, starts)
	require.Equal(t, int64(2), s[1].acc)
	s = removeSlot(s, 0)
	s = removeSlot(s, len(s)-1)
	require.Len(t, s, 3)
	require.Equal(t, dataflow.Timestamp(2), s[0].win.Start)
	require.Equal(t, dataflow.Timestamp(6), s[2].win.Start)
}

func FuzzSlotsCodec(f *testing.F) {
	c := slotsCodec[slot[AvgAcc], AvgAcc]{acc: state.Msgpack[AvgAcc](), slots: plainSlots[AvgAcc]{}}
	seed, err := c.Append(nil, []slot[AvgAcc]{{win: Window{Start: 1, End: 2}, acc: AvgAcc{Sum: 3, Count: 4}}})
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte{slotsVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := c.Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes back to a form that decodes the same (compared
		// encoded: a NaN is not equal to itself).
		again, err := c.Append(nil, s)
		require.NoError(t, err)
		s2, err := c.Decode(again)
		require.NoError(t, err)
		third, err := c.Append(nil, s2)
		require.NoError(t, err)
		require.Equal(t, again, third)
	})
}

// A slotList holds two windows inline and more in a slice of its own, and
// gives the same windows as a []gslot through every change.
func TestSlotListMatchesASlice(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var l slotList[int64]
	var want []gslot[int64]
	var direct []gslot[int64]
	for range 2000 {
		switch r.IntN(5) {
		case 0, 1, 2:
			k := int64(r.IntN(6))
			i, ok := findGslot(want, k)
			j, ok2 := findGslot(l.view(), k)
			require.Equal(t, i, j)
			require.Equal(t, ok, ok2)
			if ok {
				want[i].acc++
				l.view()[j].acc++
				continue
			}
			want = insertSlot(want, i, gslot[int64]{k: k, acc: 1})
			l.insert(j, gslot[int64]{k: k, acc: 1})
		case 3:
			n := r.IntN(len(want) + 1)
			want = want[:n]
			l.truncate(n)
		default:
			// Written to keyed state and read back, into the cache (set) or
			// not (wrap, whose changes go to the slice wrapped).
			s := l.slice()
			if r.IntN(2) == 0 {
				l.set(slices.Clone(s))
				require.Equal(t, len(want) > len(l.inl), l.ext != nil, "inline when it fits")
			} else {
				direct = slices.Clone(s)
				l.wrap(&direct)
			}
		}
		require.Equal(t, len(want), len(l.view()))
		if len(want) > 0 {
			require.Equal(t, want, l.view())
			require.Equal(t, want, l.slice())
		}
		if l.ext == &direct {
			require.Equal(t, l.view(), direct, "changes go to the wrapped slice")
		}
	}
}

// A cache entry of an integer key and an int64 accumulator (a count) takes
// 64 bytes.
func TestSlotListSize(t *testing.T) {
	require.Equal(t, uintptr(48), unsafe.Sizeof(slotList[int64]{}))
}
