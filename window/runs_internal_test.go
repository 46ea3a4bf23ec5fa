package window

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// Runs written for several windows come back whole, window by window and
// key group by key group, with each key once and its encoding intact.
func TestRunsComeBackWindowByWindow(t *testing.T) {
	b, err := state.NewBadger(state.Config{OperatorUID: "x", KeyGroups: keygroup.Range{Start: 0, End: 128}}, state.BadgerConfig{Dir: t.TempDir(), CacheEntries: 100})
	require.NoError(t, err)
	defer b.Close()
	g := newGrid(dataflow.Timestamp(10*time.Second), dataflow.Timestamp(10*time.Second), 0)
	r, err := openRuns[int64, int64](b, dataflow.KeyGroupRange{Start: 0, End: 128}, g)
	require.NoError(t, err)
	enc := keygroup.EncoderFor[int64]()
	for w := range int64(3) {
		for k := range int64(1000) {
			e := enc(nil, k)
			r.add([]gslot[int64]{{k: w, acc: k}}, keygroup.Of(e, 128), e)
		}
		require.NoError(t, r.write())
		n := 0
		for kg := 0; kg < 128; kg++ {
			items, err := r.take(kg, w, false, func(a, b int64) int64 { return a + b })
			require.NoError(t, err)
			for i := range items {
				require.Len(t, r.q.enc(&items[i]), 8)
				require.Equal(t, items[i].acc, r.decode(r.q.enc(&items[i])))
				n++
			}
		}
		require.Equal(t, 1000, n)
	}
}

// A chunk that does not decode, one of other windows than the operator's,
// and one the index lists but the store lacks each fail with an error
// naming the key group and what is wrong, and leave the other key groups'
// runs alone.
func TestCorruptRunsAreRefused(t *testing.T) {
	b, err := state.NewBadger(state.Config{OperatorUID: "x", KeyGroups: keygroup.Range{Start: 0, End: 128}}, state.BadgerConfig{Dir: t.TempDir(), CacheEntries: 100})
	require.NoError(t, err)
	defer b.Close()
	kgs := dataflow.KeyGroupRange{Start: 0, End: 128}
	g := newGrid(dataflow.Timestamp(10*time.Second), dataflow.Timestamp(10*time.Second), 0)
	r, err := openRuns[int64, int64](b, kgs, g)
	require.NoError(t, err)
	enc := keygroup.EncoderFor[int64]()
	groups := map[int]bool{}
	for k := int64(0); len(groups) < 4; k++ {
		e := enc(nil, k)
		kg := keygroup.Of(e, 128)
		if !groups[kg] {
			groups[kg] = true
			r.add([]gslot[int64]{{k: 0, acc: k}}, kg, e)
		}
	}
	require.NoError(t, r.write())
	var kg []int
	for g := range groups {
		kg = append(kg, g)
	}
	merge := func(a, b int64) int64 { return a + b }
	overwrite := func(kg int, b2 []byte) {
		refs, err := r.refs(kg)
		require.NoError(t, err)
		require.Len(t, refs, 1)
		b.SetCurrentKey(kg, r.chunkKey(kg, refs[0]))
		if b2 == nil {
			require.NoError(t, r.chunks.Clear())
			return
		}
		require.NoError(t, r.chunks.Update(b2))
	}
	// window 0's header, then a key of 5 bytes with 1 byte left
	bad := binary.AppendUvarint(binary.AppendVarint([]byte{runVersion}, 0), uint64(10*time.Second))
	overwrite(kg[0], append(bad, 5, 1))
	_, err = r.take(kg[0], 0, false, merge)
	require.ErrorContains(t, err, fmt.Sprintf("window runs of key group %d: window: corrupt window state: run chunk: bad key", kg[0]))

	// a 7 s window, where the operator's are 10 s
	other := newGrid(dataflow.Timestamp(7*time.Second), dataflow.Timestamp(7*time.Second), 0)
	ro := &runStore[int64, int64]{be: b, acc: r.acc, grid: other, chunks: r.chunks, index: r.index}
	ro.add([]gslot[int64]{{k: 0, acc: 1}}, kg[1], enc(nil, 1))
	ro.q.sort()
	refs, err := r.refs(kg[1])
	require.NoError(t, err)
	ro.seq = refs[0].Seq
	_, err = ro.writeRun(kg[1], ro.q.items, nil)
	require.NoError(t, err)
	_, err = r.take(kg[1], 0, false, merge)
	require.ErrorContains(t, err, "the state was written by another window assigner")

	overwrite(kg[2], nil)
	_, err = r.take(kg[2], 0, false, merge)
	require.ErrorContains(t, err, fmt.Sprintf("window runs of key group %d: window: corrupt window state: chunk", kg[2]))
	require.ErrorContains(t, err, "missing")

	items, err := r.take(kg[3], 0, false, merge)
	require.NoError(t, err)
	require.Len(t, items, 1, "another key group's runs are whole")
}

// A mirror of the buffer is written next to real runs, reads back whole
// (each key once, in whatever order), and dropMirror deletes it and leaves
// the real runs as they were.
func TestMirrorIsDroppedAndLeavesRuns(t *testing.T) {
	b, err := state.NewHeap(state.Config{OperatorUID: "x", KeyGroups: keygroup.Range{Start: 0, End: 128}})
	require.NoError(t, err)
	defer b.Close()
	kgs := dataflow.KeyGroupRange{Start: 0, End: 128}
	g := newGrid(dataflow.Timestamp(10*time.Second), dataflow.Timestamp(10*time.Second), 0)
	open := func() *runStore[int64, int64] {
		r, err := openRuns[int64, int64](b, kgs, g)
		require.NoError(t, err)
		return r
	}
	r := open()
	enc := keygroup.EncoderFor[int64]()
	merge := func(a, b int64) int64 { return a + b }
	// real runs: window 0, keys 0-99, 1 each
	for k := range int64(100) {
		e := enc(nil, k)
		r.add([]gslot[int64]{{k: 0, acc: 1}}, keygroup.Of(e, 128), e)
	}
	require.NoError(t, r.write())
	// the buffer: keys 0-4999 with 10 in window 0 and k in window 1
	const n = 5000
	buf := func(i int) (int, []byte, []gslot[int64]) {
		e := enc(nil, int64(i))
		return keygroup.Of(e, 128), e, []gslot[int64]{{k: 0, acc: 10}, {k: 1, acc: int64(i)}}
	}
	sums := func() (count int, sum map[int64]int64) {
		sum = map[int64]int64{}
		for kg := range 128 {
			items, err := r.take(kg, 0, true, merge)
			require.NoError(t, err)
			for i := range items {
				sum[items[i].k] += items[i].acc
				count++
			}
		}
		return count, sum
	}
	require.NoError(t, r.mirror(n, buf))
	require.Equal(t, []int64{0}, r.spilled, "a mirror is not runs to merge")
	count, sum := sums()
	require.Equal(t, 2*n, count, "each key once per window")
	require.Equal(t, int64(100+10*n), sum[0])
	require.Equal(t, int64(n*(n-1)/2), sum[1])

	// write again, drop the mirror: the real runs are left
	r2 := open()
	for k := range int64(100) {
		e := enc(nil, k)
		r2.add([]gslot[int64]{{k: 0, acc: 1}}, keygroup.Of(e, 128), e)
	}
	require.NoError(t, r2.write())
	require.NoError(t, r2.mirror(n, buf))
	require.NoError(t, r2.dropMirror())
	require.False(t, r2.mirrored)
	require.NoError(t, r2.dropMirror(), "dropping twice does nothing")
	r = r2
	count, sum = sums()
	require.Equal(t, 100, count)
	require.Equal(t, map[int64]int64{0: 100}, sum)
}
