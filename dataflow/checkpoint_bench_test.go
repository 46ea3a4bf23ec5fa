package dataflow_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

// The checkpoint benchmark: a keyed tumbling-window count over 1M keys, run
// with checkpoints every second and without, in the same run, with the
// hand-written loop doing the same work as the COST baseline. It reports the
// throughput of each, the ratio, the duration and size of full and
// incremental checkpoints, and how long restoring the 1M-key state of an
// incremental checkpoint (a base and its deltas) takes.

const (
	ckKeys   = 1_000_000
	ckStep   = dataflow.Timestamp(time.Microsecond) // event time between events: 1M events per second of event time
	ckWindow = 5 * time.Second                      // 5M events per window: 5 per key
	// ckDefaultEvents: see ckEvents.
	ckDefaultEvents = 30_000_000
)

type ckEvent struct {
	Key int64
	At  dataflow.Timestamp
}

// genCk visits every key once in each run of ckKeys events (2654435761 is
// prime to 10^6), in a scrambled order.
func genCk(seq int64) ckEvent {
	return ckEvent{Key: seq * 2654435761 % ckKeys, At: dataflow.Timestamp(seq) * ckStep}
}

func ckTime(e ckEvent) time.Time { return e.At.Time() }
func ckKey(e ckEvent) int64      { return e.Key }

// handTumbling is the baseline: one goroutine, one map per open window, a
// window's counts emitted once the events pass its end.
func handTumbling(n int64) (results int64) {
	size := dataflow.Timestamp(ckWindow)
	var start dataflow.Timestamp
	counts := make(map[int64]int64, ckKeys)
	for seq := int64(0); seq < n; seq++ {
		e := genCk(seq)
		if e.At >= start+size {
			results += emitCounts(counts)
			start = e.At - e.At%size
		}
		counts[e.Key]++
	}
	return results + emitCounts(counts)
}

// emitCounts is the baseline's firing: one result per key, whose counts are
// added up as the job's sink does; the window's map is then emptied.
func emitCounts(counts map[int64]int64) (results int64) {
	var sum int64
	for _, c := range counts {
		sum += c
		results++
	}
	clear(counts)
	if sum == 0 && results > 0 {
		panic("lost counts")
	}
	return results
}

// windowSums is a sink that adds the counts of each window: every window's
// total must equal the number of events in it, which checks that nothing was
// lost or counted twice, also across a restore.
type windowSums struct {
	dataflow.OperatorBase
	mu   *sync.Mutex
	sums map[window.Window]int64
	n    *int64
}

func (s *windowSums) Process(r window.Result[int64, int64], _ dataflow.Timestamp) error {
	s.mu.Lock()
	s.sums[r.Window] += r.Value
	*s.n++
	s.mu.Unlock()
	return nil
}

type sumSink struct {
	mu   sync.Mutex
	sums map[window.Window]int64
	n    int64
}

func (s *sumSink) snapshot() (map[window.Window]int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.sums), s.n
}

// ckJob builds the benchmark job: generator -> key by -> 5 s tumbling count
// -> a sink adding the counts per window.
func ckJob(n int64, cfg dataflow.Config, ts func(ckEvent) time.Time) (*dataflow.Job, *sumSink) {
	job := dataflow.NewJob("tumbling-1m", cfg)
	src := memory.Generator(job, "events", memory.GeneratorConfig[ckEvent]{Count: n, Generate: genCk, Watermarks: dataflow.Monotonic(ts)})
	counts := window.Aggregate(dataflow.KeyBy(src, ckKey), "count", window.Tumbling(ckWindow), operators.Count[ckEvent]())
	sink := &sumSink{sums: map[window.Window]int64{}}
	dataflow.AddSink(counts, "sums", func() dataflow.Operator[window.Result[int64, int64]] {
		return &windowSums{mu: &sink.mu, sums: sink.sums, n: &sink.n}
	})
	return job, sink
}

// checkSums checks that each window's total is the number of events in it,
// for the windows of events [from, n).
func checkSums(sums map[window.Window]int64, from, n int64) error {
	size := int64(ckWindow / time.Microsecond)
	for w, got := range sums {
		lo, hi := max(int64(w.Start)/int64(ckStep), from), min(int64(w.End)/int64(ckStep), n)
		if want := hi - lo; got != want {
			return fmt.Errorf("window %v: counts add up to %d, want %d", w, got, want)
		}
	}
	// Every window with events in [from, n) fired.
	for s := from / size * size; s < n; s += size {
		w := window.Window{Start: dataflow.Timestamp(s) * ckStep, End: dataflow.Timestamp(s+size) * ckStep}
		if _, ok := sums[w]; !ok {
			return fmt.Errorf("window %v never fired", w)
		}
	}
	return nil
}

// ckStat is one completed checkpoint as the storage saw it.
type ckStat struct {
	id       int64
	full     bool          // the keyed state file is a base, not a delta
	duration time.Duration // first file created -> manifest committed
	size     int64         // bytes written for this checkpoint
	keyed    int64         // of which keyed state
	timers   int64         // of which timers
}

// statStorage wraps a Storage and records per checkpoint when its first file
// was created and when its manifest was committed. The first file is the
// source's offsets, written right after the trigger reached the source.
type statStorage struct {
	checkpoint.Storage
	mu    sync.Mutex
	first map[int64]time.Time
	stats []ckStat
	// latest, when set, is returned by Latest instead of the newest manifest
	// (to restore a chosen checkpoint).
	latest *checkpoint.Manifest
}

func (s *statStorage) Create(ctx context.Context, id int64, name string) (checkpoint.Writer, error) {
	s.mu.Lock()
	if _, ok := s.first[id]; !ok {
		s.first[id] = time.Now()
	}
	s.mu.Unlock()
	return s.Storage.Create(ctx, id, name)
}

func (s *statStorage) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	if err := s.Storage.Commit(ctx, m); err != nil {
		return err
	}
	end := time.Now()
	st := ckStat{id: m.ID}
	prefix := fmt.Sprintf("chk-%d/", m.ID)
	for _, op := range m.Operators {
		for _, sub := range op.Subtasks {
			for i, f := range sub.Keyed {
				if strings.HasPrefix(f.Path, prefix) {
					st.keyed += f.Size
					st.full = st.full || i == 0
				}
			}
			if f := sub.Timers; f != nil && strings.HasPrefix(f.Path, prefix) {
				st.timers += f.Size
			}
		}
	}
	for _, f := range m.Files() {
		if strings.HasPrefix(f.Path, prefix) {
			st.size += f.Size
		}
	}
	s.mu.Lock()
	st.duration = end.Sub(s.first[m.ID])
	s.stats = append(s.stats, st)
	s.mu.Unlock()
	return nil
}

func (s *statStorage) Latest(ctx context.Context) (*checkpoint.Manifest, error) {
	if s.latest != nil {
		return s.latest, nil
	}
	return s.Storage.Latest(ctx)
}

// timedBackend reports when the keyed state of the restored operator is
// back: timers are restored between the backend's creation and Restore.
type timedBackend struct {
	state.Backend
	restored func(time.Time)
}

func (b timedBackend) Restore(ctx context.Context, chains ...state.Chain) error {
	err := b.Backend.Restore(ctx, chains...)
	b.restored(time.Now())
	return err
}

// ckEvents is the number of events of each run: enough that the state holds
// every key and a run spans several checkpoints. SLUICE_BENCH_EVENTS
// overrides it.
func ckEvents(b *testing.B) int64 {
	if v := os.Getenv("SLUICE_BENCH_EVENTS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 2*ckKeys {
			b.Fatalf("SLUICE_BENCH_EVENTS=%q: want a number of events of at least %d", v, 2*ckKeys)
		}
		return n
	}
	return ckDefaultEvents
}

// BenchmarkCheckpointTumbling1M runs the tumbling-window count over 1M keys
// (5 s windows of event time, 5 events per key and window) at parallelism 1
// without checkpoints, with checkpoints every second into a local
// directory, and as the hand-written loop, in the same run, each over
// ckDefaultEvents events (SLUICE_BENCH_EVENTS sets another number). Then it
// restores the largest checkpoint (a base, and its deltas if it has any) into
// a new job and lets it finish. Every run checks every window's count. An
// iteration is a whole run, so run it once:
//
//	go test -run '^$' -bench CheckpointTumbling1M -benchtime=1x ./dataflow
func BenchmarkCheckpointTumbling1M(b *testing.B) {
	ctx := context.Background()
	n := ckEvents(b)
	var rates = map[string]float64{}
	// measure runs run once per iteration and reports events/s.
	measure := func(b *testing.B, name string, run func(b *testing.B)) {
		var d time.Duration
		iters := 0
		for b.Loop() {
			start := time.Now()
			run(b)
			d += time.Since(start)
			iters++
		}
		rate := float64(n) * float64(iters) / d.Seconds()
		rates[name] = rate
		b.ReportMetric(rate, "events/s")
	}
	b.Run("hand", func(b *testing.B) {
		measure(b, "hand", func(b *testing.B) {
			if handTumbling(n) == 0 {
				b.Fatal("no results")
			}
		})
	})
	b.Run("no-checkpoints", func(b *testing.B) {
		measure(b, "none", func(b *testing.B) {
			job, sink := ckJob(n, dataflow.Config{Parallelism: 1}, ckTime)
			if err := job.Run(ctx); err != nil {
				b.Fatal(err)
			}
			sums, _ := sink.snapshot()
			if err := checkSums(sums, 0, n); err != nil {
				b.Fatal(err)
			}
		})
	})
	var store *statStorage
	dir := b.TempDir() // outlives the sub-benchmarks: restore reads it
	b.Run("checkpoints-1s", func(b *testing.B) {
		measure(b, "checkpoints", func(b *testing.B) {
			run, err := os.MkdirTemp(dir, "run")
			if err != nil {
				b.Fatal(err)
			}
			local, err := checkpoint.NewLocalStorage(run)
			if err != nil {
				b.Fatal(err)
			}
			store = &statStorage{Storage: local, first: map[int64]time.Time{}}
			job, sink := ckJob(n, dataflow.Config{Parallelism: 1, CheckpointStorage: store,
				Checkpoint: checkpoint.Config{Interval: time.Second, Retain: 1000}}, ckTime)
			if err := job.Run(ctx); err != nil {
				b.Fatal(err)
			}
			sums, _ := sink.snapshot()
			if err := checkSums(sums, 0, n); err != nil {
				b.Fatal(err)
			}
		})
		var full, inc []ckStat
		for _, st := range store.stats {
			switch {
			case st.keyed == 0: // the final checkpoint: every window fired, no state
			case st.full:
				full = append(full, st)
			default:
				inc = append(inc, st)
			}
		}
		for _, st := range store.stats {
			kind := "incremental"
			if st.full {
				kind = "full"
			}
			fmt.Fprintf(os.Stderr, "checkpoint %d %s: %v, %.1f MB (keyed %.1f MB, timers %.1f MB)\n",
				st.id, kind, st.duration.Round(time.Millisecond), mb(st.size), mb(st.keyed), mb(st.timers))
		}
		reportCk(b, "full", full)
		reportCk(b, "incr", inc)
	})
	b.Run("restore", func(b *testing.B) {
		if store == nil {
			b.Skip("restores what checkpoints-1s wrote: run both")
		}
		// The largest checkpoint: every key in state. (The window
		// operator's state on the heap is an image of its buffer, written
		// whole at each checkpoint, so most checkpoints are full; an
		// incremental one is restored from a base and its deltas.)
		var pick *checkpoint.Manifest
		var pickSize int64
		for _, st := range store.stats {
			if st.keyed == 0 {
				continue
			}
			m, err := store.Storage.Load(ctx, st.id)
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for _, f := range m.Files() {
				size += f.Size
			}
			if size > pickSize {
				pick, pickSize = m, size
			}
		}
		if pick == nil {
			b.Fatal("no checkpoint with keyed state to restore")
		}
		store.latest = pick
		chain := 0
		if op, ok := pick.Operator("count"); ok {
			chain = len(op.Subtasks[0].Keyed)
		}
		var toRun, toState time.Duration
		for b.Loop() {
			var made, restored, first time.Time
			var once sync.Once
			var events atomic.Int64
			// The generator opens after the window operator in their chain:
			// its first record marks the end of the restore, including the
			// operator declaring its restored state.
			firstTime := func(e ckEvent) time.Time {
				once.Do(func() { first = time.Now() })
				events.Add(1)
				return e.At.Time()
			}
			job, sink := ckJob(n, dataflow.Config{Parallelism: 1, RestoreFrom: store,
				StateBackend: func(cfg state.Config) (state.Backend, error) {
					made = time.Now()
					be, err := state.NewHeap(cfg)
					if err != nil {
						return nil, err
					}
					return timedBackend{Backend: be, restored: func(t time.Time) { restored = t }}, nil
				}}, firstTime)
			start := time.Now()
			if err := job.Run(ctx); err != nil {
				b.Fatal(err)
			}
			if restored.IsZero() || first.IsZero() {
				b.Fatal("the keyed state was not restored")
			}
			toRun += first.Sub(start)
			toState += restored.Sub(made)
			sums, _ := sink.snapshot()
			if len(sums) == 0 {
				b.Fatal("the restored job emitted nothing")
			}
			// The restored job emits the windows that had not fired at the
			// checkpoint, each with every event in it: those before the
			// checkpoint from the restored state, the rest from the generator.
			from := int64(slices.MinFunc(slices.Collect(maps.Keys(sums)), func(a, b window.Window) int {
				return int(a.Start - b.Start)
			}).Start / ckStep)
			if made := events.Load(); made >= n {
				b.Fatalf("the restored job made all %d events again: it did not resume the generator", made)
			}
			if err := checkSums(sums, from, n); err != nil {
				b.Fatalf("after restoring checkpoint %d (windows from event %d on): %v", pick.ID, from, err)
			}
		}
		iters := time.Duration(b.N)
		b.ReportMetric((toRun / iters).Seconds(), "restore-s")
		b.ReportMetric((toState / iters).Seconds(), "restore-files-s")
		b.ReportMetric(mb(pickSize), "restore-MB")
		b.ReportMetric(float64(chain), "chain-files")
		fmt.Fprintf(os.Stderr, "restore of checkpoint %d (%d keyed files, %.1f MB): %v from Run to the first record, of which reading keyed state and timers %v\n",
			pick.ID, chain, mb(pickSize), (toRun / iters).Round(time.Millisecond), (toState / iters).Round(time.Millisecond))
	})
	none, with, hand := rates["none"], rates["checkpoints"], rates["hand"]
	if none > 0 && with > 0 {
		fmt.Fprintf(os.Stderr, "tumbling count, 1M keys, events/s: sluice p1 without checkpoints %.0f, with checkpoints every 1 s %.0f: with/without %.2f (target >= 0.90)\n",
			none, with, with/none)
	}
	if hand > 0 && none > 0 {
		fmt.Fprintf(os.Stderr, "hand-written loop %.0f events/s; sluice p1 without checkpoints %.2fx of it, with checkpoints %.2fx\n",
			hand, none/hand, with/hand)
	}
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// reportCk reports the median and the worst duration and the median size of
// checkpoints of one kind.
func reportCk(b *testing.B, kind string, sts []ckStat) {
	if len(sts) == 0 {
		return
	}
	ds := make([]time.Duration, len(sts))
	ss := make([]int64, len(sts))
	for i, st := range sts {
		ds[i], ss[i] = st.duration, st.size
	}
	slices.Sort(ds)
	slices.Sort(ss)
	b.ReportMetric(ds[len(ds)/2].Seconds(), kind+"-ck-s")
	b.ReportMetric(ds[len(ds)-1].Seconds(), kind+"-ck-max-s")
	b.ReportMetric(mb(ss[len(ss)/2]), kind+"-ck-MB")
	b.ReportMetric(float64(len(sts)), kind+"-cks")
}
