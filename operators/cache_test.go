package operators_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

// The keyed Reduce and Aggregate keep their keys' values in memory between
// checkpoints. A savepoint taken halfway, restored at another parallelism,
// holds them: each key's running count and sum go on where they were, and
// every running value is emitted once. With the default cache, one that
// overflows (a 1-key cache grows in place to its largest, 16 keys, which
// at parallelism 2 cannot hold the 37 keys' share of at least one subtask:
// that cache turns itself off), and none.
func TestKeyedRunningValuesSurviveASavepoint(t *testing.T) {
	const total, keys = 4000, 37
	type rec struct {
		Key string
		V   int64
	}
	gen := func(seq int64) rec { return rec{Key: fmt.Sprint("k", seq%keys), V: seq} }
	for _, cache := range []int{1 << 16, 1, 0} {
		t.Run(fmt.Sprint("cache ", cache), func(t *testing.T) {
			defer operators.SetMaxCachedKeys(cache)()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			build := func(cfg dataflow.Config, hold func(int64) bool) (*dataflow.Job, *memory.Collector[dataflow.KV[string, int64]], *memory.Collector[rec]) {
				job := dataflow.NewJob("running", cfg)
				src := memory.Generator(job, "gen", memory.GeneratorConfig[rec]{Count: total, Generate: gen, Hold: hold})
				keyed := dataflow.KeyBy(src, func(r rec) string { return r.Key })
				counts := memory.Collect(operators.Aggregate(keyed, "count", operators.Count[rec]()), "counts")
				sums := memory.Collect(operators.Reduce(keyed, "sum", func(a, b rec) rec { return rec{a.Key, a.V + b.V} }), "sums")
				return job, counts, sums
			}
			spDir := t.TempDir()
			sp, err := checkpoint.NewLocalStorage(spDir)
			require.NoError(t, err)
			// The first job holds its input at the half; a savepoint then
			// covers exactly the records before it.
			var once [2]sync.Once // per subtask: subtask i makes the sequences i, i+2, ...
			held := make(chan struct{}, 2)
			jobA, _, _ := build(dataflow.Config{Parallelism: 2}, func(seq int64) bool {
				if seq >= total/2 {
					once[seq%2].Do(func() { held <- struct{}{} })
					return true
				}
				return false
			})
			ctxA, cancelA := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- jobA.Run(ctxA) }()
			for range 2 { // both subtasks reached the half
				select {
				case <-held:
				case err := <-done:
					t.Fatalf("job ended before the savepoint: %v", err)
				}
			}
			_, err = jobA.Savepoint(ctx, sp)
			require.NoError(t, err)
			cancelA()
			require.ErrorIs(t, <-done, context.Canceled)

			from, err := checkpoint.OpenLocalStorage(spDir)
			require.NoError(t, err)
			jobB, counts, sums := build(dataflow.Config{Parallelism: 3, RestoreFrom: from}, nil)
			require.NoError(t, jobB.Run(ctx))

			// Each key's running count goes on after the records before the
			// half, and takes each value up to its total once.
			byKey := map[string][]int64{}
			for _, kv := range counts.Values() {
				byKey[kv.Key] = append(byKey[kv.Key], kv.Value)
			}
			require.Len(t, byKey, keys)
			for k := range int64(keys) {
				var before, all int64
				for seq := k; seq < total; seq += keys {
					if seq < total/2 {
						before++
					}
					all++
				}
				got := byKey[fmt.Sprint("k", k)]
				slices.Sort(got)
				require.Len(t, got, int(all-before), "key k%d", k)
				for i, c := range got {
					require.Equal(t, before+int64(i)+1, c, "key k%d: running counts %v", k, got)
				}
			}
			// The last sum of each key is the sum of all its values.
			last := map[string]int64{}
			for _, r := range sums.Values() {
				last[r.Key] = max(last[r.Key], r.V)
			}
			for k := range int64(keys) {
				var want int64
				for seq := k; seq < total; seq += keys {
					want += seq
				}
				require.Equal(t, want, last[fmt.Sprint("k", k)], "key k%d", k)
			}
		})
	}
}

// Over more keys than the CPU caches hold, Reduce and Aggregate prefetch
// their cache entries per batch of records (dataflow.Prefetcher): every
// running value is still the one of a plain count and sum, in order per
// key, chained (p1) and behind the keyed exchange (p2).
func TestKeyedRunningValuesWithPrefetch(t *testing.T) {
	const total, keys = 300_000, 100_000
	type rec struct{ Key, V int64 }
	for _, p := range []int{1, 2} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			job := dataflow.NewJob("running", dataflow.Config{Parallelism: p})
			src := memory.Generator(job, "gen", memory.GeneratorConfig[rec]{Count: total, Generate: func(seq int64) rec { return rec{seq * 7919 % keys, seq} }})
			keyed := dataflow.KeyBy(src, func(r rec) int64 { return r.Key })
			counts := memory.Collect(operators.Aggregate(keyed, "count", operators.Count[rec]()), "counts")
			sums := memory.Collect(operators.Reduce(keyed, "sum", func(a, b rec) rec { return rec{a.Key, a.V + b.V} }), "sums")
			require.NoError(t, job.Run(context.Background()))
			n := map[int64]int64{}
			for _, r := range counts.Records() {
				n[r.Value.Key]++
				require.Equal(t, n[r.Value.Key], r.Value.Value, "key %d: counts in order", r.Value.Key)
			}
			require.Len(t, n, keys)
			sum := map[int64]int64{}
			want := map[int64][]int64{}
			for seq := int64(0); seq < total; seq++ {
				k := seq * 7919 % keys
				sum[k] += seq
				want[k] = append(want[k], sum[k])
			}
			got := map[int64][]int64{}
			for _, r := range sums.Records() {
				got[r.Value.Key] = append(got[r.Value.Key], r.Value.V)
			}
			require.Equal(t, want, got)
		})
	}
}
