package netexchange

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/exchange"
)

var benchRun atomic.Int64 // a fresh subject for every run of a benchmark function

// BenchmarkNATSExchange moves small records (two int64s and a 9-byte
// string) from a Writer through a Sender, the embedded NATS server and a
// Receiver into a gate and its consumer, on two connections as between two
// nodes. In the same run it publishes the same encoded batches with plain
// nats.go on the same server and subscribes to them (no decoding, no
// credit), and reports the exchange's rate over that as x-raw.
//
// codec=reflect is the Msgpack codec on a plain struct; codec=custom the
// same record with EncodeMsgpack/DecodeMsgpack methods of its own.
func BenchmarkNATSExchange(b *testing.B) {
	url := startServer(b)
	for _, batch := range []int{256, 1024} {
		recs := make([]rec, batch)
		crecs := make([]crec, batch)
		for i := range recs {
			recs[i] = rec{A: int64(i), B: int64(i) * 1e9, S: fmt.Sprintf("user-%04d", i%10000)}
			crecs[i] = crec(recs[i])
		}
		b.Run(fmt.Sprintf("codec=reflect/batch=%d", batch), func(b *testing.B) { benchExchange(b, url, recs) })
		b.Run(fmt.Sprintf("codec=custom/batch=%d", batch), func(b *testing.B) { benchExchange(b, url, crecs) })
	}
}

func benchExchange[E any](b *testing.B, url string, recs []E) {
	batch := len(recs)
	subject := Subject("bench", "x", int(benchRun.Add(1)), 0)
	p := newPipe(b, url, subject, DefaultConfig[E](), exchange.NewGate[E](1, 4, batch, nil))
	w, err := exchange.NewWriter([]exchange.Target[E]{{Remote: p.s}}, exchange.RoundRobin, 0, 128, batch)
	require.NoError(b, err)
	ctx := context.Background()
	counted := make(chan int, 1)
	go func() {
		n := 0
		for {
			_, m, ok := p.gate.Poll()
			if !ok {
				if p.gate.Wait(ctx) != nil {
					break
				}
				continue
			}
			if m.Batch == nil {
				if m.Event.Kind == exchange.EndOfInput {
					break
				}
				continue
			}
			n += m.Batch.Len()
			p.gate.Recycle(0, m.Batch)
		}
		counted <- n
	}()

	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for i := range recs {
			if err := w.Write(ctx, recs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	require.NoError(b, w.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput}))
	n := <-counted
	elapsed := time.Since(start)
	b.StopTimer()
	require.Equal(b, b.N*batch, n)
	require.NoError(b, <-p.errc)
	rate := float64(n) / elapsed.Seconds()

	data := appendHeader(nil, frameBatch, 1)
	data, err = Msgpack[E]().AppendBatch(data, recs, nil)
	require.NoError(b, err)
	raw := rawRate(b, url, subject+".raw", data, b.N) * float64(batch)
	b.ReportMetric(rate, "records/s")
	b.ReportMetric(raw, "raw-records/s")
	b.ReportMetric(rate/raw, "x-raw")
	b.ReportMetric(float64(len(data))/float64(batch), "bytes/record")
	b.ReportMetric(0, "ns/op") // per batch, and mixed with the raw run: records/s says it better
}

// rawRate publishes n copies of data on one connection, receives them on
// another and returns the messages per second.
func rawRate(b *testing.B, url, subject string, data []byte, n int) float64 {
	pub, subc := connect(b, url), connect(b, url)
	done := make(chan struct{})
	var got atomic.Int64
	sub, err := subc.Subscribe(subject, func(*nats.Msg) {
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	require.NoError(b, err)
	defer sub.Unsubscribe()
	require.NoError(b, sub.SetPendingLimits(-1, -1), "no slow-consumer drops: raw has no flow control")
	require.NoError(b, subc.Flush())
	start := time.Now()
	for range n {
		require.NoError(b, pub.Publish(subject, data))
	}
	require.NoError(b, pub.Flush())
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("raw: %d of %d messages after a minute", got.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds()
}
