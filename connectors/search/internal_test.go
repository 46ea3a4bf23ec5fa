package search

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

type rec struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

func openCommitter(t *testing.T, path string, r *dataflow.RestoredState) *bleveCommitter[rec] {
	t.Helper()
	c := &bleveCommitter[rec]{name: "idx", cfg: BleveConfig[rec]{Path: path}.withDefaults(), enc: newEncoder[rec](nil, func(r rec) string { return r.ID })}
	oc := &dataflow.OperatorContext{Job: "job", Operator: "idx", Subtask: 0, Parallelism: 1, MaxParallelism: 128, Restored: r}
	require.NoError(t, c.Open(context.Background(), oc))
	require.NoError(t, c.Cleanup(context.Background()))
	return c
}

// epochOf begins, writes and prepares an epoch for checkpoint ckpt.
func epochOf(t *testing.T, c *bleveCommitter[rec], ckpt int64, rs ...rec) *bleveEpoch {
	t.Helper()
	ctx := context.Background()
	e, err := c.Begin(ctx)
	require.NoError(t, err)
	for _, r := range rs {
		require.NoError(t, c.Write(ctx, e, r, dataflow.NoTimestamp))
	}
	c.checkpoint = ckpt
	e, err = c.Prepare(ctx, e)
	require.NoError(t, err)
	return e
}

func kindOf(t *testing.T, path, id string) string {
	t.Helper()
	res, err := Search(context.Background(), path, "", 100)
	require.NoError(t, err)
	for _, h := range res.Hits {
		if h.ID == id {
			return h.Fields["kind"].(string)
		}
	}
	return ""
}

// TestBleveCommitTwiceIsANoOp: Commit of an epoch already committed, or of
// an older one, finds the subtask's marker and writes nothing, so a
// replayed old epoch never overwrites a newer document.
func TestBleveCommitTwiceIsANoOp(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index")
	c := openCommitter(t, path, nil)
	e1 := epochOf(t, c, 1, rec{"a", "one"}, rec{"b", "one"})
	e2 := epochOf(t, c, 2, rec{"a", "two"})

	require.NoError(t, c.Commit(ctx, e1))
	last, ok, err := c.ix.marker(markerKey("job", "idx", 0))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(1), last)
	require.NoError(t, c.Commit(ctx, e2))
	require.Equal(t, "two", kindOf(t, path, "a"))

	applied, err := c.ix.commitEpoch(markerKey("job", "idx", 0), 2, e2.Docs)
	require.NoError(t, err)
	require.False(t, applied, "the same epoch again writes nothing")
	applied, err = c.ix.commitEpoch(markerKey("job", "idx", 0), 1, e1.Docs)
	require.NoError(t, err)
	require.False(t, applied, "an older epoch writes nothing")
	require.NoError(t, c.Commit(ctx, e1))
	require.Equal(t, "two", kindOf(t, path, "a"), "the newer document stays")
	require.Equal(t, "one", kindOf(t, path, "b"))

	// The epoch as the checkpoint records it (msgpack, exported fields)
	// commits the same after a restart.
	require.NoError(t, c.Close())
	c = openCommitter(t, path, &dataflow.RestoredState{CheckpointID: 2})
	require.NoError(t, c.Commit(ctx, &bleveEpoch{Job: "job", Sink: "idx", Subtask: 0, Checkpoint: 2, Docs: e2.Docs}))
	last, _, err = c.ix.marker(markerKey("job", "idx", 0))
	require.NoError(t, err)
	require.Equal(t, int64(2), last, "Cleanup keeps the markers up to the restored checkpoint")
	require.NoError(t, c.Close())
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "new\nline\r\ttab", "\x00\x1f", "ünïcødé ✓", "</script>"} {
		got := appendJSONString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(got, &back), "%s", got)
		require.Equal(t, s, back)
		require.False(t, strings.ContainsAny(string(got), "\n\r"), "one line")
	}
}

func TestBulkActionLine(t *testing.T) {
	d := Doc{Index: "views", ID: `v"42`, Source: []byte(`{"n":1}`)}
	require.Equal(t, `{"index":{"_index":"views","_id":"v\"42","version":7,"version_type":"external"}}`+"\n"+`{"n":1}`+"\n", string(appendAction(nil, &d, 7)))
	d.Version = 9 // a record version wins over the epoch's
	require.Contains(t, string(appendAction(nil, &d, 7)), `"version":9,`)
}

func TestRetryBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100e6, MaxBackoff: 1e9}
	var got []int64
	for a := 1; a <= 6; a++ {
		got = append(got, int64(p.Backoff(a)/1e6))
	}
	require.Equal(t, []int64{100, 200, 400, 800, 1000, 1000}, got)
}
