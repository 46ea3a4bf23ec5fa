package state_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// The benchmarks compare each backend with the COST baseline measured in the
// same run: a plain map[string]int64 doing the same read-modify-write. The
// baseline gets its keys as strings already, so it never allocates; the
// backends get []byte keys as the runtime gives them. Backend and baseline run
// interleaved in chunks so that noise from other processes hits both alike.
//
//	go test -run '^$' -bench . ./state/                      # 100K keys, snapshots at 1M keys
//	SLUICE_BENCH_BIG=1 go test -run '^$' -bench Big ./state/ # 10M keys, 1M-entry cache

type workload struct {
	keys  [][]byte
	skeys []string
	kgs   []int
	order []int32 // the random access sequence
}

func newWorkload(nKeys, nOps int) *workload {
	w := &workload{keys: make([][]byte, nKeys), skeys: make([]string, nKeys), kgs: make([]int, nKeys), order: make([]int32, nOps)}
	for i := range w.keys {
		w.skeys[i] = "user-" + strconv.Itoa(i*7919+13)
		w.keys[i] = []byte(w.skeys[i])
		w.kgs[i] = keygroup.Of(w.keys[i], maxPar)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range w.order {
		w.order[i] = int32(rng.IntN(nKeys))
	}
	return w
}

func benchCfg() state.Config {
	return state.Config{OperatorUID: "bench", KeyGroups: keygroup.Range{Start: 0, End: maxPar}, MaxParallelism: maxPar}
}

// rmw is the per-record work on a backend: set the key, read, add one, write.
func rmw(b state.Backend, v *state.Value[int64], w *workload, i int) {
	k := w.order[i%len(w.order)]
	b.SetCurrentKey(w.kgs[k], w.keys[k])
	x, _, err := v.Get()
	if err != nil {
		panic(err)
	}
	if err := v.Update(x + 1); err != nil {
		panic(err)
	}
}

// interleave runs n ops of each fn in chunks, alternating, and returns each one's rate (ops/s).
func interleave(n int, fns ...func(i int)) []float64 {
	const chunk = 50_000
	spent := make([]time.Duration, len(fns))
	done := make([]int, len(fns))
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		for j, fn := range fns {
			t0 := time.Now()
			for i := start; i < end; i++ {
				fn(i)
			}
			spent[j] += time.Since(t0)
			done[j] += end - start
		}
	}
	rates := make([]float64, len(fns))
	for j := range fns {
		rates[j] = float64(done[j]) / spent[j].Seconds()
	}
	return rates
}

// mapRMW is the baseline. The map holds its own copies of the keys, as any
// store does: were the lookup strings the map's own, Go's string compare would
// short-cut on pointer equality and never touch the key bytes, which no real
// stream of decoded records allows.
func mapRMW(w *workload) (map[string]int64, func(i int)) {
	m := make(map[string]int64, len(w.skeys))
	for _, k := range w.skeys {
		m[strings.Clone(k)] = 0
	}
	return m, func(i int) {
		k := w.skeys[w.order[i%len(w.order)]]
		m[k] = m[k] + 1
	}
}

func openBadger(tb testing.TB, cacheEntries int) state.Backend {
	bc := state.DefaultBadgerConfig(tb.TempDir())
	bc.CacheEntries = cacheEntries
	b, err := state.NewBadger(benchCfg(), bc)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func openHeap(tb testing.TB) state.Backend {
	b, err := state.NewHeap(benchCfg())
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func warm(b state.Backend, v *state.Value[int64], w *workload) {
	for i := range w.keys {
		b.SetCurrentKey(w.kgs[i], w.keys[i])
		if err := v.Update(0); err != nil {
			panic(err)
		}
	}
}

// mapBytesRMW is the second baseline: the natural plain-map loop over the
// same []byte keys the backends get, m[string(k)]++ (its write allocates).
func mapBytesRMW(w *workload) func(i int) {
	m := make(map[string]int64, len(w.skeys))
	for _, k := range w.skeys {
		m[strings.Clone(k)] = 0
	}
	return func(i int) { m[string(w.keys[w.order[i%len(w.order)]])]++ }
}

// BenchmarkUpdates100K: heap and Badger (cache holding every key) against the
// plain map, and Badger against heap.
func BenchmarkUpdates100K(b *testing.B) {
	const nKeys = 100_000
	w := newWorkload(nKeys, 1<<20)
	heap := openHeap(b)
	hv, err := state.NewValue[int64](heap, "count")
	require.NoError(b, err)
	bdg := openBadger(b, 2*nKeys)
	bv, err := state.NewValue[int64](bdg, "count")
	require.NoError(b, err)
	warm(heap, hv, w)
	warm(bdg, bv, w)
	_, mapFn := mapRMW(w)
	n := max(b.N, 1_000_000)
	b.ResetTimer()
	rates := interleave(n, mapFn,
		func(i int) { rmw(heap, hv, w, i) },
		func(i int) { rmw(bdg, bv, w, i) },
		mapBytesRMW(w))
	b.StopTimer()
	b.ReportMetric(rates[0], "map_updates/s")
	b.ReportMetric(rates[3], "map_bytes_updates/s")
	b.ReportMetric(rates[1]/rates[3], "heap_x_of_map_bytes")
	b.ReportMetric(rates[1], "heap_updates/s")
	b.ReportMetric(rates[2], "badger_updates/s")
	b.ReportMetric(rates[1]/rates[0], "heap_x_of_map")
	b.ReportMetric(rates[2]/rates[0], "badger_x_of_map")
	b.ReportMetric(rates[2]/rates[1], "badger_x_of_heap")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkBadgerCacheMiss100K: 100K keys with a 10K-entry cache, so most
// updates read Badger and evictions flush to it.
func BenchmarkBadgerCacheMiss100K(b *testing.B) {
	const nKeys = 100_000
	w := newWorkload(nKeys, 1<<20)
	bdg := openBadger(b, nKeys/10)
	bv, err := state.NewValue[int64](bdg, "count")
	require.NoError(b, err)
	warm(bdg, bv, w)
	_, mapFn := mapRMW(w)
	n := max(b.N, 300_000)
	b.ResetTimer()
	rates := interleave(n, mapFn, func(i int) { rmw(bdg, bv, w, i) })
	b.ReportMetric(rates[1], "badger_updates/s")
	b.ReportMetric(rates[1]/rates[0], "badger_x_of_map")
	b.ReportMetric(0, "ns/op")
}

func rssBytes(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field+":")), "%f", &kb)
			return kb * 1024
		}
	}
	return -1
}

// BenchmarkBig10M: 10M keys through a 1M-entry Badger cache. Gated behind
// SLUICE_BENCH_BIG=1 (it takes minutes). Keys are generated on the fly so the
// harness itself holds little memory. Reports updates/s with uniform and
// Zipf-skewed access, resident memory (current and peak, measured before the
// baseline map is built) and the ratio to a plain map of 10M keys doing the
// same RMW on the same generated keys. With uniform keys nine updates in ten
// miss the cache, so it also reports Badger's own point-read rate on the same
// store (the uniform keys read straight through one read transaction, no
// cache): the ceiling of any cache in front of Badger for this workload.
func BenchmarkBig10M(b *testing.B) {
	if os.Getenv("SLUICE_BENCH_BIG") == "" || testing.Short() {
		b.Skip("set SLUICE_BENCH_BIG=1 to run the 10M-key benchmark")
	}
	nKeys, cache := 10_000_000, 1_000_000
	if n, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_BIG_KEYS")); err == nil && n > 0 {
		nKeys, cache = n, n/10 // a smaller run with the same proportions
	}
	const nOps = 3_000_000
	rng := rand.New(rand.NewPCG(9, 10))
	uniform := make([]int32, nOps)
	for i := range uniform {
		uniform[i] = int32(rng.IntN(nKeys))
	}
	zipf := make([]int32, nOps)
	z := rand.NewZipf(rng, 1.1, 1, uint64(nKeys-1))
	for i := range zipf {
		// scatter the hot keys over the key space
		zipf[i] = int32((z.Uint64() * 2654435761) % uint64(nKeys))
	}
	var buf []byte
	keyOf := func(k int32) []byte {
		buf = strconv.AppendInt(append(buf[:0], "user-"...), int64(k), 10)
		return buf
	}
	bdg := openBadger(b, cache)
	v, err := state.NewValue[int64](bdg, "count")
	require.NoError(b, err)
	run := func(order []int32) float64 {
		t0 := time.Now()
		for _, k := range order {
			key := keyOf(k)
			bdg.SetCurrentKey(keygroup.Of(key, maxPar), key)
			x, _, err := v.Get()
			if err != nil {
				panic(err)
			}
			if err := v.Update(x + 1); err != nil {
				panic(err)
			}
		}
		return float64(len(order)) / time.Since(t0).Seconds()
	}
	t0 := time.Now()
	for k := int32(0); k < int32(nKeys); k++ {
		key := keyOf(k)
		bdg.SetCurrentKey(keygroup.Of(key, maxPar), key)
		require.NoError(b, v.Update(0))
	}
	b.Logf("loaded %d keys in %v", nKeys, time.Since(t0))
	b.ResetTimer()
	uniRate := run(uniform)
	zipfRate := run(zipf)
	b.StopTimer()
	// Same-run baseline: Badger's own point reads of the same keys in the same
	// store, through one read transaction, without the cache.
	b.Logf("store levels:\n%s", state.BadgerLevels(bdg))
	get, done := state.BadgerRawReader(bdg, "count")
	found := 0
	t1 := time.Now()
	for _, k := range uniform {
		key := keyOf(k)
		ok, err := get(keygroup.Of(key, maxPar), key)
		require.NoError(b, err)
		if ok {
			found++
		}
	}
	rawRead := float64(len(uniform)) / time.Since(t1).Seconds()
	done()
	b.Logf("raw reads found %d of %d keys in the store", found, len(uniform))
	runtime.GC()
	rss, hwm := rssBytes("VmRSS"), rssBytes("VmHWM")
	require.NoError(b, bdg.Close())

	m := make(map[string]int64, nKeys)
	for k := int32(0); k < int32(nKeys); k++ {
		m[string(keyOf(k))] = 0
	}
	mapRun := func(order []int32) float64 {
		t0 := time.Now()
		for _, k := range order {
			key := keyOf(k)
			x := m[string(key)]
			m[string(key)] = x + 1
		}
		return float64(len(order)) / time.Since(t0).Seconds()
	}
	mapUni, mapZipf := mapRun(uniform), mapRun(zipf)
	b.ReportMetric(uniRate, "badger_uniform_updates/s")
	b.ReportMetric(zipfRate, "badger_zipf_updates/s")
	b.ReportMetric(mapUni, "map_uniform_updates/s")
	b.ReportMetric(uniRate/mapUni, "uniform_x_of_map")
	b.ReportMetric(rawRead, "raw_badger_reads/s")
	b.ReportMetric(uniRate/rawRead, "uniform_x_of_raw_reads")
	b.ReportMetric(zipfRate/mapZipf, "zipf_x_of_map")
	b.ReportMetric(rss/(1<<20), "rss_MiB")
	b.ReportMetric(hwm/(1<<20), "peak_rss_MiB")
	b.ReportMetric(0, "ns/op")
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkSnapshot1M: full snapshot, incremental snapshot after 10K updates,
// and restore, at 1M keys. The baseline writes the plain map with the same
// framing cost (key, value varint, CRC32C), in the same run.
func BenchmarkSnapshot1M(b *testing.B) {
	const nKeys = 1_000_000
	w := newWorkload(nKeys, 10_000*64)
	var mapRate float64
	{
		m, _ := mapRMW(w)
		for _, k := range w.skeys {
			m[k] = 1
		}
		t0 := time.Now()
		var buf []byte
		var crc uint32
		for k, v := range m {
			buf = append(buf, k...)
			buf = strconv.AppendInt(buf, v, 10)
			if len(buf) > 64<<10 {
				crc = crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), buf)
				buf = buf[:0]
			}
		}
		_ = crc
		mapRate = float64(nKeys) / time.Since(t0).Seconds()
	}
	for _, name := range []string{"heap", "badger"} {
		b.Run(name, func(b *testing.B) {
			open := func() state.Backend {
				if name == "heap" {
					return openHeap(b)
				}
				return openBadger(b, 1_000_000)
			}
			be := open()
			v, err := state.NewValue[int64](be, "count")
			require.NoError(b, err)
			warm(be, v, w)
			id := int64(0)
			snap := func(full bool) (capture, total time.Duration, size int64, data []byte) {
				id++
				t0 := time.Now()
				s, err := be.Snapshot(id, state.SnapshotOptions{Full: full})
				require.NoError(b, err)
				capture = time.Since(t0)
				var buf bytes.Buffer
				var out io.Writer = &buf
				_, err = s.Write(context.Background(), out)
				require.NoError(b, err)
				return capture, time.Since(t0), int64(buf.Len()), buf.Bytes()
			}
			b.ResetTimer()
			var fullCap, fullTot, deltaCap, deltaTot time.Duration
			var fullSize, deltaSize int64
			var base, delta []byte
			op := 0
			for i := 0; i < b.N; i++ {
				c, t, s, d := snap(true)
				fullCap, fullTot, fullSize, base = fullCap+c, fullTot+t, s, d
				b.StopTimer()
				for j := 0; j < 10_000; j++ {
					rmw(be, v, w, op)
					op++
				}
				b.StartTimer()
				c, t, s, d = snap(false)
				deltaCap, deltaTot, deltaSize, delta = deltaCap+c, deltaTot+t, s, d
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
			b.ReportMetric(ms(fullCap), "full_capture_ms")
			b.ReportMetric(ms(fullTot), "full_ms")
			b.ReportMetric(float64(fullSize)/(1<<20), "full_MiB")
			b.ReportMetric(ms(deltaCap), "delta_capture_ms")
			b.ReportMetric(ms(deltaTot), "delta_ms")
			b.ReportMetric(float64(deltaSize)/(1<<20), "delta_MiB")
			b.ReportMetric(float64(nKeys)/(float64(fullTot)/float64(b.N)/1e9)/mapRate, "full_x_of_map_dump")

			// Restore base + delta into a fresh backend.
			t0 := time.Now()
			be2 := open()
			_, err = state.NewValue[int64](be2, "count")
			require.NoError(b, err)
			require.NoError(b, be2.Restore(context.Background(), state.Chain{bytes.NewReader(base), bytes.NewReader(delta)}))
			b.ReportMetric(float64(time.Since(t0))/1e6, "restore_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
