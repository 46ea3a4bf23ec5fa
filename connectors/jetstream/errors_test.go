package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/dataflow"
)

// openErr opens a subtask of cfg and returns the error of Open.
func openErr[T any](t *testing.T, cfg jetstream.SourceConfig[T]) error {
	t.Helper()
	src, err := jetstream.NewSource(cfg)
	require.NoError(t, err)
	oc := &dataflow.OperatorContext{Job: "test", Operator: "src", Parallelism: 1, MaxParallelism: 128}
	err = src.Open(context.Background(), oc)
	require.NoError(t, src.Close())
	require.Error(t, err)
	return err
}

func TestUnreachableServer(t *testing.T) {
	srv := newEmbedded(t)
	url := srv.URL()
	srv.Shutdown()
	err := openErr(t, jetstream.SourceConfig[rec]{Conn: jetstream.ConnConfig{URL: url, ConnectTimeout: time.Second}, Stream: "VIEWS"})
	require.ErrorIs(t, err, jetstream.ErrConnect)
	require.ErrorContains(t, err, "stream VIEWS: jetstream: cannot connect to "+url)
}

func TestWrongCredentials(t *testing.T) {
	srv := newEmbedded(t, embedded.Config{User: "sluice", Password: "secret"})
	for _, c := range []jetstream.ConnConfig{
		{URL: srv.URL(), User: "sluice", Password: "wrong"},
		{URL: srv.URL()},
		{URL: srv.URL(), Token: "nope"},
	} {
		err := openErr(t, jetstream.SourceConfig[rec]{Conn: c, Stream: "VIEWS"})
		require.ErrorIs(t, err, jetstream.ErrConnect)
		require.ErrorContains(t, err, "cannot connect to "+srv.URL())
		require.ErrorContains(t, err, "Authorization Violation")
	}
	// The right password gets as far as the (missing) stream.
	err := openErr(t, jetstream.SourceConfig[rec]{Conn: jetstream.ConnConfig{URL: srv.URL(), User: "sluice", Password: "secret"}, Stream: "VIEWS"})
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
}

func TestConnectConfigErrors(t *testing.T) {
	_, err := jetstream.Connect(context.Background(), jetstream.ConnConfig{URL: "nats://127.0.0.1:1", User: "a", Token: "b"})
	require.ErrorIs(t, err, jetstream.ErrConfig)
	_, err = jetstream.Connect(context.Background(), jetstream.ConnConfig{URL: "tls://127.0.0.1:1", TLS: jetstream.TLSConfig{CAFile: "/does/not/exist.pem"}})
	require.ErrorIs(t, err, jetstream.ErrConnect)
	require.ErrorContains(t, err, "to tls://127.0.0.1:1: TLS CA file")
	_, err = jetstream.Connect(context.Background(), jetstream.ConnConfig{URL: "nats://127.0.0.1:1", CredsFile: "/does/not/exist.creds"})
	require.ErrorContains(t, err, "to nats://127.0.0.1:1: credentials file")
}

func TestOpenErrors(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 10, 2)

		cfg := f.sourceConfig(0)
		cfg.Stream = "NO_SUCH_" + f.stream
		err := openErr(t, cfg)
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		require.ErrorContains(t, err, fmt.Sprintf("stream %s on %s", cfg.Stream, f.url))

		cfg = f.sourceConfig(0)
		cfg.Partitions = []string{f.subj("views.0"), "elsewhere.>"}
		err = openErr(t, cfg)
		require.ErrorIs(t, err, jetstream.ErrNoSubjectMatch)
		require.ErrorContains(t, err, fmt.Sprintf(`stream %s on %s: partition "elsewhere.>" matches none of the stream's subjects [%s.>]`, f.stream, f.url, f.prefix))

		cfg = f.sourceConfig(0)
		cfg.Start = jetstream.Sequence(12)
		err = openErr(t, cfg)
		require.ErrorIs(t, err, jetstream.ErrStartPosition)
		require.ErrorContains(t, err, "start sequence 12 is beyond the end of the stream (last seq 10)")

		// The sequence just after the end is fine: the next message.
		cfg.Start, cfg.Bounded = jetstream.Sequence(11), false
		o := openSource(t, cfg, 0, 1, nil)
		f.publishViews(10, 11, 2)
		o.pollUntil(t, func() bool { return len(o.out.vals) == 1 })
		require.Equal(t, uint64(11), o.out.vals[0].Seq)

		// A restored position beyond the end of the stream.
		b, err := msgpackState(f.stream, map[string]uint64{">": 99})
		require.NoError(t, err)
		src, err := jetstream.NewSource(f.sourceConfig(0))
		require.NoError(t, err)
		err = src.Open(context.Background(), &dataflow.OperatorContext{Parallelism: 1, Restored: &dataflow.RestoredState{CheckpointID: 3, Subtasks: [][]byte{b}}})
		require.NoError(t, src.Close())
		require.ErrorIs(t, err, jetstream.ErrStartPosition)
		require.ErrorContains(t, err, "checkpoint has partition > at seq 99, but the stream ends at seq 11")

		// Offsets of another stream.
		b, err = msgpackState("OTHER", map[string]uint64{">": 1})
		require.NoError(t, err)
		src, err = jetstream.NewSource(f.sourceConfig(0))
		require.NoError(t, err)
		err = src.Open(context.Background(), &dataflow.OperatorContext{Parallelism: 1, Restored: &dataflow.RestoredState{CheckpointID: 3, Subtasks: [][]byte{b}}})
		require.NoError(t, src.Close())
		require.ErrorContains(t, err, "checkpoint 3 holds offsets of stream OTHER, but the source reads stream "+f.stream)
	})
}

func TestStreamDeletedWhileReading(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 100, 2)
		cfg := f.sourceConfig(2)
		cfg.Bounded = false
		o := openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return len(o.out.vals) == 100 })
		require.NoError(t, f.js.DeleteStream(context.Background(), f.stream))
		err := o.pollErr(t)
		require.ErrorIs(t, err, jetstream.ErrStreamDeleted)
		require.ErrorContains(t, err, fmt.Sprintf("stream %s on %s was deleted while partition %s", f.stream, f.url, f.subj("views.")))
	})
}

func TestPurgedBelowCheckpointFails(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 100, 2)
		cfg := f.sourceConfig(2)
		cfg.Bounded = false
		cfg.PollBatch = 10
		o := openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return len(o.out.vals) >= 30 })
		snap := snapshot(t, o)
		require.NoError(t, o.src.Close())

		s, err := f.js.Stream(context.Background(), f.stream)
		require.NoError(t, err)
		require.NoError(t, s.Purge(context.Background()))
		f.publishViews(100, 120, 2)

		o = openSource(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{snap}})
		err = o.pollErr(t)
		require.ErrorIs(t, err, jetstream.ErrPurged)
		require.Empty(t, o.out.vals, "nothing after the purge is emitted")
		require.Regexp(t, fmt.Sprintf(`stream %s purged: partition %s\.[01] was at seq \d+ \(next \d+\) but the stream now starts at seq 101`, f.stream, f.subj("views")), err.Error())
	})
}

func TestGapsOfOtherSubjectsAreNotPurges(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		// Partition views.0 sees every other sequence: gaps that are fine,
		// also at the first delivery after a restore.
		f.publishViews(0, 40, 2)
		cfg := f.sourceConfig(0)
		cfg.Partitions = []string{f.subj("views.0")}
		cfg.Bounded = false
		cfg.PollBatch = 5
		o := openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return len(o.out.vals) >= 5 })
		snap := snapshot(t, o)
		seen := len(o.out.vals)
		require.NoError(t, o.src.Close())
		cfg.Bounded = true
		o = openSource(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{snap}})
		o.pollUntil(t, func() bool { return false })
		require.Len(t, o.out.vals, 20-seen)
	})
}
