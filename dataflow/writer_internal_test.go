package dataflow

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/exchange"
	"github.com/sluicedata/sluice/internal/keygroup"
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
	require.Len(t, m.Batch.Records, 4)
	_, _, ok = g.Poll()
	require.False(t, ok, "the watermark waits for a flush")
	require.Equal(t, 1, fl.Pending())

	o.Collect(5, 50)
	require.NoError(t, fl.Flush(ctx))
	_, m, _ = g.Poll()
	require.Equal(t, []record[int]{{5, 50}}, m.Batch.Records)
	_, m, _ = g.Poll()
	require.Equal(t, exchange.Event{Kind: exchange.Watermark, Value: 20}, m.Event, "only the latest watermark is sent")

	o.EmitWatermark(60)
	require.NoError(t, fl.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput}))
	_, m, _ = g.Poll()
	require.Equal(t, exchange.Watermark, m.Event.Kind, "a held watermark precedes any later event")
	_, m, _ = g.Poll()
	require.Equal(t, exchange.EndOfInput, m.Event.Kind)
}

// A keyed exchange stages records, partitions them a batch at a time by key
// group, and carries each record's key group: the one keygroup.Of gives its
// key's encoding. Staged records count as pending and a flush or an event
// sends them first.
func TestKeyedWriterCarriesKeyGroups(t *testing.T) {
	ctx := context.Background()
	const maxP, n = 128, 2
	testKeyedWriter(t, ctx, maxP, n, func(v int) int64 { return int64(v) * 7919 })
	testKeyedWriter(t, ctx, 100, n, func(v int) int64 { return int64(v) - 500 }) // not a power of two
	testKeyedWriter(t, ctx, maxP, n, func(v int) string { return string(rune('a' + v%26)) })
}

func testKeyedWriter[K comparable](t *testing.T, ctx context.Context, maxP, n int, key func(int) K) {
	t.Helper()
	g := exchange.NewGate[record[int]](n, 64, 4, nil)
	targets := make([]target, n)
	for i := range targets {
		targets[i] = target{g, i}
	}
	hash := func(maxP int) any { return keyGroupsOf(key, maxP) }
	out, fl := typeOf[int]().newWriter(targets, partHash, hash, maxP, 4, &task{ctx: ctx})
	o := out.(Output[int])
	for v := range 3 {
		o.Collect(v, Timestamp(v))
	}
	require.Equal(t, 3, fl.Pending(), "staged records are pending")
	_, _, ok := g.Poll()
	require.False(t, ok, "nothing is sent before a batch is staged")
	for v := 3; v < 10; v++ {
		o.Collect(v, Timestamp(v))
	}
	require.NoError(t, fl.Emit(ctx, exchange.Event{Kind: exchange.Barrier, Value: 1}))
	require.Zero(t, fl.Pending())
	enc := keygroup.EncoderFor[K]()
	seen, barriers := 0, map[int]bool{}
	for {
		ch, m, ok := g.Poll()
		if !ok {
			break
		}
		if m.Event.Kind == exchange.Barrier {
			barriers[ch] = true
			continue
		}
		require.False(t, barriers[ch], "records precede the barrier on channel %d", ch)
		for i, r := range m.Batch.Records {
			kg := keygroup.Of(enc(nil, key(r.v)), maxP)
			require.Equal(t, uint16(kg), m.Batch.KeyGroups[i], "key group of %v", key(r.v))
			require.Equal(t, keygroup.Subtask(kg, n, maxP), ch, "record %d on the channel of its key group", r.v)
			require.Equal(t, Timestamp(r.v), r.ts)
			seen++
		}
		g.Recycle(ch, m.Batch)
	}
	require.Equal(t, 10, seen)
	require.Len(t, barriers, n)
}
