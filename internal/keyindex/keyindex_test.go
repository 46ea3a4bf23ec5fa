package keyindex_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keyindex"
)

// checkAgainstMap puts and gets random keys, clears now and then, and
// compares every answer with a Go map's.
func checkAgainstMap[K comparable](t *testing.T, key func(r *rand.Rand) K) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	var x keyindex.Index[K]
	want := map[K]int32{}
	for op := range 200_000 {
		k := key(r)
		switch {
		case op%50_000 == 49_999:
			x.Clear()
			clear(want)
		case r.IntN(3) == 0:
			v := r.Int32N(1 << 30)
			x.Put(k, v)
			want[k] = v
		default:
			got, ok := x.Get(k)
			w, wok := want[k]
			require.Equal(t, wok, ok, "key %v", k)
			require.Equal(t, w, got, "key %v", k)
		}
		require.Equal(t, len(want), x.Len())
	}
	for k, v := range want {
		got, ok := x.Get(k)
		require.True(t, ok, "key %v", k)
		require.Equal(t, v, got, "key %v", k)
	}
}

func TestIndexMatchesMap(t *testing.T) {
	t.Run("int64", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) int64 { return r.Int64N(20_000) - 10_000 })
	})
	t.Run("int64 evenly spaced", func(t *testing.T) {
		// Multiples of a large power of two: the low bits never change.
		checkAgainstMap(t, func(r *rand.Rand) int64 { return r.Int64N(20_000) << 32 })
	})
	t.Run("int8", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) int8 { return int8(r.IntN(256)) })
	})
	t.Run("uint16", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) uint16 { return uint16(r.IntN(1 << 16)) })
	})
	t.Run("int32", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) int32 { return r.Int32N(30_000) - 15_000 })
	})
	t.Run("bool", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) bool { return r.IntN(2) == 0 })
	})
	t.Run("string", func(t *testing.T) {
		checkAgainstMap(t, func(r *rand.Rand) string { return fmt.Sprint("video-", r.IntN(20_000)) })
	})
	t.Run("struct", func(t *testing.T) {
		type key struct {
			Region string
			Video  int32
		}
		checkAgainstMap(t, func(r *rand.Rand) key { return key{fmt.Sprint(r.IntN(5)), r.Int32N(4000)} })
	})
}

func TestIndexZeroValueAndNegative(t *testing.T) {
	var x keyindex.Index[string]
	_, ok := x.Get("a")
	require.False(t, ok)
	x.Clear()
	require.Zero(t, x.Len())
	x.Put("", 0)
	v, ok := x.Get("")
	require.True(t, ok)
	require.Zero(t, v)
	require.Panics(t, func() { x.Put("b", -1) })
}

func Example() {
	var idx keyindex.Index[string]
	var counts []int // the values the index points into
	for _, video := range []string{"a", "b", "a", "c", "a"} {
		i, ok := idx.Get(video)
		if !ok {
			i = int32(len(counts))
			idx.Put(video, i)
			counts = append(counts, 0)
		}
		counts[i]++
	}
	i, _ := idx.Get("a")
	fmt.Println(idx.Len(), counts[i])
	// Output: 3 3
}

// BenchmarkIndex looks up 10K and 1M int64 keys in random order, in an
// Index, a Tagged and a Go map[int64]int32 in the same run, and prints the
// ratios. Each lookup reads the 64-byte entry found, as a cache does: a
// Tagged compares the key there.
func BenchmarkIndex(b *testing.B) {
	for _, n := range []int64{10_000, 1_000_000} {
		var mapRate, idxRate float64
		keys := func(i int) int64 { return int64(i) * 2654435761 % n }
		type entry struct {
			key int64
			val int32
			_   [48]byte
		}
		entries := make([]entry, n)
		for k := range n {
			entries[k] = entry{key: k, val: int32(k)}
		}
		b.Run(fmt.Sprintf("%d/map", n), func(b *testing.B) {
			m := map[int64]int32{}
			for k := range n {
				m[k] = int32(k)
			}
			var sum int32
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				sum += entries[m[keys(i)]].val
			}
			mapRate = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(mapRate, "lookups/s")
			_ = sum
		})
		b.Run(fmt.Sprintf("%d/index", n), func(b *testing.B) {
			var x keyindex.Index[int64]
			for k := range n {
				x.Put(k, int32(k))
			}
			var sum int32
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				v, _ := x.Get(keys(i))
				sum += entries[v].val
			}
			idxRate = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(idxRate, "lookups/s")
			_ = sum
		})
		var tagRate float64
		b.Run(fmt.Sprintf("%d/tagged", n), func(b *testing.B) {
			var x keyindex.Tagged[int64]
			for k := range n {
				x.Add(k, int32(k))
			}
			keyAt := func(i int32) int64 { return entries[i].key }
			var sum int32
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				v, _ := x.Get(keys(i), keyAt)
				sum += entries[v].val
			}
			tagRate = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(tagRate, "lookups/s")
			_ = sum
		})
		if mapRate > 0 && idxRate > 0 && tagRate > 0 {
			fmt.Fprintf(os.Stderr, "%d int64 keys: map %.0f lookups/s, keyindex %.0f lookups/s: %.2fx, tagged %.0f: %.2fx\n",
				n, mapRate, idxRate, idxRate/mapRate, tagRate, tagRate/mapRate)
		}
	}
}
