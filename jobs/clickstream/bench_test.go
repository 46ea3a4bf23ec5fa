package clickstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// BenchmarkClickstream runs the whole job, bounded, over 100 000 generated
// events (JSON Lines files), at parallelism 1 and 2, and compares it in the
// same run with two baselines: the raw consume rate of the stream (an
// ordered consumer fetching every message) and the COST baseline, a
// single-threaded Go loop that consumes the stream and computes the same
// results (decode, per-partition lateness, the five aggregates; no files).
//
// Each iteration runs all four, one after the other, so that the ratios
// compare runs under the same load; each job's results are checked against
// the baseline's. It reports ev/s-p1, ev/s-p2, speedup (p2 over p1),
// x-raw-consume and x-cost-baseline (p2 over the baseline's rate).
func BenchmarkClickstream(b *testing.B) {
	srv := startServer(b)
	nc := connect(b, srv.URL())
	g := clickstream.DefaultGeneratorConfig()
	g.Count = 100_000
	publish(b, nc, g)
	want, malformed := reference(readStream(b, nc, g.Stream), time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)

	run := func(parallelism int) time.Duration {
		out := b.TempDir()
		job, counters, err := clickstream.BuildWithCounters(jobs.Config{
			Job:       dataflow.Config{Parallelism: parallelism},
			NATS:      jetstream.ConnConfig{URL: srv.URL()},
			Bounded:   true,
			OutputDir: out,
		})
		require.NoError(b, err)
		began := time.Now()
		require.NoError(b, job.Run(context.Background()))
		took := time.Since(began)
		requireResults(b, want, readResults(b, out, false))
		require.EqualValues(b, malformed, counters.Malformed())
		require.EqualValues(b, len(want.Late), counters.Late())
		return took
	}

	var consume, cost, p1, p2 time.Duration
	for b.Loop() {
		began := time.Now()
		msgs := readStream(b, nc, g.Stream)
		consume += time.Since(began)
		compute(msgs, time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)
		cost += time.Since(began)
		p1 += run(1)
		p2 += run(2)
	}
	events := float64(g.Count) * float64(b.N)
	rate := func(d time.Duration) float64 { return events / d.Seconds() }
	b.ReportMetric(rate(p1), "ev/s-p1")
	b.ReportMetric(rate(p2), "ev/s-p2")
	b.ReportMetric(p1.Seconds()/p2.Seconds(), "speedup")
	b.ReportMetric(rate(consume), "raw-consume-ev/s")
	b.ReportMetric(rate(cost), "cost-baseline-ev/s")
	b.ReportMetric(consume.Seconds()/p2.Seconds(), "x-raw-consume")
	b.ReportMetric(cost.Seconds()/p2.Seconds(), "x-cost-baseline")
	b.ReportMetric(0, "ns/op")
}
