package netexchange

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/exchange"
)

func TestMsgpackRoundTrip(t *testing.T) {
	c := Msgpack[rec]()
	recs := []rec{{A: 1, B: -1, S: "a"}, {A: 1 << 40, B: 0, S: ""}, {A: -7, S: "ünï"}}
	for _, kgs := range [][]uint16{nil, {0, 65535, 7}} {
		buf, err := c.AppendBatch([]byte("hdr"), recs, kgs)
		require.NoError(t, err)
		require.Equal(t, "hdr", string(buf[:3]), "AppendBatch appends")
		// A recycled batch: key groups of an earlier keyed batch, zeroed records.
		b := &exchange.Batch[rec]{Records: make([]rec, 0, 8), KeyGroups: make([]uint16, 0, 8)}
		require.NoError(t, c.DecodeBatch(buf[3:], b))
		require.Equal(t, recs, b.Records)
		require.Equal(t, kgs, b.KeyGroups, "nil stays nil: the consumer tells keyed batches by it")
	}
	empty, err := c.AppendBatch(nil, nil, nil)
	require.NoError(t, err)
	b := &exchange.Batch[rec]{}
	require.NoError(t, c.DecodeBatch(empty, b))
	require.Zero(t, b.Len())
}

// A record type with its own msgpack methods is encoded by them.
func TestMsgpackCustomMethods(t *testing.T) {
	c := Msgpack[crec]()
	recs := []crec{{A: 1, B: -1, S: "a"}, {A: 1 << 40, S: "ünï"}}
	buf, err := c.AppendBatch(nil, recs, nil)
	require.NoError(t, err)
	// No key groups, an array of 2, then 1, -1, "a" in compact form: the
	// fields as EncodeMsgpack writes them, without field names.
	require.Equal(t, []byte{0, 0x92, 0x01, 0xff, 0xa1, 'a'}, buf[:6])
	b := &exchange.Batch[crec]{}
	require.NoError(t, c.DecodeBatch(buf, b))
	require.Equal(t, recs, b.Records)
	b.Records = b.Records[:0]
	require.ErrorContains(t, c.DecodeBatch(buf[:len(buf)-2], b), "decode record 1 of 2")
}

// Encoding into a reused buffer and decoding into a recycled batch allocate
// nothing per record: the records here hold no strings, the one thing a
// decoder must allocate.
func TestMsgpackReusesBuffers(t *testing.T) {
	type ints struct{ A, B int64 }
	c := Msgpack[ints]()
	recs := make([]ints, 256)
	kgs := make([]uint16, 256)
	for i := range recs {
		recs[i] = ints{int64(i), int64(i) << 33}
		kgs[i] = uint16(i)
	}
	buf, err := c.AppendBatch(nil, recs, kgs)
	require.NoError(t, err)
	b := &exchange.Batch[ints]{Records: make([]ints, 0, 256), KeyGroups: make([]uint16, 0, 256)}
	allocs := testing.AllocsPerRun(50, func() {
		buf, _ = c.AppendBatch(buf[:0], recs, kgs)
		b.Records, b.KeyGroups = b.Records[:0], b.KeyGroups[:0]
		_ = c.DecodeBatch(buf, b)
	})
	require.Equal(t, recs, b.Records)
	require.Less(t, allocs, 5.0, "a few per batch at most, none per record")
}

// DecodeBatch fails on any input it did not produce, never panics, and
// never allocates beyond what the input could hold.
func FuzzDecodeBatch(f *testing.F) {
	c := Msgpack[rec]()
	good, _ := c.AppendBatch(nil, []rec{{A: 1, S: "x"}, {B: 2}}, []uint16{3, 4})
	f.Add(good)
	f.Add([]byte{0, 0x90})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0, 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &exchange.Batch[rec]{}
		if err := c.DecodeBatch(data, b); err != nil {
			return
		}
		if b.KeyGroups != nil {
			require.Len(t, b.KeyGroups, b.Len())
		}
		require.LessOrEqual(t, b.Len(), len(data))
	})
}

// A receiver fails on any message it cannot take and never panics, whatever
// comes on its subject.
func FuzzReceiverMessage(f *testing.F) {
	c := Msgpack[rec]()
	good := appendHeader(nil, frameBatch, 1)
	good, _ = c.AppendBatch(good, []rec{{A: 1, S: "x"}}, []uint16{9})
	f.Add(good)
	f.Add(appendEvent(nil, 1, exchange.Event{Kind: exchange.Watermark, Value: 5}))
	f.Add(appendHeader(nil, frameSync, 3))
	f.Add([]byte{frameEvent})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DefaultConfig[rec]()
		cfg.Codec = c
		r := &Receiver[rec]{subject: "fuzz", gate: exchange.NewGate[rec](1, 1, 4, nil), cfg: cfg, next: 1,
			dropGrant: func(uint64, bool) bool { return true }}
		end, err := r.deliver(context.Background(), data)
		if err != nil {
			require.False(t, end)
			require.Zero(t, r.gate.Queued(0), "nothing reaches the gate from a message that failed")
			return
		}
		if data[0] != frameSync {
			require.Equal(t, 1, r.gate.Queued(0))
			require.EqualValues(t, 2, r.next)
		}
	})
}
