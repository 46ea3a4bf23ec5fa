package keyindex_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keyindex"
)

// checkTagged looks random keys up in a Tagged over a slice of keys, adding
// those it misses and clearing now and then, and compares every answer
// with a Go map's.
func checkTagged[K comparable](t *testing.T, key func(r *rand.Rand) K) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 9))
	var x keyindex.Tagged[K]
	var keys []K
	keyAt := func(i int32) K { return keys[i] }
	want := map[K]int32{}
	collisions := 0
	for op := range 200_000 {
		if op%70_000 == 69_999 {
			x.Clear()
			clear(want)
			keys = keys[:0]
		}
		k := key(r)
		got, ok := x.Get(k, keyAt)
		w, wok := want[k]
		require.Equal(t, wok, ok, "key %v", k)
		require.Equal(t, w, got, "key %v", k)
		if ok {
			// The candidate is k's index unless another key of the table
			// has k's tag and comes first in its probe: rare.
			c, cok := x.Candidate(k)
			require.True(t, cok)
			if keys[c] != k {
				collisions++
			}
			continue
		}
		x.Add(k, int32(len(keys)))
		want[k] = int32(len(keys))
		keys = append(keys, k)
		require.Equal(t, len(want), x.Len())
	}
	require.Less(t, collisions, 200, "candidates that are not the key")
	for k, v := range want {
		got, ok := x.Get(k, keyAt)
		require.True(t, ok, "key %v", k)
		require.Equal(t, v, got, "key %v", k)
	}
}

func TestTaggedMatchesMap(t *testing.T) {
	t.Run("int64", func(t *testing.T) {
		checkTagged(t, func(r *rand.Rand) int64 { return r.Int64N(60_000) - 30_000 })
	})
	t.Run("int64 evenly spaced", func(t *testing.T) {
		checkTagged(t, func(r *rand.Rand) int64 { return r.Int64N(60_000) << 32 })
	})
	t.Run("uint16", func(t *testing.T) {
		checkTagged(t, func(r *rand.Rand) uint16 { return uint16(r.IntN(1 << 16)) })
	})
	t.Run("string", func(t *testing.T) {
		checkTagged(t, func(r *rand.Rand) string { return fmt.Sprint("video-", r.IntN(60_000)) })
	})
	t.Run("struct", func(t *testing.T) {
		type key struct {
			Region string
			Video  int32
		}
		checkTagged(t, func(r *rand.Rand) key { return key{fmt.Sprint(r.IntN(5)), r.Int32N(12_000)} })
	})
}

// Keys whose tags are equal are told apart by the keys themselves.
func TestTaggedTellsCollidingTagsApart(t *testing.T) {
	// An int64 key's hash is k·fib: keys d·j apart, where d·fib = 1 (mod
	// 2^64), hash j apart, within the same 32-bit tag.
	const fib = 0x9E3779B97F4A7C15
	inv := uint64(fib) // Newton: x = x(2 - fib·x) doubles the bits right
	for range 6 {
		inv *= 2 - fib*inv
	}
	require.Equal(t, uint64(1), uint64(fib)*inv)
	var keys []int64
	for j := range uint64(64) {
		keys = append(keys, int64((1<<40)*inv+j*inv)) // hashes 2^40 + j: one tag
	}
	var x keyindex.Tagged[int64]
	keyAt := func(i int32) int64 { return keys[i] }
	for i, k := range keys {
		_, ok := x.Get(k, keyAt)
		require.False(t, ok)
		x.Add(k, int32(i))
	}
	for i, k := range keys {
		v, ok := x.Get(k, keyAt)
		require.True(t, ok)
		require.Equal(t, int32(i), v)
	}
	_, ok := x.Get(int64((1<<40)*inv+100*inv), keyAt)
	require.False(t, ok, "a key of the same tag that is not in the table")
	require.Panics(t, func() { x.Add(1, -1) })
}
