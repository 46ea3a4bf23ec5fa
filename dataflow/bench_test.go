package dataflow_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

// view is the benchmark record: a video view.
type view struct {
	User    int64
	Video   int64
	WatchMs int64
}

const benchKeys = 10_000

func genView(seq int64) view {
	return view{User: seq * 7919 % 1_000_003, Video: seq * 2654435761 % benchKeys, WatchMs: seq % 600_000}
}

func toSeconds(v view) view { v.WatchMs /= 1000; return v }

func videoOf(v view) int64 { return v.Video }

// runBaseline is the COST baseline: one goroutine, a plain loop and a plain map
// doing the same work as the job (generate, map, key, running count, emit).
func runBaseline(n int64) (emitted int64) {
	counts := make(map[int64]*int64, benchKeys)
	var last dataflow.KV[int64, int64]
	for seq := int64(0); seq < n; seq++ {
		v := toSeconds(genView(seq))
		k := videoOf(v)
		c := counts[k]
		if c == nil {
			c = new(int64)
			counts[k] = c
		}
		*c++
		last = dataflow.KV[int64, int64]{Key: k, Value: *c}
		emitted++
	}
	_ = last
	return emitted
}

func runPipeline(b *testing.B, n int64, p int, plainMap bool) {
	job := dataflow.NewJob("bench", dataflow.Config{Parallelism: p})
	src := memory.Generator(job, "views", memory.GeneratorConfig[view]{Count: n, Generate: genView})
	secs := operators.Map(src, "to-seconds", toSeconds)
	var counts dataflow.Stream[dataflow.KV[int64, int64]]
	if plainMap {
		counts = dataflow.AddKeyedOperator(dataflow.KeyBy(secs, videoOf), "views-per-video",
			func(out dataflow.Output[dataflow.KV[int64, int64]]) dataflow.Operator[view] {
				return &mapCount{out: out, counts: map[int64]*int64{}}
			})
	} else {
		counts = operators.Aggregate(dataflow.KeyBy(secs, videoOf), "views-per-video", operators.Count[view]())
	}
	got := memory.Discard(counts, "discard")
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got.Load() != n {
		b.Fatalf("discarded %d records, want %d", got.Load(), n)
	}
}

// mapCount is a running count in a plain Go map: not checkpointable, it
// isolates the runtime's cost from the state backend's.
type mapCount struct {
	dataflow.OperatorBase
	out    dataflow.Output[dataflow.KV[int64, int64]]
	counts map[int64]*int64
}

func (m *mapCount) Process(v view, ts dataflow.Timestamp) error {
	k := videoOf(v)
	c := m.counts[k]
	if c == nil {
		c = new(int64)
		m.counts[k] = c
	}
	*c++
	m.out.Collect(dataflow.KV[int64, int64]{Key: k, Value: *c}, ts)
	return nil
}

// BenchmarkRunningCount measures generator -> Map -> KeyBy -> running count per
// key (10K keys) -> discard at parallelism 1 and 2, and the hand-written loop
// doing the same work, in the same run; it prints the ratios. The p1-plain-map
// case keeps the count in a Go map instead of the state backend, to show what
// the runtime costs apart from checkpointable state. Run it with
// -benchtime=4000000x (several million events per case).
func BenchmarkRunningCount(b *testing.B) {
	rates := map[string]float64{}
	measure := func(name string, run func(b *testing.B, n int64)) {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			run(b, int64(b.N))
			rate := float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "events/s")
			rates[name] = rate
		})
	}
	measure("baseline", func(b *testing.B, n int64) {
		if runBaseline(n) != n {
			b.Fatal("baseline lost records")
		}
	})
	measure("p1-plain-map", func(b *testing.B, n int64) { runPipeline(b, n, 1, true) })
	measure("p1", func(b *testing.B, n int64) { runPipeline(b, n, 1, false) })
	measure("p2", func(b *testing.B, n int64) { runPipeline(b, n, 2, false) })
	if base := rates["baseline"]; base > 0 {
		fmt.Fprintf(os.Stderr, "running count, 10K keys, events/s: baseline %.0f; runtime with a plain-map count p1 %.0f (%.2fx); "+
			"state-backed Aggregate p1 %.0f (%.2fx, target >= 0.33), p2 %.0f (%.2fx)\n",
			base, rates["p1-plain-map"], rates["p1-plain-map"]/base, rates["p1"], rates["p1"]/base, rates["p2"], rates["p2"]/base)
	}
}
