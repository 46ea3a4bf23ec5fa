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
// events (JSON Lines files, parallelism 2), and compares it in the same run
// with two baselines: the raw consume rate of the stream (an ordered
// consumer fetching every message) and the COST baseline, a single-threaded
// Go loop that consumes the stream and computes the same results (decode,
// per-partition lateness, the five aggregates; no files).
func BenchmarkClickstream(b *testing.B) {
	srv := startServer(b)
	nc := connect(b, srv.URL())
	g := clickstream.DefaultGeneratorConfig()
	g.Count = 100_000
	publish(b, nc, g)

	// The baselines run in every iteration, outside the timer, so that the
	// ratios compare runs under the same load.
	var consume, cost time.Duration
	for b.Loop() {
		b.StopTimer()
		began := time.Now()
		msgs := readStream(b, nc, g.Stream)
		consume += time.Since(began)
		compute(msgs, time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)
		cost += time.Since(began)
		b.StartTimer()

		job, err := clickstream.Build(jobs.Config{
			Job:       dataflow.Config{Parallelism: 2},
			NATS:      jetstream.ConnConfig{URL: srv.URL()},
			Bounded:   true,
			OutputDir: b.TempDir(),
		})
		require.NoError(b, err)
		require.NoError(b, job.Run(context.Background()))
	}
	perRun := b.Elapsed() / time.Duration(b.N)
	consume /= time.Duration(b.N)
	cost /= time.Duration(b.N)
	events := float64(g.Count)
	b.ReportMetric(events/perRun.Seconds(), "events/s")
	b.ReportMetric(events/consume.Seconds(), "raw-consume-events/s")
	b.ReportMetric(events/cost.Seconds(), "cost-baseline-events/s")
	b.ReportMetric(consume.Seconds()/perRun.Seconds(), "x-raw-consume")
	b.ReportMetric(cost.Seconds()/perRun.Seconds(), "x-cost-baseline")
}
