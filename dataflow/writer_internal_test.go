package dataflow

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/exchange"
)

// A watermark is held by the writer until its next flush, so it never splits a
// batch, and it always follows the records written before it.
func TestWriterHoldsWatermarkUntilFlush(t *testing.T) {
	ctx := context.Background()
	g := exchange.NewGate[record[int]](1, 16, 4, nil)
	out, fl := typeOf[int]().newWriter([]target{{g, 0}}, partForward, nil, 128, 4, &task{ctx: ctx})
	o := out.(Output[int])
	o.Collect(1, 10)
	o.EmitWatermark(10)
	o.Collect(2, 20)
	o.EmitWatermark(20)
	o.Collect(3, 30)
	o.Collect(4, 40) // fills the batch of 4: sent without any watermark in between
	_, m, ok := g.Poll()
	require.True(t, ok)
	require.Len(t, m.Records, 4)
	_, _, ok = g.Poll()
	require.False(t, ok, "the watermark waits for a flush")
	require.Equal(t, 1, fl.Pending())

	o.Collect(5, 50)
	require.NoError(t, fl.Flush(ctx))
	_, m, _ = g.Poll()
	require.Equal(t, []record[int]{{5, 50}}, m.Records)
	_, m, _ = g.Poll()
	require.Equal(t, exchange.Event{Kind: exchange.Watermark, Value: 20}, m.Event, "only the latest watermark is sent")

	o.EmitWatermark(60)
	require.NoError(t, fl.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput}))
	_, m, _ = g.Poll()
	require.Equal(t, exchange.Watermark, m.Event.Kind, "a held watermark precedes any later event")
	_, m, _ = g.Poll()
	require.Equal(t, exchange.EndOfInput, m.Event.Kind)
}
