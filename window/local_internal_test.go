package window

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

type sent struct {
	p  partial[int, int64]
	ts dataflow.Timestamp
}

type sentOut struct{ got []sent }

func (o *sentOut) Collect(p partial[int, int64], ts dataflow.Timestamp) {
	o.got = append(o.got, sent{p, ts})
}
func (o *sentOut) EmitWatermark(dataflow.Timestamp) {}
func (o *sentOut) MarkIdle()                        {}

func (o *sentOut) take() []sent { g := o.got; o.got = nil; return g }

const ms = dataflow.Timestamp(time.Millisecond)

// The local operator folds the records of a key and pane, sends a pane's
// partials before the watermark reaches the first window holding it, at a
// checkpoint and at the end, passes late records on alone at once, and
// steps aside when keys do not repeat.
func TestLocalAggregation(t *testing.T) {
	out := &sentOut{}
	// Sliding windows of 30 ms every 10 ms: panes of 10 ms.
	o := newLocalAgg(operators.Count[int](), func(v int) int { return v % 3 }, 10*ms, 0, out)
	for i := range 9 {
		require.NoError(t, o.Process(i, dataflow.Timestamp(i)*ms)) // pane [0, 10 ms)
	}
	require.NoError(t, o.ProcessWatermark(8*ms))
	require.Empty(t, out.take(), "the first window holding the pane ends at 10 ms")
	require.NoError(t, o.Process(4, 12*ms)) // key 1 moves to pane [10, 20 ms): its partial goes
	require.Equal(t, []sent{{partial[int, int64]{Key: 1, Acc: 3, N: 3}, 7 * ms}}, out.take())
	require.NoError(t, o.ProcessWatermark(10*ms-1))
	require.ElementsMatch(t, []sent{
		{partial[int, int64]{Key: 0, Acc: 3, N: 3}, 6 * ms},
		{partial[int, int64]{Key: 2, Acc: 3, N: 3}, 8 * ms},
		{partial[int, int64]{Key: 1, Acc: 1, N: 1}, 12 * ms},
	}, out.take(), "at the window's MaxTimestamp everything goes")

	require.NoError(t, o.Process(5, 3*ms)) // its pane is due: late here
	require.Equal(t, []sent{{partial[int, int64]{Key: 2, Acc: 1, N: 1}, 3 * ms}}, out.take(), "a late record goes at once")
	require.NoError(t, o.Process(5, 15*ms))
	require.NoError(t, o.Process(2, 16*ms))
	_, err := o.SnapshotState(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, []sent{{partial[int, int64]{Key: 2, Acc: 2, N: 2}, 16 * ms}}, out.take(), "a checkpoint sends everything")
	require.NoError(t, o.Process(7, 17*ms))
	require.NoError(t, o.Finish(context.Background()))
	require.Equal(t, []sent{{partial[int, int64]{Key: 1, Acc: 1, N: 1}, 17 * ms}}, out.take(), "so does the end")
	require.Zero(t, o.bypass)

	// Keys that never repeat fill the operator: it sends them and passes
	// the next records on one by one.
	o = newLocalAgg(operators.Count[int](), func(v int) int { return v }, 10*ms, 0, out)
	for i := range localMaxKeys + 1 {
		require.NoError(t, o.Process(i, 100*ms))
	}
	require.Len(t, out.take(), localMaxKeys+1)
	require.Equal(t, int64(localBypass), o.bypass)
	require.NoError(t, o.Process(1, 100*ms))
	require.NoError(t, o.Process(1, 100*ms))
	require.Len(t, out.take(), 2, "passed on one by one")

	// Chained: there is nothing to save, every record goes on alone.
	o = newLocalAgg(operators.Count[int](), func(v int) int { return 0 }, 10*ms, 0, out)
	o.chained = true
	require.NoError(t, o.Process(1, ms))
	require.NoError(t, o.Process(1, ms))
	require.Len(t, out.take(), 2)
}

// The window operator counts a late partial as the records it stands for.
func TestMergeAggCountsRecords(t *testing.T) {
	m := mergeAgg[int, int, int64, int64]{agg: operators.Count[int]()}
	require.Equal(t, int64(7), m.Add(4, partial[int, int64]{Key: 1, Acc: 3, N: 3}))
	o := newFastAgg(config{trigger: EventTimeTrigger()}, Tumbling(time.Second), m, partialKey[int, int64], nil)
	require.NotNil(t, o)
	require.Equal(t, int64(5), o.(*fastAgg[int, partial[int, int64], int64, int64]).weight(partial[int, int64]{N: 5}))
}
