package jetstream_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/window"
)

const (
	benchMsgs    = 1_000_000
	benchPayload = 100
	benchKeys    = 10_000
	benchStep    = 100 * time.Microsecond // event time between messages: 100K per 10 s window
	benchPull    = 2048                   // pull batch of both the baseline and the source
)

// benchView is decoded from the benchmark's 100-byte payloads: a video id
// and an event time in the first 16 bytes, padding after.
type benchView struct {
	Video uint64
	At    int64
}

func decodeBenchView(data []byte, _ *jetstream.Msg) (benchView, error) {
	if len(data) < 16 {
		return benchView{}, fmt.Errorf("payload of %d bytes", len(data))
	}
	return benchView{Video: binary.BigEndian.Uint64(data), At: int64(binary.BigEndian.Uint64(data[8:]))}, nil
}

// fillBenchStream publishes benchMsgs messages with acks, many in flight.
func fillBenchStream(b *testing.B, nc *nats.Conn) {
	b.Helper()
	ctx := context.Background()
	js, err := njs.New(nc, njs.WithPublishAsyncMaxPending(16384))
	if err != nil {
		b.Fatal(err)
	}
	s, err := js.CreateStream(ctx, njs.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: njs.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, benchPayload)
	for n := range benchMsgs {
		binary.BigEndian.PutUint64(payload, uint64(n)*2654435761%benchKeys)
		binary.BigEndian.PutUint64(payload[8:], uint64(n)*uint64(benchStep))
		if _, err := js.PublishAsync("bench.views", payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing the benchmark stream took over a minute")
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if info.State.Msgs != benchMsgs {
		b.Fatalf("stream holds %d messages, want %d", info.State.Msgs, benchMsgs)
	}
}

// rawConsume reads the whole stream with nats.go alone: an ordered consumer
// with the same pull batch, counting messages.
func rawConsume(b *testing.B, js njs.JetStream) {
	b.Helper()
	c, err := js.OrderedConsumer(context.Background(), "BENCH", njs.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	it, err := c.Messages(njs.PullMaxMessages(benchPull))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	n := 0
	for n < benchMsgs {
		if _, err := it.Next(); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

func benchSourceConfig[T any](url string, decode jetstream.Decoder[T]) jetstream.SourceConfig[T] {
	return jetstream.SourceConfig[T]{Conn: jetstream.ConnConfig{URL: url}, Stream: "BENCH", Bounded: true, Decode: decode, PullBatch: benchPull}
}

// sluiceDiscard runs source -> discard, bounded.
func sluiceDiscard(b *testing.B, url string) {
	b.Helper()
	job := dataflow.NewJob("bench-source")
	n := memory.Discard(jetstream.Source(job, "src", benchSourceConfig(url, jetstream.Bytes())), "discard")
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if n.Load() != benchMsgs {
		b.Fatalf("read %d messages, want %d", n.Load(), benchMsgs)
	}
}

// sluiceWindows runs source -> keyBy video -> 10 s tumbling count -> discard.
func sluiceWindows(b *testing.B, url string) {
	b.Helper()
	cfg := benchSourceConfig(url, decodeBenchView)
	cfg.Watermarks = dataflow.Monotonic(func(v benchView) time.Time { return time.Unix(0, v.At) })
	job := dataflow.NewJob("bench-windows")
	views := jetstream.Source(job, "src", cfg)
	counts := window.Aggregate(dataflow.KeyBy(views, func(v benchView) uint64 { return v.Video }), "count", window.Tumbling(10*time.Second), window.Count[benchView]())
	n := memory.Discard(counts, "discard")
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if n.Load() < benchKeys {
		b.Fatalf("%d window results, want at least %d", n.Load(), benchKeys)
	}
}

// BenchmarkConsume1M reads a stream of 1M messages of 100 bytes on an
// embedded server: (a) with nats.go alone, (b) with the Sluice source into a
// discarding sink, (c) with the source into a keyed 10 s tumbling count over
// 10K keys. Each op reads the whole stream; b and c report their rate
// relative to a measured in the same run (targets: b >= 0.8, c >= 0.6).
// Filling the stream is not timed.
func BenchmarkConsume1M(b *testing.B) {
	srv, err := embedded.Start(embedded.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillBenchStream(b, nc)
	fmt.Fprintf(os.Stderr, "filled the stream in %v\n", time.Since(start).Round(time.Millisecond))
	rawConsume(b, js) // warm the server's block cache for every contender

	rates := map[string]float64{}
	run := func(name string, fn func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			for range b.N {
				fn(b)
			}
			rate := float64(b.N) * benchMsgs / time.Since(start).Seconds()
			rates[name] = rate
			b.ReportMetric(rate, "events/s")
			if raw := rates["a-raw-nats"]; raw > 0 && name != "a-raw-nats" {
				b.ReportMetric(rate/raw, "ratio-to-raw")
			}
		})
	}
	run("a-raw-nats", func(b *testing.B) { rawConsume(b, js) })
	run("b-source-discard", func(b *testing.B) { sluiceDiscard(b, srv.URL()) })
	run("c-source-window", func(b *testing.B) { sluiceWindows(b, srv.URL()) })
	if raw := rates["a-raw-nats"]; raw > 0 {
		fmt.Fprintf(os.Stderr, "1M x 100 B: raw nats.go %.0f events/s; source->discard %.0f (%.2fx, target >= 0.8); source->keyBy->tumbling count %.0f (%.2fx, target >= 0.6)\n",
			raw, rates["b-source-discard"], rates["b-source-discard"]/raw, rates["c-source-window"], rates["c-source-window"]/raw)
	}
}
