package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

// The exactly-once suite, in the manner of Flink's: a source emits per-key
// increasing sequence numbers; a keyed operator counts per key in keyed state
// and checks the count against the sequence number; a two-phase sink commits
// into a store. Failures are injected at chosen points; the job restarts from
// its latest completed checkpoint; the checker then counts lost, duplicated
// and out-of-order records, and state errors, which must all be zero, and
// checks that the failures really happened.

// seqRecord is what reaches the sink: the key's sequence number and the count
// the keyed operator had for the key when it saw it.
type seqRecord struct {
	Key   int64
	Seq   int64
	Count int64
}

// store is where the test sink commits. Commit is idempotent by transaction id.
type store struct {
	mu        sync.Mutex
	committed map[string]bool
	perKey    map[int64][]seqRecord
	commits   int
}

func newStore() *store {
	return &store{committed: map[string]bool{}, perKey: map[int64][]seqRecord{}}
}

func (s *store) commit(txn *memTxn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.committed[txn.ID] {
		return
	}
	s.committed[txn.ID] = true
	s.commits++
	for _, r := range txn.Records {
		s.perKey[r.Key] = append(s.perKey[r.Key], r)
	}
}

// check counts what exactly-once forbids, for keys 0..nKeys-1 each expected
// to have seqs 0..perKey-1.
type checkResult struct {
	Lost, Duplicated, OutOfOrder, StateErrors int
}

func (s *store) check(nKeys, total int64) checkResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r checkResult
	for k := int64(0); k < nKeys; k++ {
		seen := map[int64]int{}
		last := int64(-1)
		for _, rec := range s.perKey[k] {
			seen[rec.Seq]++
			if rec.Seq <= last {
				r.OutOfOrder++
			}
			last = rec.Seq
			// Seqs of key k are k, k+nKeys, ...: the count must be its index+1.
			if rec.Count != (rec.Seq-k)/nKeys+1 {
				r.StateErrors++
			}
		}
		for seq := k; seq < total; seq += nKeys {
			switch n := seen[seq]; {
			case n == 0:
				r.Lost++
			case n > 1:
				r.Duplicated += n - 1
			}
		}
	}
	return r
}

type memTxn struct {
	ID      string
	Records []seqRecord
}

// faults are the injection points. Each fires once, when armed and its
// condition holds; fired counts what happened.
type faults struct {
	st    *store
	fired atomic.Int32

	processAt     int64 // fail processing at this record count (0: never)
	processed     atomic.Int64
	snapshotAt    int64 // fail the keyed operator's snapshot of this checkpoint (0: never)
	restoreOnce   bool  // fail once in Open when restored
	commitOnce    bool  // fail the first commit after the first completed commit
	processDone   atomic.Bool
	snapshotDone  atomic.Bool
	restoreDone   atomic.Bool
	commitDone    atomic.Bool
	afterManifest bool // storage: the first manifest commit "crashes" after the rename
	manifestDone  atomic.Bool
	prefetch      bool // the keyed operator is a dataflow.Prefetcher: the runtime batches its input
	prefetched    atomic.Int64
}

var errInjected = errors.New("injected failure")

// counter is the keyed operator: a per-key count in keyed state.
type counter struct {
	dataflow.OperatorBase
	f     *faults
	out   dataflow.Output[seqRecord]
	count *state.Value[int64]
}

func (c *counter) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	if oc.Restored != nil && c.f.restoreOnce && c.f.restoreDone.CompareAndSwap(false, true) {
		c.f.fired.Add(1)
		return fmt.Errorf("restore: %w", errInjected)
	}
	c.count, err = state.NewValue[int64](oc.State(), "count")
	return err
}

func (c *counter) Process(e event, ts dataflow.Timestamp) error {
	if n := c.f.processed.Add(1); c.f.processAt > 0 && n >= c.f.processAt && c.f.st.commitCount() > 0 && c.f.processDone.CompareAndSwap(false, true) {
		c.f.fired.Add(1)
		return fmt.Errorf("process: %w", errInjected)
	}
	n, _, err := c.count.Get()
	if err != nil {
		return err
	}
	n++
	if err := c.count.Update(n); err != nil {
		return err
	}
	c.out.Collect(seqRecord{Key: e.Key, Seq: e.Seq, Count: n}, ts)
	return nil
}

// prefetchingCounter is counter as a dataflow.Prefetcher.
type prefetchingCounter struct{ counter }

func (c *prefetchingCounter) Prefetch(es []event) { c.f.prefetched.Add(int64(len(es))) }

// SnapshotState makes the keyed operator a Snapshotter only to fail a snapshot.
func (c *counter) SnapshotState(_ context.Context, id int64) ([]byte, error) {
	if c.f.snapshotAt > 0 && id >= c.f.snapshotAt && c.f.snapshotDone.CompareAndSwap(false, true) {
		c.f.fired.Add(1)
		return nil, fmt.Errorf("snapshot: %w", errInjected)
	}
	return nil, nil
}

func (s *store) commitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// memCommitter is the test's two-phase sink.
type memCommitter struct {
	f   *faults
	sub int
	seq *atomic.Int64
}

func (m *memCommitter) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	m.sub = oc.Subtask
	return nil
}
func (m *memCommitter) Begin(context.Context) (*memTxn, error) {
	return &memTxn{ID: fmt.Sprintf("%d-%d", m.sub, m.seq.Add(1))}, nil
}
func (m *memCommitter) Write(_ context.Context, t *memTxn, v seqRecord, _ dataflow.Timestamp) error {
	t.Records = append(t.Records, v)
	return nil
}
func (m *memCommitter) Prepare(_ context.Context, t *memTxn) (*memTxn, error) { return t, nil }
func (m *memCommitter) Commit(_ context.Context, t *memTxn) error {
	if m.f.commitOnce && m.f.st.commitCount() > 0 && m.f.commitDone.CompareAndSwap(false, true) {
		m.f.fired.Add(1)
		return fmt.Errorf("commit: %w", errInjected)
	}
	m.f.st.commit(t)
	return nil
}
func (m *memCommitter) Abort(context.Context, *memTxn) error { return nil }
func (m *memCommitter) Close() error                         { return nil }

// crashyStorage commits a manifest and then reports a failure, as if the
// process died after the rename and before the coordinator told anyone.
type crashyStorage struct {
	checkpoint.Storage
	f *faults
}

func (s *crashyStorage) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	if err := s.Storage.Commit(ctx, m); err != nil {
		return err
	}
	if s.f.afterManifest && m.ID >= 2 && s.f.manifestDone.CompareAndSwap(false, true) {
		s.f.fired.Add(1)
		return fmt.Errorf("after manifest %d: %w", m.ID, errInjected)
	}
	return nil
}

func runExactlyOnce(t *testing.T, f *faults, par int, total int64, nKeys int64, wantFailures int32) {
	t.Helper()
	st, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	var storage checkpoint.Storage = st
	if f.afterManifest {
		storage = &crashyStorage{Storage: st, f: f}
	}
	restart, err := checkpoint.FixedDelay(5, 0)
	require.NoError(t, err)
	job := dataflow.NewJob("exactly-once", dataflow.Config{
		Parallelism:       par,
		Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
		CheckpointStorage: storage,
		Restart:           restart,
		Logger:            slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	src := memory.Generator(job, "source", memory.GeneratorConfig[event]{
		Count:    total,
		Rate:     float64(total) * 4, // about 250 ms: room for several checkpoints
		Generate: func(seq int64) event { return event{Key: seq % nKeys, Seq: seq} },
		// The processing fault needs a commit before it: hold the input
		// there until one happened, however slow the machine.
		Hold: func(seq int64) bool { return f.processAt > 0 && seq >= f.processAt && f.st.commitCount() == 0 },
	})
	keyed := dataflow.KeyBy(src, func(e event) int64 { return e.Key })
	counted := dataflow.AddKeyedOperator(keyed, "count", func(out dataflow.Output[seqRecord]) dataflow.Operator[event] {
		if f.prefetch {
			return &prefetchingCounter{counter{f: f, out: out}}
		}
		return &counter{f: f, out: out}
	})
	var txnSeq atomic.Int64
	dataflow.AddSink(counted, "sink", dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[seqRecord, *memTxn] {
		return &memCommitter{f: f, seq: &txnSeq}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, job.Run(ctx))

	res := f.st.check(nKeys, total)
	require.Equal(t, checkResult{}, res, "lost, duplicated, out of order, state errors")
	require.Equal(t, wantFailures, f.fired.Load(), "injected failures that fired")
	if f.prefetch {
		require.GreaterOrEqual(t, f.prefetched.Load(), total, "records prefetched")
	}
	require.Equal(t, int64(wantFailures), job.Restarts(), "restarts")
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, ids, "completed checkpoints")
	m, err := st.Latest(ctx)
	require.NoError(t, err)
	require.True(t, m.Final, "the latest checkpoint is the final one")
	require.NoError(t, st.Verify(ctx, m))
}

func TestExactlyOnceUnderFailures(t *testing.T) {
	const total, nKeys = 20000, 50
	cases := []struct {
		name  string
		f     func(*faults)
		fails int32
	}{
		{"no failure", func(*faults) {}, 0},
		{"while processing", func(f *faults) { f.processAt = total / 2 }, 1},
		{"during snapshot", func(f *faults) { f.snapshotAt = 3 }, 1},
		{"during restore", func(f *faults) { f.processAt = total / 3; f.restoreOnce = true }, 2},
		{"during sink commit", func(f *faults) { f.commitOnce = true }, 1},
		{"after manifest before notice", func(f *faults) { f.afterManifest = true }, 1},
	}
	for _, tc := range cases {
		for _, par := range []int{1, 2} {
			// A Prefetcher gets its input in batches, chained (p1) and
			// from the keyed exchange (p2).
			for _, prefetch := range []bool{false, true} {
				name := fmt.Sprintf("%s/p%d", tc.name, par)
				if prefetch {
					name += "/prefetch"
				}
				t.Run(name, func(t *testing.T) {
					f := &faults{st: newStore(), prefetch: prefetch}
					tc.f(f)
					runExactlyOnce(t, f, par, total, nKeys, tc.fails)
				})
			}
		}
	}
}

// tWriter sends log lines to the test's log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
