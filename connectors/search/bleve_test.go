package search_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/search"
)

func bleveCfg(t *testing.T) search.BleveConfig[event] {
	return search.BleveConfig[event]{Path: filepath.Join(t.TempDir(), "index"), ID: eventID}
}

func TestBleveNothingVisibleBeforeCommitThenWholeEpochs(t *testing.T) {
	cfg := bleveCfg(t)
	op := openBleveOp(t, cfg, 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()

	process(t, op, events(0, 10))
	require.Empty(t, indexedIDs(t, cfg.Path), "nothing is visible before a checkpoint")
	snapshot(t, op, 1)
	require.Empty(t, indexedIDs(t, cfg.Path), "a prepared epoch stays invisible until its checkpoint completes")

	process(t, op, events(10, 15)) // the next epoch, checkpoint 2
	complete(t, op, 1)
	require.Equal(t, idRange(0, 10), indexedIDs(t, cfg.Path), "exactly checkpoint 1's documents")

	snapshot(t, op, 2)
	snapshot(t, op, 3) // an empty epoch
	complete(t, op, 3) // checkpoint 2's notice was skipped: 3 commits both
	require.Equal(t, idRange(0, 15), indexedIDs(t, cfg.Path))

	// A repeated or late notice does nothing more.
	complete(t, op, 2)
	complete(t, op, 3)
	require.Equal(t, idRange(0, 15), indexedIDs(t, cfg.Path))

	// The documents are the records, as JSON: fields by their json tags.
	res, err := search.Search(context.Background(), cfg.Path, "kind:click", 100)
	require.NoError(t, err)
	require.Equal(t, uint64(4), res.Total) // 1, 5, 9, 13
	require.Equal(t, "click", res.Hits[0].Fields["kind"])
	res, err = search.Search(context.Background(), cfg.Path, "id:7", 1)
	require.NoError(t, err)
	require.Equal(t, []search.Hit{{ID: "7", Score: res.Hits[0].Score, Fields: map[string]any{"id": 7.0, "kind": "like", "score": 1.75}}}, res.Hits)
}

func TestBleveRepeatedIDInAnEpochKeepsTheLastRecord(t *testing.T) {
	cfg := bleveCfg(t)
	op := openBleveOp(t, cfg, 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()
	process(t, op, []event{{ID: 1, Kind: "first"}, {ID: 2, Kind: "x"}, {ID: 1, Kind: "second"}})
	snapshot(t, op, 1)
	complete(t, op, 1)
	res, err := search.Search(context.Background(), cfg.Path, "id:1", 10)
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.Total)
	require.Equal(t, "second", res.Hits[0].Fields["kind"])

	// A later epoch overwrites the document.
	process(t, op, []event{{ID: 1, Kind: "third"}})
	snapshot(t, op, 2)
	complete(t, op, 2)
	res, err = search.Search(context.Background(), cfg.Path, "id:1", 10)
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.Total)
	require.Equal(t, "third", res.Hits[0].Fields["kind"])
	require.Equal(t, []string{"1", "2"}, indexedIDs(t, cfg.Path))
}

// TestBleveCrashRestoresExactlyOnce: checkpoint 1 completes but its notice is
// lost; checkpoint 2 is prepared but never completes; more records are in
// the open epoch; the process dies. The restored run commits checkpoint 1's
// epoch, and the records replayed after it are indexed once.
func TestBleveCrashRestoresExactlyOnce(t *testing.T) {
	cfg := bleveCfg(t)
	op := openBleveOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 10))
	state1 := snapshot(t, op, 1)
	process(t, op, events(10, 20))
	snapshot(t, op, 2)
	process(t, op, events(20, 25))
	require.NoError(t, op.Close()) // the crash: nothing was committed
	require.Empty(t, indexedIDs(t, cfg.Path))

	re := openBleveOp(t, cfg, 0, 1, restored(1, state1))
	require.Equal(t, idRange(0, 10), indexedIDs(t, cfg.Path), "exactly checkpoint 1's documents")
	process(t, re, events(10, 25)) // the source replays from checkpoint 1
	snapshot(t, re, 2)
	complete(t, re, 2)
	require.Equal(t, idRange(0, 25), indexedIDs(t, cfg.Path))
	require.NoError(t, re.Close())

	// Restoring from checkpoint 1 again (its epoch is committed) changes
	// nothing.
	for range 2 {
		re := openBleveOp(t, cfg, 0, 1, restored(1, state1))
		require.Equal(t, idRange(0, 25), indexedIDs(t, cfg.Path))
		require.NoError(t, re.Close())
	}
}

// TestBleveFreshStartForgetsOldMarkers: a job started afresh numbers its
// checkpoints from 1 again; the markers of the earlier run must not make its
// commits look done.
func TestBleveFreshStartForgetsOldMarkers(t *testing.T) {
	cfg := bleveCfg(t)
	op := openBleveOp(t, cfg, 0, 1, nil)
	for ckpt := int64(1); ckpt <= 3; ckpt++ {
		process(t, op, events(ckpt*10, ckpt*10+5))
		snapshot(t, op, ckpt)
		complete(t, op, ckpt)
	}
	require.NoError(t, op.Close())

	fresh := openBleveOp(t, cfg, 0, 1, nil)
	process(t, fresh, events(100, 105))
	snapshot(t, fresh, 1)
	complete(t, fresh, 1)
	require.NoError(t, fresh.Close())
	want := append(append(append(idRange(10, 15), idRange(20, 25)...), idRange(30, 35)...), idRange(100, 105)...)
	require.ElementsMatch(t, want, indexedIDs(t, cfg.Path))
}

// TestBleveRescaleThreeToTwo: three subtasks prepare checkpoint 1 and crash;
// two subtasks restore: new subtask 0 commits old 0 and 2, new 1 commits
// old 1, and each old subtask's epoch is committed under its own marker.
func TestBleveRescaleThreeToTwo(t *testing.T) {
	cfg := bleveCfg(t)
	states := make([][]byte, 3)
	ops := make([]sinkOp[event], 3)
	for sub := range 3 {
		ops[sub] = openBleveOp(t, cfg, sub, 3, nil)
		base := int64(sub * 100)
		process(t, ops[sub], events(base, base+10))
		states[sub] = snapshot(t, ops[sub], 1)
		process(t, ops[sub], events(base+10, base+20)) // lost in the crash
	}
	for _, op := range ops {
		require.NoError(t, op.Close())
	}
	require.Empty(t, indexedIDs(t, cfg.Path))

	r := restored(1, states...)
	ops = []sinkOp[event]{openBleveOp(t, cfg, 0, 2, r), openBleveOp(t, cfg, 1, 2, r)}
	want := append(append(idRange(0, 10), idRange(100, 110)...), idRange(200, 210)...)
	require.ElementsMatch(t, want, indexedIDs(t, cfg.Path))
	process(t, ops[0], append(events(10, 20), events(210, 220)...))
	process(t, ops[1], events(110, 120))
	for _, op := range ops {
		snapshot(t, op, 2)
		complete(t, op, 2)
		require.NoError(t, op.Close())
	}
	want = append(append(idRange(0, 20), idRange(100, 120)...), idRange(200, 220)...)
	require.ElementsMatch(t, want, indexedIDs(t, cfg.Path))
}

func TestBleveContentHashIDs(t *testing.T) {
	cfg := bleveCfg(t)
	cfg.ID = nil
	op := openBleveOp(t, cfg, 0, 1, nil)
	process(t, op, []event{eventOf(1), eventOf(2), eventOf(1)})
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	ids := indexedIDs(t, cfg.Path)
	require.Len(t, ids, 2, "identical records are one document")
	require.Regexp(t, `^[0-9a-f]{32}$`, ids[0])

	// The same records give the same ids in another run.
	cfg2 := bleveCfg(t)
	cfg2.ID = nil
	op = openBleveOp(t, cfg2, 0, 1, nil)
	process(t, op, []event{eventOf(2), eventOf(1)})
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Equal(t, ids, indexedIDs(t, cfg2.Path))
}

func TestBleveBadRecordsFailNamingSinkAndIndex(t *testing.T) {
	cfg := bleveCfg(t)
	op := openBleveOp(t, cfg, 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()

	err := op.Process(event{ID: 1, Score: math.NaN()}, 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `Bleve sink "idx", index `+cfg.Path)
	require.ErrorContains(t, err, "search_test.event")
	require.ErrorContains(t, err, "NaN")

	strs, err := search.NewBleveSink("strings", search.BleveConfig[string]{Path: cfg.Path})
	require.NoError(t, err)
	sop := asSinkOp(t, strs)
	require.NoError(t, sop.Open(context.Background(), opCtx("strings", 0, 1, nil)))
	err = sop.Process("just text", 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `Bleve sink "strings"`)
	require.ErrorContains(t, err, "not a JSON object")
	require.NoError(t, sop.Close())

	empty, err := search.NewBleveSink("empty-ids", search.BleveConfig[event]{Path: cfg.Path, ID: func(event) string { return "" }})
	require.NoError(t, err)
	eop := asSinkOp(t, empty)
	require.NoError(t, eop.Open(context.Background(), opCtx("empty-ids", 0, 1, nil)))
	err = eop.Process(eventOf(1), 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, "empty id")
	require.NoError(t, eop.Close())
}

func TestBleveEpochTooLarge(t *testing.T) {
	cfg := bleveCfg(t)
	cfg.MaxEpochBytes = 2000
	op := openBleveOp(t, cfg, 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()
	var err error
	for i := int64(0); err == nil && i < 1000; i++ {
		err = op.Process(eventOf(i), 0)
	}
	require.ErrorIs(t, err, search.ErrEpochTooLarge)
	require.ErrorContains(t, err, `Bleve sink "idx", index `+cfg.Path)
	require.ErrorContains(t, err, "MaxEpochBytes")
}

func TestBleveIndexErrors(t *testing.T) {
	dir := t.TempDir()

	// A file where the index directory should be.
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	op := newBleveOp(t, search.BleveConfig[event]{Path: file})
	err := op.Open(context.Background(), opCtx("idx", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrIndex)
	require.ErrorContains(t, err, `Bleve sink "idx"`)
	require.ErrorContains(t, err, file)
	require.NoError(t, op.Close())

	// A directory with other things in it.
	other := filepath.Join(dir, "other")
	require.NoError(t, os.MkdirAll(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644))
	op = newBleveOp(t, search.BleveConfig[event]{Path: other})
	err = op.Open(context.Background(), opCtx("idx", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrIndex)
	require.ErrorContains(t, err, "not empty")
	require.NoError(t, op.Close())

	// An index held by another opener (Bleve's lock is per open file, as
	// between processes).
	held := filepath.Join(dir, "held")
	idx, err := bleve.New(held, bleve.NewIndexMapping())
	require.NoError(t, err)
	op = newBleveOp(t, search.BleveConfig[event]{Path: held, LockTimeout: 50 * time.Millisecond})
	err = op.Open(context.Background(), opCtx("idx", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrIndexLocked)
	require.ErrorContains(t, err, held)
	require.NoError(t, op.Close())
	require.NoError(t, idx.Close())

	// Reading an index that does not exist.
	_, err = search.Search(context.Background(), filepath.Join(dir, "missing"), "", 10)
	require.ErrorIs(t, err, search.ErrIndexNotFound)

	// Configuration.
	_, err = search.NewBleveSink("idx", search.BleveConfig[event]{})
	require.ErrorIs(t, err, search.ErrConfig)
	require.ErrorContains(t, err, `Bleve sink "idx": Path is empty`)
	require.ErrorIs(t, search.BleveConfig[event]{Path: "x", LockTimeout: -1}.Validate(), search.ErrConfig)
}

func TestBleveIndexSharedWithReaders(t *testing.T) {
	cfg := bleveCfg(t)
	a := openBleveOp(t, cfg, 0, 2, nil)
	b := openBleveOp(t, cfg, 1, 2, nil)
	ix, err := search.OpenIndex(cfg.Path)
	require.NoError(t, err, "a reader in the sink's process shares its handle")
	process(t, a, events(0, 5))
	process(t, b, events(5, 10))
	snapshot(t, a, 1)
	snapshot(t, b, 1)
	complete(t, a, 1)
	res, err := ix.Search(context.Background(), "*", 100)
	require.NoError(t, err)
	require.Equal(t, uint64(5), res.Total, "subtask 0's epoch, whole")
	complete(t, b, 1)
	res, err = ix.Search(context.Background(), "score:>=1", 100)
	require.NoError(t, err)
	require.Equal(t, uint64(6), res.Total) // ids 4..9
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	// The reader keeps the index open after the sink closed.
	res, err = ix.Search(context.Background(), "", 100)
	require.NoError(t, err)
	require.Equal(t, uint64(10), res.Total)
	require.NotNil(t, ix.Bleve())
	require.NoError(t, ix.Close())
	require.NoError(t, ix.Close(), "Close twice is harmless")
	_, err = ix.Search(context.Background(), "", 1)
	require.ErrorIs(t, err, search.ErrIndex)
}
