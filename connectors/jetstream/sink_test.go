package jetstream_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

// streamMsgs returns the payloads and message ids stored in the stream.
func (f *fixture) streamMsgs() (data, ids []string) {
	f.t.Helper()
	s, err := f.js.Stream(context.Background(), f.stream)
	require.NoError(f.t, err)
	info, err := s.Info(context.Background())
	require.NoError(f.t, err)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		require.NoError(f.t, err)
		data = append(data, string(m.Data))
		ids = append(ids, nats.Header(m.Header).Get(nats.MsgIdHdr))
	}
	return data, ids
}

func (f *fixture) sinkConfig() jetstream.SinkConfig[view] {
	return jetstream.SinkConfig[view]{
		Conn:    f.conn(),
		Subject: func(v view) string { return f.subj(fmt.Sprintf("out.%s", v.Video)) },
		Encode:  func(v view) ([]byte, error) { return []byte(fmt.Sprint(v.N)), nil },
	}
}

func TestSinkCommitPublishesWithMessageIdsOnce(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		c := jetstream.NewCommitter(f.sinkConfig())
		require.NoError(t, c.Open(ctx, &dataflow.OperatorContext{Job: "job", Operator: "out", Subtask: 2, Parallelism: 3}))
		defer c.Close()

		txn, err := c.Begin(ctx)
		require.NoError(t, err)
		for n := range 5 {
			require.NoError(t, c.Write(ctx, txn, mkView(n), dataflow.NoTimestamp))
		}
		prepared, err := c.Prepare(ctx, txn)
		require.NoError(t, err)
		data, _ := f.streamMsgs()
		require.Empty(t, data, "nothing is visible before the commit")

		require.NoError(t, c.Commit(ctx, prepared))
		data, ids := f.streamMsgs()
		require.Equal(t, []string{"0", "1", "2", "3", "4"}, data)
		require.Regexp(t, `^job/out/2/[A-Za-z0-9]+-1/0$`, ids[0])
		for i, id := range ids {
			require.Equal(t, fmt.Sprintf("%s/%d", prepared.ID, i), id)
		}

		// Committed again (a restore after a crash): no duplicates.
		require.NoError(t, c.Commit(ctx, prepared))
		data, _ = f.streamMsgs()
		require.Len(t, data, 5)

		// Aborted: nothing published, and the next one gets another id.
		txn2, err := c.Begin(ctx)
		require.NoError(t, err)
		require.NotEqual(t, prepared.ID, txn2.ID)
		require.NoError(t, c.Write(ctx, txn2, mkView(9), dataflow.NoTimestamp))
		require.NoError(t, c.Abort(ctx, txn2))
		require.NoError(t, c.Commit(ctx, txn2), "an aborted transaction has nothing left")
		data, _ = f.streamMsgs()
		require.Len(t, data, 5)
	})
}

func TestSinkRestoredPreparedTransactionIsCommittedOnce(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		newSink := dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[view, *jetstream.Txn] {
			return jetstream.NewCommitter(f.sinkConfig())
		})
		oc := &dataflow.OperatorContext{Job: "job", Operator: "out", Parallelism: 1}
		op := newSink()
		require.NoError(t, op.Open(ctx, oc))
		for n := range 3 {
			require.NoError(t, op.Process(mkView(n), dataflow.NoTimestamp))
		}
		snap, err := op.(dataflow.Snapshotter).SnapshotState(ctx, 7)
		require.NoError(t, err)
		require.NoError(t, op.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, 7))
		require.NoError(t, op.Process(mkView(3), dataflow.NoTimestamp)) // after the checkpoint: never committed
		require.NoError(t, op.Close())
		data, _ := f.streamMsgs()
		require.Equal(t, []string{"0", "1", "2"}, data)

		// The job crashed before it knew checkpoint 7 was committed: the
		// restored sink commits it again, twice here, without duplicates.
		for range 2 {
			op := newSink()
			require.NoError(t, op.Open(ctx, &dataflow.OperatorContext{Job: "job", Operator: "out", Parallelism: 1, Restored: &dataflow.RestoredState{CheckpointID: 7, Subtasks: [][]byte{snap}}}))
			require.NoError(t, op.Close())
		}
		data, _ = f.streamMsgs()
		require.Equal(t, []string{"0", "1", "2"}, data)
	})
}

func TestSinkErrors(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		cfg := f.sinkConfig()
		cfg.Subject = func(v view) string {
			if v.N == 1 {
				return "nowhere_" + f.prefix // no stream takes it
			}
			return f.subj("out")
		}
		cfg.MaxTxnBytes = 8
		c := jetstream.NewCommitter(cfg)
		require.NoError(t, c.Open(ctx, &dataflow.OperatorContext{Job: "job", Operator: "out", Parallelism: 1}))
		defer c.Close()
		txn, err := c.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, c.Write(ctx, txn, mkView(0), dataflow.NoTimestamp))
		require.NoError(t, c.Write(ctx, txn, mkView(1), dataflow.NoTimestamp))
		err = c.Commit(ctx, txn)
		require.ErrorIs(t, err, jetstream.ErrPublish)
		require.ErrorContains(t, err, fmt.Sprintf("message 1 to subject nowhere_%s on %s", f.prefix, f.url))
		require.ErrorIs(t, err, njs.ErrNoStreamResponse)

		big := mkView(123456789)
		err = c.Write(ctx, txn, big, dataflow.NoTimestamp)
		require.ErrorContains(t, err, "would hold more than MaxTxnBytes=8 bytes (2 messages)")

		cfg.Subject = func(view) string { return "a.*" }
		c2 := jetstream.NewCommitter(cfg)
		require.NoError(t, c2.Open(ctx, &dataflow.OperatorContext{Job: "job", Operator: "out", Parallelism: 1}))
		defer c2.Close()
		txn, err = c2.Begin(ctx)
		require.NoError(t, err)
		require.ErrorContains(t, c2.Write(ctx, txn, big, dataflow.NoTimestamp), `sink subject "a.*" of a record is empty or not a literal subject`)
	})
}

func TestSinkConfigErrorsAreBuildErrors(t *testing.T) {
	job := dataflow.NewJob("bad-sink")
	src := jetstream.Source(job, "in", jetstream.SourceConfig[view]{Conn: jetstream.ConnConfig{URL: "nats://127.0.0.1:1"}, Stream: "S"})
	jetstream.Sink(src, "out", jetstream.SinkConfig[view]{Conn: jetstream.ConnConfig{URL: "nats://127.0.0.1:1"}})
	err := job.Validate()
	require.ErrorIs(t, err, jetstream.ErrConfig)
	require.ErrorContains(t, err, `operator "out": jetstream: invalid configuration: sink has no Subject function`)
}

func TestSinkInAJobPublishesEveryRecordOnce(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		views := make([]view, 100)
		for i := range views {
			views[i] = mkView(i)
		}
		job := dataflow.NewJob("sink-job")
		src := memory.FromSlice(job, "views", views, dataflow.Parallelism(2))
		jetstream.Sink(src, "out", f.sinkConfig(), dataflow.Parallelism(2))
		require.NoError(t, job.Run(context.Background()))
		data, ids := f.streamMsgs()
		require.Len(t, data, 100)
		got := map[string]bool{}
		for _, d := range data {
			got[d] = true
		}
		require.Len(t, got, 100)
		for _, id := range ids {
			require.Regexp(t, `^sink-job/out/[01]/[A-Za-z0-9]+-\d+/\d+$`, id)
		}
	})
}
