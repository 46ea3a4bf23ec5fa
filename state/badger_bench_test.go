package state_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// BenchmarkBadgerOptions measures the Badger backend with one Badger option
// changed at a time from the defaults, over 1M keys (and 10M with
// SLUICE_HEAVY=1, minutes, and only the options that matter at 1M): each
// case loads the keys through a 100K-entry cache, then reports
//
//   - updates/s: read-modify-write of an int64 on uniform random keys (nine
//     in ten miss the cache at 1M keys);
//   - raw-reads/s: Badger's own single-goroutine point reads (txn.Get of
//     random keys the store holds, one read transaction, no cache) in the
//     same store after the updates, and x-raw-read, updates/s over it.
//
// The concurrent case reads a default store just loaded (fewer level-0
// tables than after the updates) from 1, 2, 4 and 8 goroutines
// (each with its transaction) and reports each rate and its ratio to one
// goroutine's: what resolving a batch of cache misses concurrently can gain.
//
//	go test -run '^$' -bench BadgerOptions -benchtime 1x ./state/
//	SLUICE_HEAVY=1 go test -run '^$' -bench BadgerOptions -benchtime 1x -timeout 1h ./state/
func BenchmarkBadgerOptions(b *testing.B) {
	sizes := []int{1_000_000}
	if os.Getenv("SLUICE_HEAVY") != "" {
		sizes = append(sizes, 10_000_000)
	}
	variants := []struct {
		name string
		set  func(*state.BadgerConfig)
		big  bool // also at 10M keys (loading 10M keys takes minutes per case)
	}{
		{"default", func(*state.BadgerConfig) {}, true},
		{"blockcache-64MB", func(bc *state.BadgerConfig) { bc.BlockCacheSize = 64 << 20 }, false},
		{"blockcache-256MB", func(bc *state.BadgerConfig) { bc.BlockCacheSize = 256 << 20 }, true},
		{"bloom-0.1", func(bc *state.BadgerConfig) { bc.BloomFalsePositive = 0.1 }, false},
		{"bloom-0.001", func(bc *state.BadgerConfig) { bc.BloomFalsePositive = 0.001 }, true},
		{"valuethreshold-1B", func(bc *state.BadgerConfig) { bc.ValueThreshold = 1 }, false}, // every value in the value log
		{"memtable-8MB", func(bc *state.BadgerConfig) { bc.MemTableSize = 8 << 20 }, false},
		{"memtable-128MB", func(bc *state.BadgerConfig) { bc.MemTableSize = 128 << 20 }, false},
		{"memtables-5", func(bc *state.BadgerConfig) { bc.NumMemtables = 5 }, false},
		{"compactors-4", func(bc *state.BadgerConfig) { bc.NumCompactors = 4 }, false},
	}
	for _, n := range sizes {
		for _, v := range variants {
			if n > 1_000_000 && !v.big {
				continue
			}
			b.Run(fmt.Sprintf("%s/%s", countName(n), v.name), func(b *testing.B) {
				bc := state.DefaultBadgerConfig(b.TempDir())
				v.set(&bc)
				s := loadOptionsStore(b, n, bc)
				defer s.close(b)
				var updates, raw []float64
				for range b.N {
					updates = append(updates, s.updates(b, 500_000))
					raw = append(raw, s.rawReads(b, 1, 500_000))
				}
				u, r := medianOf(updates), medianOf(raw)
				b.ReportMetric(u, "updates/s")
				b.ReportMetric(r, "raw-reads/s")
				b.ReportMetric(u/r, "x-raw-read")
				b.ReportMetric(0, "ns/op")
			})
		}
		b.Run(countName(n)+"/concurrent-reads", func(b *testing.B) {
			s := loadOptionsStore(b, n, state.DefaultBadgerConfig(b.TempDir()))
			defer s.close(b)
			reads := 500_000
			rates := map[int][]float64{}
			for range b.N {
				for _, g := range []int{1, 2, 4, 8} {
					rates[g] = append(rates[g], s.rawReads(b, g, reads))
				}
			}
			one := medianOf(rates[1])
			b.ReportMetric(one, "reads/s-1")
			for _, g := range []int{2, 4, 8} {
				r := medianOf(rates[g])
				b.ReportMetric(r, fmt.Sprintf("reads/s-%d", g))
				b.ReportMetric(r/one, fmt.Sprintf("x-%d", g))
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

func countName(n int) string {
	if n%1_000_000 == 0 {
		return strconv.Itoa(n/1_000_000) + "M"
	}
	return strconv.Itoa(n/1000) + "K"
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// optionsStore is a Badger backend holding one int64 "count" per key
// user-0 ... user-(n-1).
type optionsStore struct {
	be    state.Backend
	v     *state.Value[int64]
	n     int
	rng   *rand.Rand
	kb    []byte
	found []int32 // keys the store (not only the cache) holds, in random order
}

func (s *optionsStore) key(k int) []byte {
	s.kb = strconv.AppendInt(append(s.kb[:0], "user-"...), int64(k), 10)
	return s.kb
}

func loadOptionsStore(b *testing.B, n int, bc state.BadgerConfig) *optionsStore {
	b.StopTimer()
	be, err := state.NewBadger(benchCfg(), bc)
	require.NoError(b, err)
	v, err := state.NewValue[int64](be, "count")
	require.NoError(b, err)
	s := &optionsStore{be: be, v: v, n: n, rng: rand.New(rand.NewPCG(11, 12))}
	t0 := time.Now()
	for k := range n {
		key := s.key(k)
		be.SetCurrentKey(keygroup.Of(key, maxPar), key)
		require.NoError(b, v.Update(int64(k)))
	}
	b.Logf("loaded %d keys in %v", n, time.Since(t0).Round(time.Millisecond))
	return s
}

func (s *optionsStore) close(b *testing.B) { require.NoError(b, s.be.Close()) }

// updates runs ops read-modify-writes on uniform random keys and returns their rate.
func (s *optionsStore) updates(b *testing.B, ops int) float64 {
	b.StartTimer()
	t0 := time.Now()
	for range ops {
		key := s.key(s.rng.IntN(s.n))
		s.be.SetCurrentKey(keygroup.Of(key, maxPar), key)
		x, _, err := s.v.Get()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.v.Update(x + 1); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(ops) / time.Since(t0).Seconds()
	b.StopTimer()
	return rate
}

// rawReads reads reads random keys the store holds straight from Badger,
// split over g goroutines with a read transaction each, and returns the
// rate over them all. The keys a read finds are picked first, untimed:
// those the cache holds and never wrote are left out.
func (s *optionsStore) rawReads(b *testing.B, g, reads int) float64 {
	if len(s.found) < reads {
		get, done := state.BadgerRawReader(s.be, "count")
		s.found = s.found[:0]
		for len(s.found) < reads {
			k := s.rng.IntN(s.n)
			key := s.key(k)
			ok, err := get(keygroup.Of(key, maxPar), key)
			require.NoError(b, err)
			if ok {
				s.found = append(s.found, int32(k))
			}
		}
		done()
	}
	s.rng.Shuffle(len(s.found), func(i, j int) { s.found[i], s.found[j] = s.found[j], s.found[i] })
	var wg sync.WaitGroup
	errs := make([]error, g)
	start := make(chan struct{})
	for i := range g {
		keys := s.found[i*reads/g : (i+1)*reads/g]
		get, done := state.BadgerRawReader(s.be, "count")
		wg.Go(func() {
			defer done()
			var kb []byte
			<-start
			for _, k := range keys {
				kb = strconv.AppendInt(append(kb[:0], "user-"...), int64(k), 10)
				if ok, err := get(keygroup.Of(kb, maxPar), kb); err != nil || !ok {
					errs[i] = fmt.Errorf("raw read of user-%d: found %v, %v", k, ok, err)
					return
				}
			}
		})
	}
	b.StartTimer()
	t0 := time.Now()
	close(start)
	wg.Wait()
	rate := float64(reads) / time.Since(t0).Seconds()
	b.StopTimer()
	for _, err := range errs {
		require.NoError(b, err)
	}
	return rate
}
