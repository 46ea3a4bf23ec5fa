package dataflow

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// The timer benchmarks: a tumbling window over N keys gives every key one
// timer at the window's end. BenchmarkTimerScale registers those N timers
// (and then each once more, as a duplicate), fires them, and measures the
// live heap they hold; the hand-written baseline does the same work with a
// Go map per time and a sorted slice at firing. BenchmarkTimerRestore
// writes a snapshot of N timers and restores it. 10M keys run only with
// SLUICE_HEAVY=1:
//
//	go test -run '^$' -bench 'Timer(Scale|Restore)' -benchtime=1x ./dataflow
//	SLUICE_HEAVY=1 go test -run '^$' -bench 'Timer(Scale|Restore)' -benchtime=1x -timeout 30m ./dataflow

// timerBenchSizes are the key counts: 1M, and 10M with SLUICE_HEAVY=1.
func timerBenchSizes() []int {
	if os.Getenv("SLUICE_HEAVY") == "1" {
		return []int{1_000_000, 10_000_000}
	}
	return []int{1_000_000}
}

// benchKey is the i-th of n keys in a scrambled order that visits each once
// (2654435761 is prime to the powers of ten).
func benchKey(i, n int) int64 { return int64(i) * 2654435761 % int64(n) }

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// timerWork is what one run measured.
type timerWork struct {
	reg, fire time.Duration
	bytes     uint64 // live heap held by the pending timers
}

func (w timerWork) rates(n int) (reg, fire float64) {
	return float64(2*n) / w.reg.Seconds(), float64(n) / w.fire.Seconds()
}

// handTimers is the baseline: the timers of one time in a Go map of the
// keys, sorted into a slice to fire. It keeps no key group or encoding, so
// it does less than the timer service.
func handTimers(keys []int64, fire func(int64)) timerWork {
	var w timerWork
	before := liveHeap()
	start := time.Now()
	byTime := map[Timestamp]map[int64]struct{}{}
	const t = Timestamp(1000)
	for range 2 {
		for _, k := range keys {
			m := byTime[t]
			if m == nil {
				m = map[int64]struct{}{}
				byTime[t] = m
			}
			m[k] = struct{}{}
		}
	}
	w.reg = time.Since(start)
	w.bytes = liveHeap() - before
	start = time.Now()
	m := byTime[t]
	delete(byTime, t)
	order := make([]int64, 0, len(m))
	for k := range m {
		order = append(order, k)
	}
	slices.Sort(order)
	for _, k := range order {
		fire(k)
	}
	w.fire = time.Since(start)
	runtime.KeepAlive(byTime)
	return w
}

// serviceTimers does the work of handTimers with the timer service, as the
// runtime drives it: the record's key made current, then the timer
// registered.
func serviceTimers(b *testing.B, keys []int64, fire func(int64)) timerWork {
	be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
	require.NoError(b, err)
	defer be.Close()
	s := newKeyedTimers[int64](be, timerFunc[int64](func(k int64, _ Timer) error { fire(k); return nil }), nil, keygroup.DefaultMaxParallelism)
	var w timerWork
	before := liveHeap()
	start := time.Now()
	const t = Timestamp(1000)
	for range 2 {
		for _, k := range keys {
			s.setRecordKey(k)
			s.RegisterEventTimeTimer(t)
		}
	}
	w.reg = time.Since(start)
	w.bytes = liveHeap() - before
	require.Equal(b, len(keys), s.event.n)
	start = time.Now()
	require.NoError(b, s.fireEvent(t))
	w.fire = time.Since(start)
	require.Zero(b, s.event.n)
	return w
}

func BenchmarkTimerScale(b *testing.B) {
	for _, n := range timerBenchSizes() {
		b.Run(fmt.Sprintf("keys=%dM", n/1_000_000), func(b *testing.B) {
			keys := make([]int64, n)
			var want int64
			for i := range keys {
				keys[i] = benchKey(i, n)
				want += keys[i]
			}
			var hand, svc timerWork
			for b.Loop() {
				var last int64 = -1
				ordered := true
				fire := func(k int64) {
					ordered = ordered && k > last
					last = k
				}
				var handSum, svcSum int64
				hand = handTimers(keys, func(k int64) { handSum += k; fire(k) })
				require.True(b, ordered, "the baseline fires in key order")
				last = -1
				svc = serviceTimers(b, keys, func(k int64) { svcSum += k; fire(k) })
				require.True(b, ordered, "the service fires in key order")
				require.Equal(b, want, handSum)
				require.Equal(b, want, svcSum)
			}
			hr, hf := hand.rates(n)
			sr, sf := svc.rates(n)
			b.ReportMetric(float64(svc.bytes)/float64(n), "B/timer")
			b.ReportMetric(float64(hand.bytes)/float64(n), "hand-B/timer")
			b.ReportMetric(sr, "reg/s")
			b.ReportMetric(sf, "fire/s")
			b.ReportMetric(hr, "hand-reg/s")
			b.ReportMetric(hf, "hand-fire/s")
			b.ReportMetric(sr/hr, "reg-vs-hand")
			b.ReportMetric(sf/hf, "fire-vs-hand")
		})
	}
}

// BenchmarkTimerRestore writes a snapshot of n timers of one time, as a
// tumbling window over n keys leaves them, and restores it into a new
// subtask: the timers' half of restoring a keyed operator.
func BenchmarkTimerRestore(b *testing.B) {
	for _, n := range timerBenchSizes() {
		b.Run(fmt.Sprintf("keys=%dM", n/1_000_000), func(b *testing.B) {
			be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
			require.NoError(b, err)
			defer be.Close()
			s := newKeyedTimers[int64](be, nil, nil, keygroup.DefaultMaxParallelism)
			for i := range n {
				s.setRecordKey(benchKey(i, n))
				s.RegisterEventTimeTimer(1000)
			}
			snap, err := s.snapshot()
			require.NoError(b, err)
			var buf bytes.Buffer
			start := time.Now()
			_, err = snap.write(context.Background(), &buf)
			require.NoError(b, err)
			writeTime := time.Since(start)
			var restore time.Duration
			for b.Loop() {
				r := newKeyedTimers[int64](be, nil, nil, keygroup.DefaultMaxParallelism)
				start := time.Now()
				require.NoError(b, r.restore(bytes.NewReader(buf.Bytes()), allGroups, allGroups))
				restore += time.Since(start)
				require.Equal(b, n, r.event.n)
			}
			b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s")
			b.ReportMetric(writeTime.Seconds(), "write-s")
			b.ReportMetric(float64(buf.Len())/float64(n), "file-B/timer")
		})
	}
}
