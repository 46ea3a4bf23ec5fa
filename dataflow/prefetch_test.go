package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

// prefetchOp checks the Prefetcher and KeyPrefetcher contracts: Process
// takes exactly the records of the last Prefetch, in order, with nothing in
// between; OnTimer the keys of the last PrefetchKeys. It counts per key
// and window of 100 ms (an event-time timer per key and window).
type prefetchOp struct {
	dataflow.OperatorBase
	out    dataflow.Output[string]
	timers dataflow.TimerService
	counts map[[2]int64]int
	// the batch Process is consuming, and the next record of it
	batch []event
	next  int
	keys  []int64 // the same for timers
	nextK int
	// what the runtime gave
	batches, keyBatches, maxBatch int
	stats                         *prefetchStats
	failAt                        int64 // Seq that fails in Process (-1: none)
}

type prefetchStats struct {
	mu                           sync.Mutex
	batches, keyBatches, largest int
}

func (o *prefetchOp) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	o.timers, o.counts = oc.Timers(), map[[2]int64]int{}
	return nil
}

func (o *prefetchOp) busy() error {
	if o.next < len(o.batch) {
		return fmt.Errorf("called with %d records of a prefetched batch not processed", len(o.batch)-o.next)
	}
	if o.nextK < len(o.keys) {
		return fmt.Errorf("called with %d prefetched timer keys not fired", len(o.keys)-o.nextK)
	}
	return nil
}

func (o *prefetchOp) Prefetch(es []event) {
	if err := o.busy(); err != nil {
		panic("Prefetch " + err.Error())
	}
	o.batch, o.next = slices.Clone(es), 0
	o.batches++
	o.maxBatch = max(o.maxBatch, len(es))
}

func (o *prefetchOp) PrefetchKeys(keys []int64) {
	if err := o.busy(); err != nil {
		panic("PrefetchKeys " + err.Error())
	}
	o.keys, o.nextK = slices.Clone(keys), 0
	o.keyBatches++
}

func (o *prefetchOp) Process(e event, ts dataflow.Timestamp) error {
	if o.next == len(o.batch) {
		return errors.New("Process without Prefetch")
	}
	if want := o.batch[o.next]; e != want {
		return fmt.Errorf("Process got %v, the prefetched batch has %v next", e, want)
	}
	o.next++
	if e.Seq == o.failAt {
		return fmt.Errorf("record %d fails", e.Seq)
	}
	w := int64(ts) / int64(100*time.Millisecond)
	o.counts[[2]int64{e.Key, w}]++
	o.timers.RegisterEventTimeTimer(dataflow.Timestamp((w+1)*int64(100*time.Millisecond) - 1))
	return nil
}

func (o *prefetchOp) OnTimer(key int64, tm dataflow.Timer) error {
	if o.next < len(o.batch) {
		return errors.New("a timer fired inside a prefetched batch")
	}
	if o.nextK == len(o.keys) {
		return errors.New("OnTimer without PrefetchKeys")
	}
	if want := o.keys[o.nextK]; key != want {
		return fmt.Errorf("OnTimer got key %d, PrefetchKeys has %d next", key, want)
	}
	o.nextK++
	w := (int64(tm.Time) + 1) / int64(100*time.Millisecond)
	k := [2]int64{key, w - 1}
	o.out.Collect(fmt.Sprintf("%d@%d=%d", key, w-1, o.counts[k]), tm.Time)
	delete(o.counts, k)
	return nil
}

func (o *prefetchOp) ProcessWatermark(dataflow.Timestamp) error { return o.busy() }

func (o *prefetchOp) Finish(context.Context) error {
	if err := o.busy(); err != nil {
		return err
	}
	o.stats.mu.Lock()
	defer o.stats.mu.Unlock()
	o.stats.batches += o.batches
	o.stats.keyBatches += o.keyBatches
	o.stats.largest = max(o.stats.largest, o.maxBatch)
	return nil
}

func prefetchJob(p int, n int64, failAt int64, stats *prefetchStats) (*dataflow.Job, *memory.Collector[string]) {
	job := dataflow.NewJob("prefetch", dataflow.Config{Parallelism: p, BatchSize: 300})
	src := memory.Generator(job, "gen", memory.GeneratorConfig[event]{
		Count:      n,
		Generate:   func(s int64) event { return event{Key: s * 7 % 500, Seq: s} },
		Watermarks: dataflow.Monotonic(func(e event) time.Time { return time.UnixMilli(e.Seq) }),
	})
	ks := dataflow.KeyBy(src, func(e event) int64 { return e.Key })
	res := dataflow.AddKeyedOperator(ks, "count", func(out dataflow.Output[string]) dataflow.Operator[event] {
		return &prefetchOp{out: out, stats: stats, failAt: failAt}
	})
	return job, memory.Collect(res, "sink", dataflow.Parallelism(1))
}

// A keyed operator that prefetches gets its records in batches, chained
// (p1) and from the keyed exchange (p2), each batch processed whole before
// anything else reaches it, and its timers' keys before they fire; the
// results are those of a plain count.
func TestPrefetcherGetsWholeBatchesInOrder(t *testing.T) {
	const n = 20_000
	want := map[string]bool{}
	counts := map[[2]int64]int{}
	for s := int64(0); s < n; s++ {
		counts[[2]int64{s * 7 % 500, s / 100}]++
	}
	for k, c := range counts {
		want[fmt.Sprintf("%d@%d=%d", k[0], k[1], c)] = true
	}
	for _, p := range []int{1, 2} {
		t.Run(fmt.Sprintf("p%d", p), func(t *testing.T) {
			stats := &prefetchStats{}
			job, col := prefetchJob(p, n, -1, stats)
			require.NoError(t, job.Run(context.Background()))
			got := map[string]bool{}
			for _, v := range col.Values() {
				require.False(t, got[v], "%s twice", v)
				got[v] = true
			}
			require.Equal(t, want, got)
			require.Greater(t, stats.largest, 1, "records came in batches")
			require.LessOrEqual(t, stats.largest, 1024)
			require.Less(t, stats.batches, n/10, "batches of more than 10 records on average")
			require.Greater(t, stats.keyBatches, 0)
		})
	}
}

// A record that fails inside a batch is named by the source's position and
// how far before it the record came.
func TestPrefetcherFailurePositionCountsBack(t *testing.T) {
	const failAt = 5
	job, _ := prefetchJob(1, 2000, failAt, &prefetchStats{})
	err := job.Run(context.Background())
	require.ErrorContains(t, err, "record 5 fails")
	m := regexp.MustCompile(`generator seq (\d+) \(the failing record came (\d+) records before it`).FindStringSubmatch(err.Error())
	require.NotNil(t, m, "position in %q", err)
	seq, _ := strconv.Atoi(m[1])
	back, _ := strconv.Atoi(m[2])
	require.Equal(t, failAt, seq-back, "the position counted back is the failing record's")
}
