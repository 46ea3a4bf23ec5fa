package state_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/state"
)

// Prefetch reads, from several goroutines, the keys the Badger cache does
// not hold, and what the reads that follow give is what they gave without
// it: evicted keys, cached ones, deleted ones, keys never written, and keys
// given twice.
func TestPrefetchChangesNoValue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		for _, cache := range []int{200, 2000} {
			t.Run(fmt.Sprint("cache ", cache), func(t *testing.T) {
				cfg := cfgFor(0, 1, newClock())
				var b state.Backend
				if bk.name == "badger" {
					bc := state.DefaultBadgerConfig(t.TempDir())
					bc.CacheEntries = cache
					var err error
					b, err = state.NewBadger(cfg, bc)
					require.NoError(t, err)
					t.Cleanup(func() { require.NoError(t, b.Close()) })
				} else {
					b = bk.open(t, cfg)
				}
				v, err := state.NewValue[int64](b, "v")
				require.NoError(t, err)
				ks := keys(6000)
				want := map[string]int64{}
				for i, k := range ks[:5000] {
					setKey(b, k)
					require.NoError(t, v.Update(int64(i)))
					want[k] = int64(i)
				}
				for i := 0; i < 5000; i += 7 {
					setKey(b, ks[i])
					require.NoError(t, v.Clear())
					delete(want, ks[i])
				}
				var refs []state.Key
				for i := 0; i < len(ks); i += 3 {
					refs = append(refs, state.Key{Group: kgOf(ks[i]), Enc: []byte(ks[i])})
				}
				refs = append(refs, refs[:100]...)
				v.Prefetch(refs)
				for _, k := range ks {
					setKey(b, k)
					got, ok, err := v.Get()
					require.NoError(t, err)
					w, wok := want[k]
					require.Equal(t, wok, ok, k)
					require.Equal(t, w, got, k)
				}
			})
		}
	})
}
