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
func BenchmarkNATSExchange(b *testing.B) {
	url := startServer(b)
	for _, batch := range []int{256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			recs := make([]rec, batch)
			for i := range recs {
				recs[i] = rec{A: int64(i), B: int64(i) * 1e9, S: fmt.Sprintf("user-%04d", i%10000)}
			}
			subject := Subject("bench", "x", int(benchRun.Add(1)), 0)
			p := newPipe(b, url, subject, DefaultConfig[rec](), exchange.NewGate[rec](1, 4, batch, nil))
			w, err := exchange.NewWriter([]exchange.Target[rec]{{Remote: p.s}}, exchange.RoundRobin, 0, 128, batch)
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

			raw := rawRate(b, url, subject+".raw", recs, b.N)
			b.ReportMetric(rate, "records/s")
			b.ReportMetric(raw, "raw-records/s")
			b.ReportMetric(rate/raw, "x-raw")
			b.ReportMetric(0, "ns/op") // ns/op would be per batch: records/s says it better
		})
	}
}

// rawRate publishes n copies of the encoded batch recs on one connection and
// receives them on another, and returns the records per second.
func rawRate(b *testing.B, url, subject string, recs []rec, n int) float64 {
	data := appendHeader(nil, frameBatch, 1)
	data, err := Msgpack[rec]().AppendBatch(data, recs, nil)
	require.NoError(b, err)
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
	return float64(n*len(recs)) / time.Since(start).Seconds()
}
