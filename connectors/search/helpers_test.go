package search_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

// TestMain checks for leaked goroutines, except Bleve's analysis workers,
// which its package init starts for the life of the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker"))
}

// event is the test record.
type event struct {
	ID    int64   `json:"id"`
	Kind  string  `json:"kind"`
	Score float64 `json:"score"`
}

var kinds = [...]string{"view", "click", "share", "like"}

func eventOf(i int64) event {
	return event{ID: i, Kind: kinds[i%4], Score: float64(i%100) / 4}
}

func events(from, to int64) []event {
	var es []event
	for i := from; i < to; i++ {
		es = append(es, eventOf(i))
	}
	return es
}

func eventID(e event) string { return strconv.FormatInt(e.ID, 10) }

func idRange(from, to int64) []string {
	ids := []string{}
	for i := from; i < to; i++ {
		ids = append(ids, strconv.FormatInt(i, 10))
	}
	slices.Sort(ids)
	return ids
}

// sinkOp is a sink's operator with its checkpoint methods.
type sinkOp[T any] interface {
	dataflow.Operator[T]
	dataflow.Snapshotter
	dataflow.CheckpointListener
}

func asSinkOp[T any](t *testing.T, factory func() dataflow.Operator[T]) sinkOp[T] {
	t.Helper()
	op, ok := factory().(sinkOp[T])
	require.True(t, ok, "the sink operator implements Snapshotter and CheckpointListener")
	return op
}

// opCtx describes subtask sub of par of an operator named name, restored
// from r if not nil.
func opCtx(name string, sub, par int, r *dataflow.RestoredState) *dataflow.OperatorContext {
	return &dataflow.OperatorContext{
		Job: "job", Operator: name, Subtask: sub, Parallelism: par, MaxParallelism: 128,
		KeyGroups: dataflow.KeyGroupRange{Start: sub * 128 / par, End: (sub + 1) * 128 / par},
		Restored:  r,
	}
}

// newBleveOp makes one operator of a Bleve sink named "idx".
func newBleveOp(t *testing.T, cfg search.BleveConfig[event]) sinkOp[event] {
	t.Helper()
	factory, err := search.NewBleveSink("idx", cfg)
	require.NoError(t, err)
	return asSinkOp(t, factory)
}

// openBleveOp makes and opens subtask sub of par.
func openBleveOp(t *testing.T, cfg search.BleveConfig[event], sub, par int, r *dataflow.RestoredState) sinkOp[event] {
	t.Helper()
	op := newBleveOp(t, cfg)
	require.NoError(t, op.Open(context.Background(), opCtx("idx", sub, par, r)))
	return op
}

func process[T any](t *testing.T, op sinkOp[T], vs []T) {
	t.Helper()
	for _, v := range vs {
		require.NoError(t, op.Process(v, dataflow.NoTimestamp))
	}
}

func snapshot[T any](t *testing.T, op sinkOp[T], id int64) []byte {
	t.Helper()
	b, err := op.SnapshotState(context.Background(), id)
	require.NoError(t, err)
	return b
}

func complete[T any](t *testing.T, op sinkOp[T], id int64) {
	t.Helper()
	require.NoError(t, op.NotifyCheckpointComplete(context.Background(), id))
}

// indexedIDs returns the sorted ids of every document of the Bleve index
// at path, failing if an id appears twice.
func indexedIDs(t *testing.T, path string) []string {
	t.Helper()
	res, err := search.Search(context.Background(), path, "", 1_000_000)
	require.NoError(t, err)
	ids := make([]string, len(res.Hits))
	for i, h := range res.Hits {
		ids[i] = h.ID
	}
	slices.Sort(ids)
	require.Len(t, slices.Compact(slices.Clone(ids)), len(ids), "every document id once")
	require.Equal(t, uint64(len(ids)), res.Total)
	return ids
}

func restored(id int64, states ...[]byte) *dataflow.RestoredState {
	return &dataflow.RestoredState{CheckpointID: id, Subtasks: states}
}

func must[V any](v V, err error) V {
	if err != nil {
		panic(fmt.Sprint("unexpected error: ", err))
	}
	return v
}
