package window_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

const (
	benchKeys = 10_000
	benchStep = 100 * time.Microsecond // event time between events: 100K events per 10 s
)

type view struct {
	Video int64
	At    dataflow.Timestamp
}

func genView(seq int64) view {
	return view{Video: seq * 2654435761 % benchKeys, At: dataflow.Timestamp(seq) * dataflow.Timestamp(benchStep)}
}

func viewTime(v view) time.Time { return v.At.Time() }

// handWindows is the hand-written baseline: one goroutine, in-order events,
// counts per (window, key) in plain maps; once the events pass a window's end
// it emits a Result (key, window start and end, count) per key of the window
// to emit, as the window operator does to its sink. It returns the number of
// results.
func handWindows(n int64, size, slide dataflow.Timestamp, emit func(window.Result[int64, int64])) (results int64) {
	open := map[dataflow.Timestamp]map[int64]int64{} // window start -> key -> count
	firstOpen := -size + slide                       // the first window holding time 0 starts before it
	fire := func(start dataflow.Timestamp) {
		w := window.Window{Start: start, End: start + size}
		for k, c := range open[start] {
			emit(window.Result[int64, int64]{Key: k, Window: w, Value: c})
			results++
		}
		delete(open, start)
	}
	for seq := int64(0); seq < n; seq++ {
		v := genView(seq)
		// Fire windows whose end has passed.
		for firstOpen+size <= v.At {
			fire(firstOpen)
			firstOpen += slide
		}
		last := v.At - v.At%slide
		for start := last; start > v.At-size; start -= slide {
			m := open[start]
			if m == nil {
				m = make(map[int64]int64, benchKeys)
				open[start] = m
			}
			m[v.Video]++
		}
	}
	for ; len(open) > 0; firstOpen += slide {
		fire(firstOpen)
	}
	return results
}

// handSink is the hand loop's sink: it counts the results and adds up
// their values, so the results cannot be optimized away.
type handSink struct{ n, sum int64 }

func (s *handSink) emit(r window.Result[int64, int64]) { s.n++; s.sum += r.Value }

func runWindows(b *testing.B, n int64, assigner window.Assigner, parallelism int) int64 {
	job := dataflow.NewJob("bench", dataflow.Config{Parallelism: parallelism})
	src := memory.Generator(job, "views", memory.GeneratorConfig[view]{Count: n, Generate: genView, Watermarks: dataflow.Monotonic(viewTime)})
	res := window.Aggregate(dataflow.KeyBy(src, func(v view) int64 { return v.Video }), "count", assigner, operators.Count[view]())
	got := memory.Discard(res, "discard")
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	return got.Load()
}

// BenchmarkWindows measures a keyed 10 s tumbling count and a 10 s / 2 s
// sliding count over 10K keys at parallelism 1 and 2, each against the
// hand-written loop in the same run, and prints the ratios. Run with
// -benchtime=4000000x for several million events.
func BenchmarkWindows(b *testing.B) {
	for _, c := range []struct {
		name        string
		assigner    window.Assigner
		size, slide time.Duration
		target      float64
	}{
		{"tumbling", window.Tumbling(10 * time.Second), 10 * time.Second, 10 * time.Second, 1.0 / 3},
		{"sliding", window.Sliding(10*time.Second, 2*time.Second), 10 * time.Second, 2 * time.Second, 1.0 / 5},
	} {
		var handRate, rate, rate2 float64
		var handResults, results, handN, n int64
		b.Run(c.name+"/hand", func(b *testing.B) {
			start := time.Now()
			var sink handSink
			handN = int64(b.N)
			handResults = handWindows(int64(b.N), dataflow.Timestamp(c.size), dataflow.Timestamp(c.slide), sink.emit)
			handRate = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(handRate, "events/s")
		})
		b.Run(c.name+"/sluice", func(b *testing.B) {
			start := time.Now()
			n = int64(b.N)
			results = runWindows(b, n, c.assigner, 1)
			rate = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "events/s")
		})
		if handN == n && handResults != results {
			b.Errorf("%s: the hand loop made %d results, the window operator %d", c.name, handResults, results)
		}
		b.Run(c.name+"/sluice-p2", func(b *testing.B) {
			start := time.Now()
			got := runWindows(b, int64(b.N), c.assigner, 2)
			rate2 = float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate2, "events/s")
			if handN == int64(b.N) && handResults != got {
				b.Errorf("%s: the hand loop made %d results, the window operator at parallelism 2 %d", c.name, handResults, got)
			}
		})
		if handRate > 0 && rate > 0 && rate2 > 0 {
			fmt.Fprintf(os.Stderr, "%s count per key, 10K keys: hand loop %.0f events/s (%d results), sluice p1 %.0f events/s (%d results): %.2fx (target >= %.2f); p2 %.0f events/s: %.2fx\n",
				c.name, handRate, handResults, rate, results, rate/handRate, c.target, rate2, rate2/handRate)
		}
	}
}
