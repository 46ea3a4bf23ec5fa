package jetstream_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

type windowCount = window.Result[int, int64]

// windowedEvent is event seq of nKeys keys with an event time of about
// 10 ms per sequence number, up to 18 ms out of order.
func windowedEvent(nKeys int) func(seq int64) event {
	return func(seq int64) event {
		return event{Key: int(seq % int64(nKeys)), Seq: seq, At: seq*10 - (seq%7)*3}
	}
}

// windowJob counts events per key in tumbling one-second windows of event
// time and publishes the counts to outPrefix.<key>. Ticks move the
// watermark and are dropped.
func windowJob(f *fixture, parts int, outPrefix string, bounded bool, cfg dataflow.Config) *dataflow.Job {
	job := dataflow.NewJob("windowed-counts", cfg)
	src := jetstream.Source(job, "in", jetstream.SourceConfig[event]{
		Conn: f.conn(), Stream: f.stream, Partitions: f.inPartitions(parts), Bounded: bounded,
		Watermarks: dataflow.BoundedOutOfOrderness(30*time.Millisecond, func(e event) time.Time { return time.UnixMilli(e.At) }),
	})
	data := operators.Filter(src, "no-ticks", func(e event) bool { return !e.Tick })
	counts := window.Aggregate(dataflow.KeyBy(data, func(e event) int { return e.Key }), "count",
		window.Tumbling(time.Second), window.Count[event]())
	jetstream.Sink(counts, "out", jetstream.SinkConfig[windowCount]{
		Conn:    f.conn(),
		Subject: func(r windowCount) string { return fmt.Sprintf("%s.%d", outPrefix, r.Key) },
	})
	return job
}

func sortCounts(rs []windowCount) []windowCount {
	slices.SortFunc(rs, func(a, b windowCount) int {
		return cmp.Or(cmp.Compare(a.Window.Start, b.Window.Start), cmp.Compare(a.Key, b.Key))
	})
	return rs
}

// TestReplayFromOffsetZeroEqualsLiveRun runs a windowed count live, reading
// while a publisher publishes, with checkpoints, until it has caught up and
// fired every window; then it stops it with a savepoint and replays the
// stream from offset zero, bounded, at another parallelism. Both give
// exactly the counts computed directly from the input.
func TestReplayFromOffsetZeroEqualsLiveRun(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		const total, nKeys, parts = 2000, 10, 4
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		mk := windowedEvent(nKeys)
		// The batch computation of the same input.
		perWindow := map[windowCount]int64{}
		for seq := range int64(total) {
			e := mk(seq)
			start := dataflow.TimestampOf(time.UnixMilli(e.At).Truncate(time.Second))
			perWindow[windowCount{Key: e.Key, Window: window.Window{Start: start, End: start + dataflow.Timestamp(time.Second)}}]++
		}
		var want []windowCount
		for r, n := range perWindow {
			r.Value = n
			want = append(want, r)
		}
		sortCounts(want)

		liveStream, livePrefix := f.outStream("live")
		st, err := checkpoint.NewLocalStorage(t.TempDir())
		require.NoError(t, err)
		live := windowJob(f, parts, livePrefix, false, dataflow.Config{
			Parallelism: 2, Checkpoint: checkpoint.Config{Interval: 10 * time.Millisecond}, CheckpointStorage: st, Logger: testLogger(t),
		})
		done := make(chan error, 1)
		go func() { done <- live.Run(ctx) }()
		require.NoError(t, live.WaitRunning(ctx))
		pub := newPublisher(t, f, parts)
		require.NoError(t, pub.publish(ctx, 0, total, 50, time.Millisecond, mk))
		// A tick per partition, an hour of event time later, fires every
		// window of the data.
		for p := range parts {
			require.NoError(t, pub.publish(ctx, total+int64(p), total+int64(p)+1, 1, 0, func(seq int64) event {
				return event{Key: p, Seq: seq, At: (total + 3600_000) * 10, Tick: true}
			}))
		}
		eventually(t, 20*time.Second, func() bool {
			info, err := f.js.Stream(ctx, liveStream)
			return err == nil && info.CachedInfo().State.Msgs >= uint64(len(want))
		}, func() string {
			return fmt.Sprintf("the live job publishes every window's count (checkpoints %+v)", live.Metrics().Checkpoints)
		})
		sp, err := checkpoint.NewLocalStorage(t.TempDir())
		require.NoError(t, err)
		_, err = live.StopWithSavepoint(ctx, sp)
		require.NoError(t, err)
		require.NoError(t, <-done)
		gotLive := sortCounts(decodeAll[windowCount](t, readStream(t, f.js, liveStream)))
		require.Equal(t, want, gotLive, "the live run")

		replayStream, replayPrefix := f.outStream("replay")
		replay := windowJob(f, parts, replayPrefix, true, dataflow.Config{Parallelism: 3, Logger: testLogger(t)})
		require.NoError(t, replay.Run(ctx))
		gotReplay := sortCounts(decodeAll[windowCount](t, readStream(t, f.js, replayStream)))
		require.Equal(t, gotLive, gotReplay, "the replay from offset zero")
	})
}
