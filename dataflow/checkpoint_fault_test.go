package dataflow_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/faultfs"
	"github.com/sluicedata/sluice/dataflow"
)

// Bad checkpoint storage at job level: a disk that fills up while a
// checkpoint is written, a manifest that cannot be written, a directory that
// is not writable. The checkpoint fails with an error naming the file, the
// job fails (or restarts, or goes on) as its configuration says, and the
// previous completed checkpoint stays intact: a job restored from it gives
// exactly-once results.

// gatedSource emits event{Key: seq % keys, Seq: seq} for seq in [0, total)
// on one subtask, and holds back at seq hold until gate is closed, so that a
// fault injected into a checkpoint comes while input remains, at any machine
// speed. Its position is its checkpointed state.
type gatedSource struct {
	total, keys, hold int64
	gate              <-chan struct{}
	pos               int64
	restored          *atomic.Int64 // the position restored from, if any
}

func (s *gatedSource) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	if oc.Parallelism != 1 {
		return fmt.Errorf("gatedSource runs at parallelism 1, not %d", oc.Parallelism)
	}
	if r := oc.Restored; r != nil && len(r.Subtasks) == 1 && r.Subtasks[0] != nil {
		s.pos = int64(binary.BigEndian.Uint64(r.Subtasks[0]))
		s.restored.Store(s.pos)
	}
	return nil
}

func (s *gatedSource) Poll(ctx context.Context, out dataflow.Output[event]) (dataflow.SourceStatus, error) {
	if s.pos >= s.total {
		return dataflow.EndOfInput, nil
	}
	if s.pos >= s.hold {
		select {
		case <-s.gate:
			s.hold = s.total
		default:
			// Wait a little, as a source with no data does.
			t := time.NewTimer(time.Millisecond)
			defer t.Stop()
			select {
			case <-s.gate:
				s.hold = s.total
			case <-t.C:
				return dataflow.NothingAvailable, nil
			case <-ctx.Done():
				return dataflow.NothingAvailable, ctx.Err()
			}
		}
	}
	for n := 0; n < 64 && s.pos < min(s.total, s.hold); n++ {
		out.Collect(event{Key: s.pos % s.keys, Seq: s.pos}, dataflow.NoTimestamp)
		s.pos++
	}
	return dataflow.MoreAvailable, nil
}

func (s *gatedSource) SnapshotState(context.Context, int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(s.pos)), nil
}

func (s *gatedSource) Close() error { return nil }

// faultingStorage injects fault into fs once checkpoint after is committed,
// and closes failed when a checkpoint is discarded (the coordinator gave it
// up).
type faultingStorage struct {
	checkpoint.Storage
	fs        *faultfs.FS
	after     int64
	fault     faultfs.Fault
	injected  atomic.Bool
	failed    chan struct{}
	mu        sync.Mutex
	discarded []int64
}

func (s *faultingStorage) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	err := s.Storage.Commit(ctx, m)
	if err == nil && m.ID >= s.after && s.injected.CompareAndSwap(false, true) {
		s.fs.Inject(s.fault)
	}
	return err
}

func (s *faultingStorage) Discard(ctx context.Context, id int64) error {
	s.mu.Lock()
	if len(s.discarded) == 0 {
		close(s.failed)
	}
	s.discarded = append(s.discarded, id)
	s.mu.Unlock()
	return s.Storage.Discard(ctx, id)
}

func (s *faultingStorage) failedIDs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.discarded...)
}

// faultJob builds the exactly-once pipeline of exactlyonce_test.go over a
// gated source: source -> key by -> count in keyed state -> two-phase sink
// committing into st. The jobs of a test share txnSeq, so that transaction
// ids are unique across them, as the store's idempotence requires.
// It returns the job and the source position it restored from (-1: none).
func faultJob(t *testing.T, st *store, txnSeq *atomic.Int64, cfg dataflow.Config, total, keys, hold int64, gate <-chan struct{}) (*dataflow.Job, *atomic.Int64) {
	cfg.Parallelism = 2
	cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	job := dataflow.NewJob("disk-full", cfg)
	restored := new(atomic.Int64)
	restored.Store(-1)
	src := dataflow.AddSource(job, "source", func() dataflow.Source[event] {
		return &gatedSource{total: total, keys: keys, hold: hold, gate: gate, restored: restored}
	}, dataflow.Parallelism(1))
	f := &faults{st: st}
	counted := dataflow.AddKeyedOperator(dataflow.KeyBy(src, func(e event) int64 { return e.Key }), "count",
		func(out dataflow.Output[seqRecord]) dataflow.Operator[event] { return &counter{f: f, out: out} })
	dataflow.AddSink(counted, "sink", dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[seqRecord, *memTxn] {
		return &memCommitter{f: f, seq: txnSeq}
	}))
	return job, restored
}

func TestCheckpointDiskFull(t *testing.T) {
	const total, keys, hold = 6000, 40, 3000
	where := []struct {
		name  string
		fault faultfs.Fault
		// file is what the error must name.
		file string
	}{
		// The disk fills up halfway through a subtask's keyed state file.
		{"keyed state file", faultfs.Fault{Op: faultfs.OpWrite, Path: ".keyed", N: 1, Err: syscall.ENOSPC, Torn: true}, ".keyed"},
		// The disk fills up while the manifest is written.
		{"manifest", faultfs.Fault{Op: faultfs.OpWrite, Path: "manifests" + string(filepath.Separator) + ".chk-", N: 1, Err: syscall.ENOSPC}, ".json.tmp"},
	}
	outcomes := []struct {
		name      string
		tolerable int
		restart   bool
	}{
		{"job fails", 0, false},
		{"job restarts", 0, true},
		{"tolerated", 1, false},
	}
	for _, w := range where {
		for _, o := range outcomes {
			t.Run(w.name+"/"+o.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				dir := t.TempDir()
				ffs := faultfs.New(checkpoint.OSFS{})
				local, err := checkpoint.NewLocalStorage(dir, checkpoint.WithFS(ffs))
				require.NoError(t, err)
				storage := &faultingStorage{Storage: local, fs: ffs, after: 1, fault: w.fault, failed: make(chan struct{})}
				cfg := dataflow.Config{
					Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond, TolerableFailures: o.tolerable},
					CheckpointStorage: storage,
				}
				if o.restart {
					cfg.Restart, err = checkpoint.FixedDelay(3, 0)
					require.NoError(t, err)
				}
				st := newStore()
				var txnSeq atomic.Int64
				// The source holds back halfway until a checkpoint failed.
				job, restoredAt := faultJob(t, st, &txnSeq, cfg, total, keys, hold, storage.failed)
				err = job.Run(ctx)
				failed := storage.failedIDs()
				require.NotEmpty(t, failed, "a checkpoint failed")
				bad := failed[0]
				require.Greater(t, bad, int64(1), "checkpoint 1 completed before the fault")

				// The previous completed checkpoint is the latest, intact.
				plain, err2 := checkpoint.NewLocalStorage(dir)
				require.NoError(t, err2)
				// No id is used twice, not even by a restarted run.
				_, lerr := plain.Load(ctx, bad)
				require.ErrorIs(t, lerr, checkpoint.ErrNoCheckpoint, "the failed checkpoint has no manifest")
				tmp, _ := filepath.Glob(filepath.Join(dir, "manifests", ".chk-*"))
				require.Empty(t, tmp, "no temporary manifest is left")

				if o.tolerable == 0 && !o.restart {
					// The job fails with the disk's error, naming the file.
					require.Error(t, err)
					require.ErrorIs(t, err, syscall.ENOSPC)
					require.ErrorContains(t, err, fmt.Sprintf("checkpoint %d", bad))
					require.ErrorContains(t, err, dir)
					require.ErrorContains(t, err, w.file)
					require.ErrorContains(t, err, "0 tolerated")
					m, lerr := plain.Latest(ctx)
					require.NoError(t, lerr)
					require.Equal(t, bad-1, m.ID, "the checkpoint before the failed one is the latest")
					require.False(t, m.Final)
					require.NoError(t, plain.Verify(ctx, m))

					// A new job restores from it and finishes: every record
					// exactly once, over both runs.
					gate := make(chan struct{})
					close(gate)
					rerun, from := faultJob(t, st, &txnSeq, dataflow.Config{
						Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
						CheckpointStorage: plain,
						RestoreFrom:       plain,
					}, total, keys, total, gate)
					require.NoError(t, rerun.Run(ctx))
					require.Positive(t, from.Load(), "the new job restored the source's position")
				} else {
					// The job restarted from the latest completed checkpoint,
					// or went on: either way it finished.
					require.NoError(t, err)
					if o.restart {
						require.Equal(t, int64(1), job.Restarts(), "restarts")
						require.Positive(t, restoredAt.Load(), "the restart restored the source's position")
					} else {
						require.Zero(t, job.Restarts(), "restarts")
						require.Equal(t, int64(-1), restoredAt.Load(), "nothing was restored")
					}
					require.Len(t, failed, 1, "one checkpoint failed")
				}
				require.Equal(t, checkResult{}, st.check(keys, total), "lost, duplicated, out of order, state errors")
				m, err := plain.Latest(ctx)
				require.NoError(t, err)
				require.True(t, m.Final)
				require.NoError(t, plain.Verify(ctx, m))
			})
		}
	}
}

// A checkpoint directory that is not writable fails the job at its start,
// before any record is processed, naming the directory. Where the directory's
// mode does not stop this process (it runs as root), the file system refuses
// with EACCES as the mode would.
func TestCheckpointDirectoryNotWritable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	ffs := faultfs.New(checkpoint.OSFS{})
	storage, err := checkpoint.NewLocalStorage(dir, checkpoint.WithFS(ffs))
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if f, werr := os.Create(filepath.Join(dir, "probe")); werr == nil {
		f.Close()
		require.NoError(t, os.Remove(filepath.Join(dir, "probe")))
		t.Log("the directory's mode does not stop this process (root): EACCES is injected")
		ffs.Inject(faultfs.Fault{Op: faultfs.OpCreate, Path: dir + string(filepath.Separator), Err: syscall.EACCES})
	}

	st := newStore()
	open := make(chan struct{})
	close(open)
	restart, err := checkpoint.FixedDelay(1, 0)
	require.NoError(t, err)
	var txnSeq atomic.Int64
	job, _ := faultJob(t, st, &txnSeq, dataflow.Config{
		Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
		CheckpointStorage: storage,
		Restart:           restart,
	}, 100, 10, 100, open)
	err = job.Run(ctx)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, "storage directory "+dir+" is not writable")
	require.ErrorContains(t, err, `job "disk-full" cannot take checkpoints`)
	require.Zero(t, st.commitCount(), "nothing was committed")
	var oe *dataflow.OperatorError
	require.False(t, errors.As(err, &oe), "no operator ran: %v", err)
}
