package window_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

// BenchmarkStateGrowth measures a keyed 10 s tumbling count over uniform
// random keys as the number of keys grows, on the heap backend and on
// Badger. Each case runs in a child process of its own (the test binary run
// again for that case), so that its peak RSS (VmHWM) is its own, and reports
//
//   - ev/s: events through the job per second (start to end of Run);
//   - peak-RSS-MB: the child's peak resident memory;
//   - B/key: the growth of RSS over the run (peak minus the RSS before the
//     job) per key;
//   - end-anon-RSS-MB, end-file-RSS-MB: when file pages count, the RSS at
//     the end of the job split into anonymous memory and file pages
//     (Badger's memory-mapped tables, which the kernel reclaims under
//     pressure, counted in the peak too);
//   - Badger cases: raw-reads/s, Badger's own single-goroutine point-read
//     rate (txn.Get of random existing keys, one read transaction) in a
//     store of as many keys of the backend's layout, built in the same
//     child after the job, and x-raw-read, ev/s over it;
//   - badger/1M-cached: x-heap, its ev/s over heap/1M's in the same run;
//   - hand-ev/s, the rate of a hand-written single-threaded loop over the
//     same events (a Go map of counts per key, emptied into results as
//     each window ends: the events come in time order), run in the same
//     child after the job, and x-hand, ev/s over it.
//
// The events span four windows, so each key gets events in several. Only
// heap/10K and heap/100K run by default; SLUICE_HEAVY=1 adds heap/1M,
// heap/10M and the Badger cases (minutes, up to 1.5 GiB per child):
//
//	go test -run '^$' -bench StateGrowth -benchtime 1x ./window/
//	SLUICE_HEAVY=1 go test -run '^$' -bench StateGrowth -benchtime 1x -timeout 1h ./window/
//
// Each b.N runs the case that many times (ev/s is the median, RSS the
// peak). To profile one case, run it in the benchmark's own process:
//
//	SLUICE_STATEGROWTH_CASE=heap/1M go test -run '^$' -bench StateGrowth -benchtime 1x -cpuprofile cpu.out ./window/
//
// Badger children get a Go memory limit (GOMEMLIMIT) unless one is set, so
// that the Go heap stays under the backend's MemoryLimit (taken from it):
// 1400MiB, and for badger/10M 1150MiB, so that its RSS stays under 1.5
// GiB. Besides the Go heap, which the collector lets grow to the limit,
// Badger maps its memtables' write-ahead logs (2 × MemTableSize each,
// NumMemtables+1 of them: 192 MB with the defaults) and the tables it
// reads.
func BenchmarkStateGrowth(b *testing.B) {
	if name := os.Getenv(growthCaseEnv); name != "" {
		c, ok := findGrowthCase(name)
		if !ok {
			b.Fatalf("%s=%s: no such case", growthCaseEnv, name)
		}
		b.Run(c.name, func(b *testing.B) {
			r := runGrowthCase(b, c)
			if out := os.Getenv(growthOutEnv); out != "" {
				data, err := json.Marshal(r)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(out, data, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			r.report(b)
		})
		return
	}
	heavy := os.Getenv("SLUICE_HEAVY") != ""
	var heap1M float64
	for _, c := range growthCases {
		if c.heavy && !heavy {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			var runs []growthResult
			for range b.N {
				runs = append(runs, runGrowthChild(b, c))
			}
			r := summarize(runs)
			r.report(b)
			switch c.name {
			case "heap/1M":
				heap1M = r.Rate
			case "badger/1M-cached":
				if heap1M > 0 {
					b.ReportMetric(r.Rate/heap1M, "x-heap")
				}
			}
			b.Logf("%s: %d keys, %d events, %d results: ev/s %v, peak RSS %.0f MB, %.0f B/key, raw reads/s %.0f",
				c.name, c.keys, c.events, r.Results, ratesOf(runs), r.PeakRSS/1e6, r.BytesPerKey, r.RawReads)
		})
	}
}

const (
	growthCaseEnv = "SLUICE_STATEGROWTH_CASE"
	growthOutEnv  = "SLUICE_STATEGROWTH_OUT"
	growthWindows = 4 // the events span this many 10 s windows
)

type growthCase struct {
	name   string
	keys   int
	events int64
	badger bool
	cache  int // Badger's CacheEntries
	heavy  bool
	// memLimit is the child's GOMEMLIMIT (Badger), if not 1400MiB
	memLimit string
}

var growthCases = []growthCase{
	{name: "heap/10K", keys: 10_000, events: 2_000_000},
	{name: "heap/100K", keys: 100_000, events: 5_000_000},
	{name: "heap/1M", keys: 1_000_000, events: 20_000_000, heavy: true},
	{name: "heap/10M", keys: 10_000_000, events: 40_000_000, heavy: true},
	{name: "badger/10K", keys: 10_000, events: 2_000_000, badger: true, cache: 100_000, heavy: true},
	{name: "badger/100K", keys: 100_000, events: 5_000_000, badger: true, cache: 100_000, heavy: true},
	{name: "badger/1M-cached", keys: 1_000_000, events: 20_000_000, badger: true, cache: 1_100_000, heavy: true},
	// badger/10M's shape (a tenth of the keys cached, four events a key)
	// at a tenth of its size: a minute, not ten
	{name: "badger/1M", keys: 1_000_000, events: 4_000_000, badger: true, cache: 100_000, heavy: true},
	{name: "badger/10M", keys: 10_000_000, events: 40_000_000, badger: true, cache: 1_000_000, heavy: true, memLimit: "1150MiB"},
}

func findGrowthCase(name string) (growthCase, bool) {
	for _, c := range growthCases {
		if c.name == name {
			return c, true
		}
	}
	return growthCase{}, false
}

// growthResult is what a child reports to its parent.
type growthResult struct {
	Rate        float64 // events/s
	PeakRSS     float64 // bytes
	BytesPerKey float64
	RawReads    float64 // Badger's raw point reads/s, 0 on the heap
	HandRate    float64 // the hand-written loop's events/s
	Results     int64
	// RSS at the end of the job, in bytes: anonymous (the Go heap, Badger's
	// memtables and caches) and file pages (Badger's memory-mapped tables,
	// which the kernel reclaims under pressure)
	AnonRSS, FileRSS float64
}

func (r growthResult) report(b *testing.B) {
	b.ReportMetric(r.Rate, "ev/s")
	b.ReportMetric(r.PeakRSS/1e6, "peak-RSS-MB")
	b.ReportMetric(r.BytesPerKey, "B/key")
	if r.FileRSS > 1<<20 {
		b.ReportMetric(r.AnonRSS/1e6, "end-anon-RSS-MB")
		b.ReportMetric(r.FileRSS/1e6, "end-file-RSS-MB")
	}
	if r.HandRate > 0 {
		b.ReportMetric(r.HandRate, "hand-ev/s")
		b.ReportMetric(r.Rate/r.HandRate, "x-hand")
	}
	if r.RawReads > 0 {
		b.ReportMetric(r.RawReads, "raw-reads/s")
		b.ReportMetric(r.Rate/r.RawReads, "x-raw-read")
	}
	b.ReportMetric(0, "ns/op")
}

// summarize takes the median rate and raw read rate of runs, and the
// memory figures of the run with the highest peak.
func summarize(runs []growthResult) growthResult {
	r := slices.MaxFunc(runs, func(a, b growthResult) int { return int(a.PeakRSS - b.PeakRSS) })
	r.Rate = median(runs, func(r growthResult) float64 { return r.Rate })
	r.RawReads = median(runs, func(r growthResult) float64 { return r.RawReads })
	r.HandRate = median(runs, func(r growthResult) float64 { return r.HandRate })
	return r
}

func median(runs []growthResult, f func(growthResult) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

func ratesOf(runs []growthResult) []string {
	s := make([]string, len(runs))
	for i, r := range runs {
		s[i] = strconv.FormatFloat(r.Rate, 'g', 3, 64)
	}
	return s
}

// runGrowthChild runs case c in a child process and returns its result.
func runGrowthChild(b *testing.B, c growthCase) growthResult {
	out := filepath.Join(b.TempDir(), "result.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkStateGrowth$", "-test.benchtime=1x", "-test.timeout=0")
	cmd.Env = append(os.Environ(), growthCaseEnv+"="+c.name, growthOutEnv+"="+out)
	if c.badger && os.Getenv("GOMEMLIMIT") == "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+cmp.Or(c.memLimit, "1400MiB"))
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: child: %v\n%s", c.name, err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var r growthResult
	if err := json.Unmarshal(data, &r); err != nil {
		b.Fatal(err)
	}
	return r
}

// growthKey is the key of event seq: uniform over keys, by a mix of seq.
func growthKey(seq int64, keys int) int64 {
	z := uint64(seq) + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return int64((z ^ z>>31) % uint64(keys))
}

// growthStep spreads c's events over growthWindows windows of 10 s.
func growthStep(c growthCase) dataflow.Timestamp {
	return dataflow.Timestamp(growthWindows*10*time.Second) / dataflow.Timestamp(c.events)
}

// runGrowthCase runs case c in this process: the job, then (Badger) the
// raw read baseline, and checks the number of results against a count of
// the distinct (key, window) pairs of the input.
func runGrowthCase(b *testing.B, c growthCase) growthResult {
	startRSS := procStatus(b, "VmRSS")
	step := growthStep(c)
	job := dataflow.NewJob("state-growth", dataflow.Config{Parallelism: 1})
	var uid string
	if c.badger {
		dir := b.TempDir()
		job = dataflow.NewJob("state-growth", dataflow.Config{Parallelism: 1, StateBackend: func(cfg state.Config) (state.Backend, error) {
			uid = cfg.OperatorUID
			bc := state.DefaultBadgerConfig(filepath.Join(dir, fmt.Sprintf("%s-%d", cfg.OperatorUID, cfg.KeyGroups.Start)))
			bc.CacheEntries = c.cache
			return state.NewBadger(cfg, bc)
		}})
	}
	src := memory.Generator(job, "views", memory.GeneratorConfig[view]{
		Count:      c.events,
		Generate:   func(seq int64) view { return view{Video: growthKey(seq, c.keys), At: dataflow.Timestamp(seq) * step} },
		Watermarks: dataflow.Monotonic(viewTime),
	})
	res := window.Aggregate(dataflow.KeyBy(src, func(v view) int64 { return v.Video }), "count", window.Tumbling(10*time.Second), operators.Count[view]())
	got := memory.Discard(res, "discard")
	b.ResetTimer()
	t0 := time.Now()
	if err := job.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	r := growthResult{Rate: float64(c.events) / time.Since(t0).Seconds(), Results: got.Load()}
	b.StopTimer()
	r.PeakRSS = procStatus(b, "VmHWM")
	r.AnonRSS, r.FileRSS = procStatus(b, "RssAnon"), procStatus(b, "RssFile")
	r.BytesPerKey = (r.PeakRSS - startRSS) / float64(c.keys)
	if want := distinctKeyWindows(c); r.Results != want {
		b.Fatalf("%s: %d results, want one per key and window with events: %d", c.name, r.Results, want)
	}
	if c.badger {
		r.RawReads = rawBadgerReads(b, c, uid)
	}
	t0 = time.Now()
	if n := handGrowth(c); n != r.Results {
		b.Fatalf("%s: the hand-written loop gave %d results, the job %d", c.name, n, r.Results)
	}
	r.HandRate = float64(c.events) / time.Since(t0).Seconds()
	return r
}

// handGrowth is the hand-written baseline: the same events counted per key
// in a Go map, emptied into results (counted) as each window ends.
func handGrowth(c growthCase) int64 {
	step, size := growthStep(c), dataflow.Timestamp(10*time.Second)
	counts := map[int64]int64{}
	var results, sum int64
	cur := dataflow.Timestamp(0)
	emit := func() {
		for _, n := range counts {
			sum += n
			results++
		}
		clear(counts)
	}
	for seq := range c.events {
		if w := dataflow.Timestamp(seq) * step / size; w != cur {
			emit()
			cur = w
		}
		counts[growthKey(seq, c.keys)]++
	}
	emit()
	if sum != c.events {
		panic("hand loop lost events")
	}
	return results
}

// distinctKeyWindows counts the (key, window) pairs of c's input.
func distinctKeyWindows(c growthCase) int64 {
	step := growthStep(c)
	size := dataflow.Timestamp(10 * time.Second)
	seen := make([]uint64, (c.keys*(growthWindows+1)+63)/64)
	var n int64
	for seq := range c.events {
		w := int(dataflow.Timestamp(seq) * step / size)
		i := w*c.keys + int(growthKey(seq, c.keys))
		if seen[i/64]&(1<<(i%64)) == 0 {
			seen[i/64] |= 1 << (i % 64)
			n++
		}
	}
	return n
}

// rawBadgerReads builds a Badger store holding c.keys keys of the backend's
// layout ([uid][key group][state name][key], each length-prefixed but the
// key group) with values of a window's size, with the options the backend
// uses by default, and returns the rate of single-goroutine point reads of
// random existing keys through one read transaction.
func rawBadgerReads(b *testing.B, c growthCase, uid string) float64 {
	dir := b.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithCompression(options.None).
		WithBlockCacheSize(0).WithMemTableSize(32 << 20).WithNumMemtables(2).WithNumCompactors(2).
		WithDetectConflicts(false).WithMetricsEnabled(false))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	enc := keygroup.EncoderFor[int64]()
	var kb, eb []byte
	storeKey := func(k int64) []byte {
		eb = enc(eb[:0], k)
		kb = binary.AppendUvarint(kb[:0], uint64(len(uid)))
		kb = append(kb, uid...)
		kb = binary.BigEndian.AppendUint16(kb, uint16(keygroup.Of(eb, keygroup.DefaultMaxParallelism)))
		kb = binary.AppendUvarint(kb, uint64(len("windows")))
		kb = append(kb, "windows"...)
		kb = binary.AppendUvarint(kb, uint64(len(eb)))
		return append(kb, eb...)
	}
	val := make([]byte, 20) // a varint timestamp and one slot's encoding
	wb := db.NewWriteBatch()
	for k := range int64(c.keys) {
		if err := wb.Set(slices.Clone(storeKey(k)), val); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	n := min(2_000_000, 4*c.keys)
	txn := db.NewTransaction(false)
	defer txn.Discard()
	t0 := time.Now()
	for range n {
		item, err := txn.Get(storeKey(rng.Int64N(int64(c.keys))))
		if err != nil {
			b.Fatal(err)
		}
		if err := item.Value(func([]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(t0).Seconds()
}

// procStatus returns a memory figure of /proc/self/status in bytes.
func procStatus(b *testing.B, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
