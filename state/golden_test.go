package state_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/state"
)

// The files in testdata were written by format version 1. Every later build
// must restore them to the same state: run with SLUICE_UPDATE_GOLDEN=1 only
// when the format version changes (and keep the old files).
func TestGoldenV1(t *testing.T) {
	base, delta := filepath.Join("testdata", "v1-base.snap"), filepath.Join("testdata", "v1-delta.snap")
	if os.Getenv("SLUICE_UPDATE_GOLDEN") != "" {
		clk := newClock()
		b := backends[0].open(t, cfgFor(0, 1, clk))
		h := declareAll(t, b)
		for i, k := range []string{"alpha", "beta", "gamma"} {
			setKey(b, k)
			require.NoError(t, h.val.Update(int64(i+1)))
			require.NoError(t, h.list.Add(k, k+"!"))
			require.NoError(t, h.m.Put("x", i))
			require.NoError(t, h.m.Put("y", -i))
			require.NoError(t, h.red.Add(10))
			require.NoError(t, h.agg.Add(int64(i)))
		}
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(base, snapshot(t, b, 1, state.SnapshotOptions{}), 0o644))
		setKey(b, "beta")
		require.NoError(t, h.val.Clear())
		require.NoError(t, h.m.Remove("x"))
		setKey(b, "gamma")
		require.NoError(t, h.list.Clear())
		require.NoError(t, h.red.Add(5))
		require.NoError(t, os.WriteFile(delta, snapshot(t, b, 2, state.SnapshotOptions{}), 0o644))
	}
	baseB, err := os.ReadFile(base)
	require.NoError(t, err)
	deltaB, err := os.ReadFile(delta)
	require.NoError(t, err)
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		require.NoError(t, b.Restore(context.Background(), state.Chain{bytes.NewReader(baseB), bytes.NewReader(deltaB)}))
		h := declareAll(t, b)
		i64 := func(v int64) *int64 { return &v }
		m := model{
			"alpha": {val: i64(1), list: []string{"alpha", "alpha!"}, m: map[string]int{"x": 0, "y": 0}, red: i64(10), aggSum: 0, aggN: 1},
			"beta":  {list: []string{"beta", "beta!"}, m: map[string]int{"y": -1}, red: i64(10), aggSum: 1, aggN: 1},
			"gamma": {val: i64(3), m: map[string]int{"x": 2, "y": -2}, red: i64(15), aggSum: 2, aggN: 1},
			"delta": {},
		}
		for k := range m {
			check(t, b, h, m, k)
		}
	})
}
