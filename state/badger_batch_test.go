package state

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// TestBadgerEvictionMatchesModel drives a tiny Badger cache through random
// updates, clears, map puts and removes, so that entries keep being evicted
// into background batches (sets and deletes) and read back, while batches are
// in flight and after they settle; every read must match a plain Go model.
func TestBadgerEvictionMatchesModel(t *testing.T) {
	bc := DefaultBadgerConfig(t.TempDir())
	bc.CacheEntries = 40
	b, err := NewBadger(testConfig(), bc)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	v, err := NewValue[int](b, "v")
	require.NoError(t, err)
	m, err := NewMap[int, int](b, "m")
	require.NoError(t, err)

	const nKeys = 300
	vals := map[int]int{}
	maps := map[int]map[int]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 30_000 {
		k := rng.IntN(nKeys)
		kb := []byte(fmt.Sprint("key-", k))
		b.SetCurrentKey(keygroup.Of(kb, 128), kb)
		got, ok, err := v.Get()
		require.NoError(t, err)
		want, wok := vals[k]
		require.Equal(t, wok, ok, "op %d key %d", i, k)
		require.Equal(t, want, got, "op %d key %d", i, k)
		switch rng.IntN(10) {
		case 0:
			require.NoError(t, v.Clear())
			delete(vals, k)
		default:
			require.NoError(t, v.Update(got+1))
			vals[k] = got + 1
		}
		mk := rng.IntN(4)
		mv, ok, err := m.Get(mk)
		require.NoError(t, err)
		wv, wok := maps[k][mk]
		require.Equal(t, wok, ok, "op %d key %d map key %d", i, k, mk)
		require.Equal(t, wv, mv)
		switch rng.IntN(8) {
		case 0:
			require.NoError(t, m.Remove(mk))
			delete(maps[k], mk)
		case 1:
			require.NoError(t, m.Clear())
			delete(maps, k)
		default:
			require.NoError(t, m.Put(mk, i))
			if maps[k] == nil {
				maps[k] = map[int]int{}
			}
			maps[k][mk] = i
		}
		n, err := m.Len()
		require.NoError(t, err)
		require.Equal(t, len(maps[k]), n, "op %d key %d", i, k)
	}
}
