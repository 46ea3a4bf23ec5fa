package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

var errInjected = errors.New("injected failure")

// failOnce passes records through and fails once, at the record numbered at,
// after the sink committed something.
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

// TestExactlyOnceJobUnderFailures runs a checkpointed job into the sink and
// fails it: every event must be in the table once (the primary key on id
// would also fail a duplicate insert).
func TestExactlyOnceJobUnderFailures(t *testing.T) {
	const total = 20_000
	for _, tc := range []struct {
		name          string
		failProcess   bool
		crashManifest bool
		key           bool
	}{
		{name: "no failure"},
		{name: "while processing", failProcess: true},
		{name: "after manifest before notice", crashManifest: true},
		{name: "upsert while processing", failProcess: true, key: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, conn := testDB(t)
			exec(t, conn, eventsTable)
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
				Checkpoint:        checkpoint.Config{Interval: 10 * time.Millisecond},
				CheckpointStorage: storage,
				Restart:           restart,
			})
			src := memory.Generator(job, "source", memory.GeneratorConfig[event]{
				Count:    total,
				Rate:     total * 4, // about 250 ms: room for several checkpoints
				Generate: func(seq int64) event { return eventsOf(int(seq), 1)[0] },
			})
			var n, at atomic.Int64
			var fired atomic.Bool
			at.Store(total / 2)
			if !tc.failProcess {
				at.Store(total * 10)
			}
			var mu sync.Mutex // subtasks share conn
			committed := func() bool {
				mu.Lock()
				defer mu.Unlock()
				var n int64
				err := conn.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n)
				return err == nil && n > 0
			}
			passed := dataflow.AddOperator(src, "fail", func(out dataflow.Output[event]) dataflow.Operator[event] {
				return &failOnce{out: out, n: &n, at: &at, fired: &fired, committed: committed}
			})
			cfg := Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}
			if tc.key {
				cfg.Key = []string{"id"}
			}
			Sink(passed, "pg", cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			require.NoError(t, job.Run(ctx))

			require.Equal(t, tc.failProcess, fired.Load())
			require.Equal(t, tc.crashManifest, crashy.fired.Load())
			restarts := int64(0)
			if tc.failProcess || tc.crashManifest {
				restarts = 1
			}
			require.Equal(t, restarts, job.Restarts())
			require.Equal(t, int64(total), queryInt(t, conn, "SELECT count(*) FROM events"))
			require.Equal(t, int64(total), queryInt(t, conn, "SELECT count(DISTINCT id) FROM events"))
			require.Equal(t, int64(total*(total-1)/2), queryInt(t, conn, "SELECT sum(id) FROM events"))
			require.Greater(t, queryInt(t, conn, "SELECT count(DISTINCT checkpoint_id) FROM sluice_sink_commits"), int64(1), "several epochs committed")
		})
	}
}
