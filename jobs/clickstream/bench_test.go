package clickstream_test

import (
	"context"
	"syscall"
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
// Each iteration runs all four, one after the other (the two jobs taking
// turns to go first), so that the ratios compare runs under the same load;
// each job's results are checked against the baseline's. It reports ev/s-p1, ev/s-p2, speedup (p2 over p1),
// x-raw-consume and x-cost-baseline (p2 over the baseline's rate).
//
// The server runs in the process, so the CPU time of the process counts
// the server's work too: cores-p1 and cores-p2 are the cores each run kept
// busy (CPU time over wall time), and cpu-us/ev-p1, cpu-us/ev-p2 and
// cpu-us/ev-raw-consume what an event cost. On a machine with two cores,
// where p2 keeps both busy, the speedup cannot exceed 2/cores-p1 unless an
// event costs less at p2 than at p1.
func BenchmarkClickstream(b *testing.B) {
	srv := startServer(b)
	nc := connect(b, srv.URL())
	g := clickstream.DefaultGeneratorConfig()
	g.Count = 100_000
	publish(b, nc, g)
	want, malformed := reference(readStream(b, nc, g.Stream), time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)

	run := func(parallelism int) (wall, cpu time.Duration) {
		out := b.TempDir()
		job, counters, err := clickstream.BuildWithCounters(jobs.Config{
			Job:       dataflow.Config{Parallelism: parallelism},
			NATS:      jetstream.ConnConfig{URL: srv.URL()},
			Bounded:   true,
			OutputDir: out,
		})
		require.NoError(b, err)
		began, cpu0 := time.Now(), cpuTime()
		require.NoError(b, job.Run(context.Background()))
		wall, cpu = time.Since(began), cpuTime()-cpu0
		requireResults(b, want, readResults(b, out, false))
		require.EqualValues(b, malformed, counters.Malformed())
		require.EqualValues(b, len(want.Late), counters.Late())
		return wall, cpu
	}

	var consume, consumeCPU, cost, p1, p1CPU, p2, p2CPU time.Duration
	for i := 0; b.Loop(); i++ {
		began, cpu0 := time.Now(), cpuTime()
		msgs := readStream(b, nc, g.Stream)
		consume += time.Since(began)
		consumeCPU += cpuTime() - cpu0
		compute(msgs, time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)
		cost += time.Since(began)
		for j := range 2 {
			if (i+j)%2 == 0 {
				wall, cpu := run(1)
				p1, p1CPU = p1+wall, p1CPU+cpu
			} else {
				wall, cpu := run(2)
				p2, p2CPU = p2+wall, p2CPU+cpu
			}
		}
	}
	events := float64(g.Count) * float64(b.N)
	rate := func(d time.Duration) float64 { return events / d.Seconds() }
	perEvent := func(cpu time.Duration) float64 { return float64(cpu.Microseconds()) / events }
	b.ReportMetric(rate(p1), "ev/s-p1")
	b.ReportMetric(rate(p2), "ev/s-p2")
	b.ReportMetric(p1.Seconds()/p2.Seconds(), "speedup")
	b.ReportMetric(rate(consume), "raw-consume-ev/s")
	b.ReportMetric(rate(cost), "cost-baseline-ev/s")
	b.ReportMetric(consume.Seconds()/p2.Seconds(), "x-raw-consume")
	b.ReportMetric(cost.Seconds()/p2.Seconds(), "x-cost-baseline")
	b.ReportMetric(p1CPU.Seconds()/p1.Seconds(), "cores-p1")
	b.ReportMetric(p2CPU.Seconds()/p2.Seconds(), "cores-p2")
	b.ReportMetric(perEvent(p1CPU), "cpu-us/ev-p1")
	b.ReportMetric(perEvent(p2CPU), "cpu-us/ev-p2")
	b.ReportMetric(perEvent(consumeCPU), "cpu-us/ev-raw-consume")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time, user and system, the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
