package jetstream_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

// runBounded runs a job reading cfg at parallelism p into a collector.
func runBounded(t *testing.T, cfg jetstream.SourceConfig[rec], p int) []memory.Record[rec] {
	t.Helper()
	job := dataflow.NewJob("jetstream-test")
	src := jetstream.Source(job, "views", cfg, dataflow.Parallelism(p))
	out := memory.Collect(src, "collect", dataflow.Parallelism(p))
	require.NoError(t, job.Run(context.Background()))
	return out.Records()
}

func byPartition(rs []memory.Record[rec]) map[string][]memory.Record[rec] {
	m := map[string][]memory.Record[rec]{}
	for _, r := range rs {
		m[r.Value.Part] = append(m[r.Value.Part], r)
	}
	return m
}

func values(rs []memory.Record[rec]) []rec {
	out := make([]rec, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}

func TestReplayFromZeroTwiceGivesIdenticalOutput(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 1000, 8)
		cfg := f.sourceConfig(8)
		first := runBounded(t, cfg, 2)
		second := runBounded(t, cfg, 2)
		require.Len(t, first, 1000)
		// Each partition's records, in order, on the same subtask. (How the
		// partitions of one subtask interleave depends on arrival timing.)
		require.Equal(t, byPartition(first), byPartition(second))
		require.Equal(t, upTo(1000), seqs(values(first)))
		for _, r := range values(first) {
			require.Equal(t, mkView(int(r.Seq-1)).N, r.N)
			require.Equal(t, f.subj(fmt.Sprintf("views.%d", r.N%8)), r.Subject)
		}
	})
}

func TestPartitionsAreSpreadRoundRobinOverSubtasks(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 400, 8)
		parts := f.partitions(8)
		for _, p := range []int{1, 2, 3} {
			rs := runBounded(t, f.sourceConfig(8), p)
			require.Equal(t, upTo(400), seqs(values(rs)), "parallelism %d", p)
			last := map[string]uint64{}
			for _, r := range rs {
				i := slices.Index(parts, r.Value.Part)
				require.GreaterOrEqual(t, i, 0)
				require.Equal(t, i%p, r.Subtask, "partition %d at parallelism %d", i, p)
				require.Equal(t, r.Value.Part, r.Value.Subject)
				require.Greater(t, r.Value.Seq, last[r.Value.Part], "stream order within a partition")
				last[r.Value.Part] = r.Value.Seq
			}
		}
	})
}

func TestBoundedStopsAtTheEndCapturedAtOpen(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 300, 0)
		// A publisher keeps publishing while the job runs: it has begun
		// before the job starts and goes on after the job ended.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var published atomic.Int64
		progress := make(chan struct{}, 1)
		pubErr := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 300; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.js.Publish(context.Background(), f.subj("views"), []byte(`{"n":1}`)); err != nil {
					pubErr <- err
					return
				}
				published.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
		next := func() {
			select {
			case <-progress:
			case err := <-pubErr:
				t.Fatalf("publisher: %v", err)
			}
		}
		next()
		rs := values(runBounded(t, f.sourceConfig(0), 1))
		for at := published.Load(); published.Load() == at; {
			next()
		}
		close(stop)
		wg.Wait()
		got := seqs(rs)
		require.GreaterOrEqual(t, len(got), 300)
		require.Equal(t, upTo(len(got)), got, "a gapless prefix of the stream")
		require.Greater(t, f.info().State.LastSeq, uint64(len(got)), "the publisher went on after the end")
	})
}
