package window

import (
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
