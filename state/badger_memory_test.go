package state_test

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

type windowAcc struct {
	Start, End int64
	Count      int64
}

// TestBadgerCachedEntryBytes checks the figure MemoryLimit counts a cached
// entry at: the most live heap per cached entry of a counter and of one
// window's accumulator while the cache turns over (evictions keep a quarter
// of it in flight) is at most state.BadgerCachedEntryBytes.
func TestBadgerCachedEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 100K-entry cache")
	}
	const n = 100_000
	t.Run("int64", func(t *testing.T) {
		measureCachedEntry(t, n, func(b state.Backend) func(i int) {
			v, err := state.NewValue[int64](b, "count")
			require.NoError(t, err)
			return func(i int) { require.NoError(t, v.Update(int64(i))) }
		})
	})
	t.Run("window", func(t *testing.T) {
		measureCachedEntry(t, n, func(b state.Backend) func(i int) {
			v, err := state.NewValue[[]windowAcc](b, "windows")
			require.NoError(t, err)
			return func(i int) { require.NoError(t, v.Update([]windowAcc{{Start: 0, End: 10, Count: int64(i)}})) }
		})
	})
}

func measureCachedEntry(t *testing.T, n int, declare func(state.Backend) func(i int)) {
	bc := state.DefaultBadgerConfig(t.TempDir())
	bc.CacheEntries = n
	bc.MemTableSize = 1 << 20 // memtables too small to matter next to the cache
	b, err := state.NewBadger(benchCfg(), bc)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	write := declare(b)
	empty := liveHeap() // Badger's own, with its memtable
	var buf []byte
	put := func(i int) {
		buf = strconv.AppendInt(append(buf[:0], "user-"...), int64(i), 10)
		b.SetCurrentKey(keygroup.Of(buf, maxPar), buf)
		write(i)
	}
	// Turn the cache over once, so that the eviction's buffers exist.
	for i := range 2 * n {
		put(i)
	}
	// Sample the live heap at points through another fill: the cache holds
	// between 3/4 of n and n entries, and an eviction's batch may be in
	// flight. Count the most against n entries.
	var full uint64
	for i := 2 * n; i < 4*n; i++ {
		put(i)
		if i%(n/8) == 0 {
			full = max(full, liveHeap())
		}
	}
	perEntry := float64(full-empty) / float64(n)
	t.Logf("live heap %d MiB with the backend empty, at most %d MiB with its cache full: %.0f B per cached entry (counted at %d)",
		empty>>20, full>>20, perEntry, state.BadgerCachedEntryBytes)
	require.LessOrEqual(t, perEntry, float64(state.BadgerCachedEntryBytes))
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
