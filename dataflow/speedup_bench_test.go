package dataflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

// speedupStep is the event time between two events of the tumbling case:
// 100K events per 10 s window.
const speedupStep = dataflow.Timestamp(100 * time.Microsecond)

// timedView is the tumbling case's record: a view of a video at a time.
type timedView struct {
	Video int64
	At    dataflow.Timestamp
}

func genTimedView(seq int64) timedView {
	return timedView{Video: seq * 2654435761 % benchKeys, At: dataflow.Timestamp(seq) * speedupStep}
}

// clickEvent is the realistic case's record, decoded from ~200 bytes of JSON.
type clickEvent struct {
	User      int64  `json:"user_id"`
	Video     int64  `json:"video_id"`
	At        int64  `json:"ts"`
	WatchMs   int64  `json:"watch_ms"`
	Country   string `json:"country"`
	Device    string `json:"device"`
	Referrer  string `json:"referrer"`
	SessionID string `json:"session_id"`
}

// rawEvent is a payload as a source hands it on: the bytes and the
// message's time.
type rawEvent struct {
	Data []byte
	At   dataflow.Timestamp
}

func rawTime(r rawEvent) time.Time { return r.At.Time() }

// genJSON encodes event seq as JSON.
func genJSON(seq int64) rawEvent {
	v := genTimedView(seq)
	b := make([]byte, 0, 256)
	b = append(b, `{"user_id":`...)
	b = strconv.AppendInt(b, seq*7919%1_000_003, 10)
	b = append(b, `,"video_id":`...)
	b = strconv.AppendInt(b, v.Video, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, int64(v.At), 10)
	b = append(b, `,"watch_ms":`...)
	b = strconv.AppendInt(b, seq%600_000, 10)
	b = append(b, `,"country":"DE","device":"mobile-android","referrer":"https://example.com/landing?utm=campaign","session_id":"`...)
	b = strconv.AppendInt(b, seq*31+1_000_000_000, 16)
	b = append(b, `"}`...)
	return rawEvent{Data: b, At: v.At}
}

func decodeClick(r rawEvent, emit func(clickEvent)) error {
	var e clickEvent
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return fmt.Errorf("decode %q: %w", r.Data, err)
	}
	emit(e)
	return nil
}

// speedupCase is one pipeline of BenchmarkSpeedup, run at a parallelism over
// n events; it returns the records that reached the sink.
type speedupCase struct {
	name string
	run  func(b *testing.B, n int64, p int) int64
}

func runSpeedupJob(b *testing.B, job *dataflow.Job, got *memory.Counter) int64 {
	b.Helper()
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	return got.Load()
}

var speedupCases = []speedupCase{
	{"running-count", func(b *testing.B, n int64, p int) int64 {
		job := dataflow.NewJob("bench", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "views", memory.GeneratorConfig[view]{Count: n, Generate: genView})
		secs := operators.Map(src, "to-seconds", toSeconds)
		counts := operators.Aggregate(dataflow.KeyBy(secs, videoOf), "views-per-video", operators.Count[view]())
		return runSpeedupJob(b, job, memory.Discard(counts, "discard"))
	}},
	{"tumbling", func(b *testing.B, n int64, p int) int64 {
		job := dataflow.NewJob("bench", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "views", memory.GeneratorConfig[timedView]{Count: n, Generate: genTimedView,
			Watermarks: dataflow.Monotonic(func(v timedView) time.Time { return v.At.Time() })})
		res := window.Aggregate(dataflow.KeyBy(src, func(v timedView) int64 { return v.Video }), "count",
			window.Tumbling(10*time.Second), operators.Count[timedView]())
		return runSpeedupJob(b, job, memory.Discard(res, "discard"))
	}},
	{"running-count-json", func(b *testing.B, n int64, p int) int64 {
		job := dataflow.NewJob("bench", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "events", memory.GeneratorConfig[rawEvent]{Count: n, Generate: genJSON})
		ev := operators.FlatMap(src, "decode", decodeClick)
		counts := operators.Aggregate(dataflow.KeyBy(ev, func(e clickEvent) int64 { return e.Video }), "views-per-video",
			operators.Count[clickEvent]())
		return runSpeedupJob(b, job, memory.Discard(counts, "discard"))
	}},
	{"tumbling-json", func(b *testing.B, n int64, p int) int64 {
		job := dataflow.NewJob("bench", dataflow.Config{Parallelism: p})
		src := memory.Generator(job, "events", memory.GeneratorConfig[rawEvent]{Count: n, Generate: genJSON,
			Watermarks: dataflow.Monotonic(rawTime)})
		ev := operators.FlatMap(src, "decode", decodeClick)
		res := window.Aggregate(dataflow.KeyBy(ev, func(e clickEvent) int64 { return e.Video }), "count",
			window.Tumbling(10*time.Second), operators.Count[clickEvent]())
		return runSpeedupJob(b, job, memory.Discard(res, "discard"))
	}},
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// speedupRounds is the number of rounds BenchmarkSpeedup splits its events
// into: each round runs both parallelisms, the two taking turns to go first,
// so that a slow spell of a shared machine falls on both alike.
const speedupRounds = 4

// BenchmarkSpeedup measures what a second core gives: each pipeline (a
// running count per key and a keyed 10 s tumbling count, over 10K keys; and
// both again with a realistic per-record cost, decoding ~200 bytes of JSON)
// runs at parallelism 1 and at 2 on the same events in the same iteration,
// in speedupRounds rounds that alternate which goes first, and reports both
// rates and speedup = rate p2 / rate p1. Run it with
// -benchtime=20000000x for the plain cases (-benchtime=2000000x for the
// JSON ones) on a quiet machine with at least 2 cores.
func BenchmarkSpeedup(b *testing.B) {
	if runtime.GOMAXPROCS(0) < 2 {
		b.Skip("speedup needs GOMAXPROCS >= 2")
	}
	for _, c := range speedupCases {
		b.Run(c.name, func(b *testing.B) {
			n := int64(b.N)
			var d, cpu [2]time.Duration
			for r := range int64(speedupRounds) {
				// The rounds' events add up to n.
				m := (r+1)*n/speedupRounds - r*n/speedupRounds
				if m == 0 {
					continue
				}
				var got [2]int64
				for j := range 2 {
					i := (int(r) + j) % 2 // 0: p1, 1: p2
					runtime.GC()
					start, cpu0 := time.Now(), cpuTime()
					got[i] = c.run(b, m, i+1)
					d[i] += time.Since(start)
					cpu[i] += cpuTime() - cpu0
				}
				if got[0] != got[1] {
					b.Fatalf("round %d: p1 made %d results, p2 %d", r, got[0], got[1])
				}
			}
			r1, r2 := float64(n)/d[0].Seconds(), float64(n)/d[1].Seconds()
			b.ReportMetric(r1, "ev/s-p1")
			b.ReportMetric(r2, "ev/s-p2")
			b.ReportMetric(r2/r1, "speedup")
			// CPU time per event (user and system, all threads): what the
			// work costs apart from how busy the machine is. On a quiet
			// machine with 2 free cores, p2 can at best reach
			// 2 * cpu-p1 / cpu-p2 of p1's rate.
			c1, c2 := float64(cpu[0].Nanoseconds())/float64(n), float64(cpu[1].Nanoseconds())/float64(n)
			b.ReportMetric(c1, "cpu-ns/ev-p1")
			b.ReportMetric(c2, "cpu-ns/ev-p2")
			if n >= 100_000 {
				fmt.Fprintf(os.Stderr, "speedup %s, %d events: p1 %.0f ev/s (%.1f cpu-ns/ev), p2 %.0f ev/s (%.1f cpu-ns/ev), speedup %.2f\n",
					c.name, n, r1, c1, r2, c2, r2/r1)
			}
		})
	}
}
