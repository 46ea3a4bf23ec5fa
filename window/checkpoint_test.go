package window_test

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

// committed collects what a two-phase test sink commits, once per transaction.
type committed[T any] struct {
	mu  sync.Mutex
	ids map[string]bool
	out []T
}

func (c *committed[T]) values() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.out)
}

type testTxn[T any] struct {
	ID      string
	Records []T
}

var txnRuns atomic.Int64

type testCommitter[T any] struct {
	st       *committed[T]
	run, sub int64
	seq      int
}

func (c *testCommitter[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	c.run, c.sub = txnRuns.Add(1), int64(oc.Subtask)
	return nil
}
func (c *testCommitter[T]) Begin(context.Context) (*testTxn[T], error) {
	c.seq++
	return &testTxn[T]{ID: fmt.Sprintf("%d-%d-%d", c.run, c.sub, c.seq)}, nil
}
func (c *testCommitter[T]) Write(_ context.Context, t *testTxn[T], v T, _ dataflow.Timestamp) error {
	t.Records = append(t.Records, v)
	return nil
}
func (c *testCommitter[T]) Prepare(_ context.Context, t *testTxn[T]) (*testTxn[T], error) {
	return t, nil
}
func (c *testCommitter[T]) Commit(_ context.Context, t *testTxn[T]) error {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if !c.st.ids[t.ID] {
		c.st.ids[t.ID] = true
		c.st.out = append(c.st.out, t.Records...)
	}
	return nil
}
func (c *testCommitter[T]) Abort(context.Context, *testTxn[T]) error { return nil }
func (c *testCommitter[T]) Close() error                             { return nil }

type reading struct {
	Sensor int64
	Seq    int64
}

type sensorWindow = window.Result[int64, window.AvgAcc]

// sumSeq adds up the sequence numbers: an accumulator of two fields.
type sumSeq struct{}

func (sumSeq) CreateAccumulator() window.AvgAcc { return window.AvgAcc{} }
func (sumSeq) Add(a window.AvgAcc, r reading) window.AvgAcc {
	return window.AvgAcc{Sum: a.Sum + float64(r.Seq), Count: a.Count + 1}
}
func (sumSeq) Merge(a, b window.AvgAcc) window.AvgAcc {
	return window.AvgAcc{Sum: a.Sum + b.Sum, Count: a.Count + b.Count}
}
func (sumSeq) Result(a window.AvgAcc) window.AvgAcc { return a }

// slidingJob sums readings per sensor in sliding windows of 300 ms every
// 100 ms with the allowed lateness (50 ms gives windows separate end and
// cleanup timers; 0 keeps runs in front of Badger). Reading seq is at seq
// ms, up to 20 ms out of order, within the watermarks' bound: the results
// do not depend on parallelism.
func slidingJob(cfg dataflow.Config, lateness time.Duration, total int64, rate float64, out *committed[sensorWindow], passed func(seq int64)) *dataflow.Job {
	job := dataflow.NewJob("sliding", cfg)
	src := memory.Generator(job, "readings", memory.GeneratorConfig[reading]{
		Count: total,
		Rate:  rate,
		Generate: func(seq int64) reading {
			if passed != nil {
				passed(seq)
			}
			return reading{Sensor: seq * 7 % 41, Seq: seq}
		},
		Watermarks: dataflow.BoundedOutOfOrderness(20*time.Millisecond, func(r reading) time.Time {
			return time.UnixMilli(r.Seq - r.Seq*13%21)
		}),
	})
	sums := window.Aggregate(dataflow.KeyBy(src, func(r reading) int64 { return r.Sensor }), "sums",
		window.Sliding(300*time.Millisecond, 100*time.Millisecond), sumSeq{}, window.AllowedLateness(lateness))
	dataflow.AddSink(sums, "sink", dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[sensorWindow, *testTxn[sensorWindow]] {
		return &testCommitter[sensorWindow]{st: out}
	}))
	return job
}

func sortWindows(rs []sensorWindow) []sensorWindow {
	slices.SortFunc(rs, func(a, b sensorWindow) int {
		return cmp.Or(cmp.Compare(a.Window.Start, b.Window.Start), cmp.Compare(a.Key, b.Key))
	})
	return rs
}

type backendFor = func(dir string) func(state.Config) (state.Backend, error)

var (
	heapBackend   backendFor = func(string) func(state.Config) (state.Backend, error) { return nil }
	badgerBackend backendFor = func(dir string) func(state.Config) (state.Backend, error) {
		return func(cfg state.Config) (state.Backend, error) {
			return state.NewBadger(cfg, state.BadgerConfig{
				Dir:          filepath.Join(dir, fmt.Sprintf("%s-%d", cfg.OperatorUID, cfg.KeyGroups.Start)),
				CacheEntries: 16,
			})
		}
	}
)

// Sliding windows stopped with a savepoint at parallelism 2 and restored at
// 3 (with the heap and the Badger backend, whose small cache makes windows
// go through the store; with the operator's key cache, one that fills up,
// and none) give what one uninterrupted run gives, each window once.
func TestSlidingWindowsRestoreAtOtherParallelism(t *testing.T) {
	for _, c := range []struct {
		name     string
		backend  backendFor
		keyCache int
	}{
		{"heap", heapBackend, 1 << 16},
		{"heap, key cache of 4", heapBackend, 4},
		{"heap, no key cache", heapBackend, 0},
		{"badger", badgerBackend, 1 << 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer window.SetMaxCachedKeys(c.keyCache)()
			savepointAndRestore(t, c.backend, c.backend, 50*time.Millisecond, nil)
		})
	}
}

// With no allowed lateness the window operator keeps runs in front of
// Badger, and windows per key on the heap. A savepoint of either restores
// into the other, at another parallelism, and gives what one uninterrupted
// run gives: runs move into per-key windows with their timers at Open, and
// per-key windows join the runs' buffer as their keys come. Runs restore at
// another parallelism too, and with a buffer that spills every few keys.
func TestWindowStateMovesBetweenLayouts(t *testing.T) {
	for _, c := range []struct {
		name     string
		from, to backendFor
		buffer   int
		// whether the heap keeps runs, in the first run and in the second
		heapRuns [2]bool
	}{
		{"badger runs to heap per-key windows", badgerBackend, heapBackend, 0, [2]bool{true, false}},
		{"heap per-key windows to badger runs", heapBackend, badgerBackend, 0, [2]bool{false, true}},
		{"badger runs to heap runs", badgerBackend, heapBackend, 0, [2]bool{true, true}},
		{"heap runs to badger runs", heapBackend, badgerBackend, 0, [2]bool{true, true}},
		{"heap runs to heap per-key windows", heapBackend, heapBackend, 0, [2]bool{true, false}},
		{"heap per-key windows to heap runs", heapBackend, heapBackend, 0, [2]bool{false, true}},
		{"heap runs to heap runs", heapBackend, heapBackend, 0, [2]bool{true, true}},
		{"badger runs to badger runs", badgerBackend, badgerBackend, 0, [2]bool{true, true}},
		{"badger runs to badger runs, buffer of 3", badgerBackend, badgerBackend, 3, [2]bool{true, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer window.SetRunBufferKeys(c.buffer)()
			defer window.SetHeapRuns(c.heapRuns[0])()
			savepointAndRestore(t, c.from, c.to, 0, func() { window.SetHeapRuns(c.heapRuns[1]) })
		})
	}
}

// savepointAndRestore runs slidingJob at parallelism 2 on
// backend from, stops it with a savepoint a third of the way, restores it
// at parallelism 3 on backend to, and checks that the two runs committed
// what one uninterrupted run on the heap gives. between, if not nil, is
// called between the two runs.
func savepointAndRestore(t *testing.T, from, to backendFor, lateness time.Duration, between func()) {
	const total = 3000
	ref := &committed[sensorWindow]{ids: map[string]bool{}}
	require.NoError(t, slidingJob(dataflow.Config{}, lateness, total, 0, ref, nil).Run(context.Background()))
	want := sortWindows(ref.values())
	require.GreaterOrEqual(t, len(want), 41*total/100, "every sensor has readings in every window")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ckpts, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	spDir := t.TempDir()
	sp, err := checkpoint.NewLocalStorage(spDir)
	require.NoError(t, err)

	out := &committed[sensorWindow]{ids: map[string]bool{}}
	passed := make(chan struct{})
	var once sync.Once
	jobA := slidingJob(dataflow.Config{Parallelism: 2, StateBackend: from(t.TempDir()),
		Checkpoint: checkpoint.Config{Interval: 10 * time.Millisecond}, CheckpointStorage: ckpts},
		lateness, total, total/2, out, func(seq int64) {
			if seq >= total/3 {
				once.Do(func() { close(passed) })
			}
		})
	runToSavepoint(t, ctx, jobA, passed, sp)
	require.Less(t, len(out.values()), len(want), "stopped before the end")

	if between != nil {
		between()
	}
	restoreFrom, err := checkpoint.OpenLocalStorage(spDir)
	require.NoError(t, err)
	jobB := slidingJob(dataflow.Config{Parallelism: 3, StateBackend: to(t.TempDir()), RestoreFrom: restoreFrom},
		lateness, total, 0, out, nil)
	require.NoError(t, jobB.Run(ctx))
	requireSameWindows(t, want, sortWindows(out.values()))
}

// runToSavepoint runs job until passed is closed, stops it with a
// savepoint into sp, and checks that it ended then, without an error.
func runToSavepoint(t *testing.T, ctx context.Context, job *dataflow.Job, passed <-chan struct{}, sp checkpoint.Storage) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	select {
	case <-passed:
	case err := <-done:
		t.Fatalf("job ended before the savepoint: %v", err)
	}
	_, err := job.StopWithSavepoint(ctx, sp)
	require.NoError(t, err)
	require.NoError(t, <-done)
}

// requireSameWindows compares sorted results, naming the first difference.
func requireSameWindows(t *testing.T, want, got []sensorWindow) {
	t.Helper()
	for i := range min(len(want), len(got)) {
		require.Equal(t, want[i], got[i], "result %d of %d", i, len(want))
	}
	require.Len(t, got, len(want))
}
