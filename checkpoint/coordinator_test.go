package checkpoint_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
)

// ackingRuntime acknowledges every trigger at once, from another goroutine,
// and counts completions.
type ackingRuntime struct {
	coord     atomic.Pointer[checkpoint.Coordinator]
	completed chan int64
	wg        sync.WaitGroup
}

func (r *ackingRuntime) Trigger(o *checkpoint.Options, tasks []int) {
	c := r.coord.Load()
	for _, t := range tasks {
		r.wg.Go(func() { c.Ack(o.ID, t, nil) })
	}
}
func (r *ackingRuntime) Complete(o *checkpoint.Options) { r.completed <- o.ID }
func (r *ackingRuntime) Abort(int64)                    {}

// A checkpoint whose completion takes longer than the interval leaves the
// next trigger already due: it must fire at once, not never.
func TestCoordinatorTriggersWhenTheNextCheckpointIsAlreadyDue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	// Every reading of this clock is a minute after the last: the next
	// trigger is always in the past when the loop computes it.
	var now atomic.Int64
	clock := func() time.Time { return time.Unix(0, now.Add(int64(time.Minute))) }
	cfg := checkpoint.DefaultConfig()
	cfg.Interval = time.Second
	rt := &ackingRuntime{completed: make(chan int64, 100)}
	c, err := checkpoint.NewCoordinator(ctx, checkpoint.CoordinatorConfig{Job: "due", MaxParallelism: 128, Config: cfg,
		Storage: st, Tasks: 1, Sources: []int{0}, Clock: clock}, rt)
	require.NoError(t, err)
	runUntilCompleted(ctx, t, c, rt, 1, 5)
	require.GreaterOrEqual(t, c.Stats().Completed, int64(5))
}

// runUntilCompleted runs c until checkpoints first to last completed, in
// order, then stops it.
func runUntilCompleted(ctx context.Context, t *testing.T, c *checkpoint.Coordinator, rt *ackingRuntime, first, last int64) {
	t.Helper()
	rt.coord.Store(c)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	for want := first; want <= last; want++ {
		select {
		case id := <-rt.completed:
			require.Equal(t, want, id)
		case <-ctx.Done():
			t.Fatalf("checkpoint %d never completed: periodic checkpoints stalled (stats %+v)", want, c.Stats())
		}
	}
	stop()
	// Stopping may cancel a manifest being written: the run then ends with
	// that cancellation, which is not a failure of the test.
	if err := <-done; err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	rt.wg.Wait()
}

// Ids start at FirstID when it is past the ones already used, and NextID
// tells the next run where to go on.
func TestCoordinatorFirstIDAndNextID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	cfg := checkpoint.DefaultConfig()
	cfg.Interval = time.Millisecond
	rt := &ackingRuntime{completed: make(chan int64, 100)}
	c, err := checkpoint.NewCoordinator(ctx, checkpoint.CoordinatorConfig{Job: "ids", MaxParallelism: 128, Config: cfg,
		Storage: st, Tasks: 1, Sources: []int{0}, FirstID: 7}, rt)
	require.NoError(t, err)
	require.Equal(t, int64(7), c.NextID())
	runUntilCompleted(ctx, t, c, rt, 7, 9)
	require.Greater(t, c.NextID(), int64(9))

	// A FirstID below the ids in storage does not take them again.
	c2, err := checkpoint.NewCoordinator(ctx, checkpoint.CoordinatorConfig{Job: "ids", MaxParallelism: 128, Config: cfg,
		Storage: st, Tasks: 1, Sources: []int{0}, FirstID: 2}, rt)
	require.NoError(t, err)
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, ids[len(ids)-1]+1, c2.NextID())
}
