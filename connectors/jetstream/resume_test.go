package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

// readAll polls every subtask to end of input and returns their records.
func readAll(t *testing.T, subs []*opened[rec]) []rec {
	t.Helper()
	var out []rec
	for _, o := range subs {
		o.pollUntil(t, func() bool { return false })
		out = append(out, o.out.vals...)
	}
	return out
}

func TestResumeFromSnapshotLosesAndDuplicatesNothing(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 800, 8)
		cfg := f.sourceConfig(8)
		cfg.Bounded = false
		cfg.PollBatch = 50

		// First run at parallelism 2: read part of the stream, snapshot.
		var before []rec
		var snaps [][]byte
		for sub := range 2 {
			o := openSource(t, cfg, sub, 2, nil)
			o.pollUntil(t, func() bool { return len(o.out.vals) >= 150 })
			snaps = append(snaps, snapshot(t, o))
			before = append(before, o.out.vals...)
			require.NoError(t, o.src.Close())
		}
		f.publishViews(800, 1200, 8)
		if f.srv != nil {
			require.NoError(t, f.srv.Restart())
		}

		// Second run at parallelism 3 (and again at 1), bounded, restored.
		for _, p := range []int{3, 1} {
			restored := &dataflow.RestoredState{CheckpointID: 1, Subtasks: snaps}
			bounded := f.sourceConfig(8)
			var subs []*opened[rec]
			for sub := range p {
				subs = append(subs, openSource(t, bounded, sub, p, restored))
			}
			after := readAll(t, subs)
			all := append(append([]rec(nil), before...), after...)
			require.Equal(t, upTo(1200), seqs(all), "parallelism 2 -> %d: every message exactly once", p)
			for _, o := range subs {
				require.NoError(t, o.src.Close())
			}
		}
	})
}

func TestSourceSurvivesServerRestartWhileReading(t *testing.T) {
	srv := newEmbedded(t)
	f := newFixture(t, "embedded", srv.URL(), srv)
	f.publishViews(0, 500, 4)
	cfg := f.sourceConfig(4)
	cfg.Bounded = false
	cfg.PollBatch = 64
	o := openSource(t, cfg, 0, 1, nil)
	o.pollUntil(t, func() bool { return len(o.out.vals) >= 200 })
	require.NoError(t, srv.Restart())
	// The test's own connection comes back too before it publishes (a
	// publish while it reconnects fails).
	require.Eventually(t, func() bool {
		_, err := f.js.Stream(context.Background(), f.stream)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	f.publishViews(500, 700, 4)
	o.pollUntil(t, func() bool { return len(o.out.vals) >= 700 })
	require.Equal(t, upTo(700), seqs(o.out.vals))
	// Nothing more comes: no duplicate is on its way.
	st, err := o.src.Poll(context.Background(), &o.out)
	require.NoError(t, err)
	require.Equal(t, dataflow.NothingAvailable, st)
	require.Len(t, o.out.vals, 700)
}
