package search_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

var errInjected = errors.New("injected failure")

// failOnce passes records through and fails once, at or after the record
// numbered at, once the sink has committed something.
type failOnce struct {
	dataflow.OperatorBase
	out       dataflow.Output[event]
	n, at     *atomic.Int64
	fired     *atomic.Bool
	committed func() bool
}

func (f *failOnce) Process(e event, ts dataflow.Timestamp) error {
	if f.n.Add(1) >= f.at.Load() && !f.fired.Load() && f.committed() && f.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("process: %w", errInjected)
	}
	f.out.Collect(e, ts)
	return nil
}

// crashAfterManifest commits a manifest and then fails, as if the process
// died after the checkpoint completed and before any sink heard of it.
type crashAfterManifest struct {
	checkpoint.Storage
	fired atomic.Bool
}

func (s *crashAfterManifest) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	if err := s.Storage.Commit(ctx, m); err != nil {
		return err
	}
	if m.ID >= 3 && s.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("after manifest %d: %w", m.ID, errInjected)
	}
	return nil
}

// jobFaults is a fault-injection case of the exactly-once job tests.
type jobFaults struct {
	name          string
	failProcess   bool
	crashManifest bool
}

var faultCases = []jobFaults{
	{name: "no failure"},
	{name: "while processing", failProcess: true},
	{name: "after manifest before notice", crashManifest: true},
}

// runFaultyJob runs a checkpointed job of total events at parallelism 2
// into the sink that addSink adds, failing it as tc says; committed tells
// whether the sink has committed anything. It checks that the faults were
// injected and the job restarted once per fault.
func runFaultyJob(t *testing.T, tc jobFaults, total int64, committed func() bool, addSink func(dataflow.Stream[event])) {
	t.Helper()
	local, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	var storage checkpoint.Storage = local
	crashy := &crashAfterManifest{Storage: local}
	if tc.crashManifest {
		storage = crashy
	}
	restart, err := checkpoint.FixedDelay(3, 0)
	require.NoError(t, err)
	job := dataflow.NewJob("eo", dataflow.Config{
		Parallelism:       2,
		Checkpoint:        checkpoint.Config{Interval: 20 * time.Millisecond},
		CheckpointStorage: storage,
		Restart:           restart,
	})
	src := memory.Generator(job, "source", memory.GeneratorConfig[event]{
		Count:    total,
		Rate:     float64(total) * 3, // about 330 ms: room for several checkpoints
		Generate: eventOf,
	})
	var n, at atomic.Int64
	var fired atomic.Bool
	at.Store(total / 2)
	if !tc.failProcess {
		at.Store(total * 10)
	}
	passed := dataflow.AddOperator(src, "fail", func(out dataflow.Output[event]) dataflow.Operator[event] {
		return &failOnce{out: out, n: &n, at: &at, fired: &fired, committed: committed}
	})
	addSink(passed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, job.Run(ctx))

	require.Equal(t, tc.failProcess, fired.Load(), "the processing fault was injected")
	require.Equal(t, tc.crashManifest, crashy.fired.Load(), "the manifest fault was injected")
	restarts := int64(0)
	if tc.failProcess || tc.crashManifest {
		restarts = 1
	}
	require.Equal(t, restarts, job.Restarts())
}

// TestBleveExactlyOnceJobUnderFailures runs a checkpointed job into a Bleve
// index and fails it: every event is in the index once, with its content.
func TestBleveExactlyOnceJobUnderFailures(t *testing.T) {
	const total = 4_000
	for _, tc := range faultCases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index")
			ix, err := search.OpenIndex(path)
			require.ErrorIs(t, err, search.ErrIndexNotFound)
			require.Nil(t, ix)
			committed := func() bool {
				res, err := search.Search(context.Background(), path, "", 0)
				return err == nil && res.Total > 0
			}
			runFaultyJob(t, tc, total, committed, func(s dataflow.Stream[event]) {
				search.BleveSink(s, "index", search.BleveConfig[event]{Path: path, ID: eventID})
			})
			require.Equal(t, idRange(0, total), indexedIDs(t, path))
			res, err := search.Search(context.Background(), path, "kind:share", 0)
			require.NoError(t, err)
			require.Equal(t, uint64(total/4), res.Total)
			res, err = search.Search(context.Background(), path, "id:3217", 1)
			require.NoError(t, err)
			require.Equal(t, map[string]any{"id": 3217.0, "kind": "click", "score": 4.25}, res.Hits[0].Fields)
		})
	}
}

// TestBulkExactlyOnceJobUnderFailures runs a checkpointed job into the
// in-process OpenSearch and fails it: every event is stored once, with its
// content, and what was sent again was answered as version conflicts or
// replaced older versions.
func TestBulkExactlyOnceJobUnderFailures(t *testing.T) {
	const total = 10_000
	for _, tc := range faultCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeOpenSearch(t)
			committed := func() bool { return len(f.ids("events")) > 0 }
			runFaultyJob(t, tc, total, committed, func(s dataflow.Stream[event]) {
				search.BulkSink(s, "es", search.BulkConfig[event]{URLs: []string{f.URL()}, Index: "events", ID: eventID, MaxBatchBytes: 64 << 10, Logger: quiet})
			})
			require.Equal(t, idRange(0, total), f.ids("events"))
			for _, id := range []int64{0, 4321, total - 1} {
				d, ok := f.doc("events", fmt.Sprint(id))
				require.True(t, ok)
				e := eventOf(id)
				require.Equal(t, map[string]any{"id": float64(e.ID), "kind": e.Kind, "score": e.Score}, d.Source)
			}
			requests, _ := f.stats()
			require.Greater(t, requests, 2, "several epochs committed")
		})
	}
}
