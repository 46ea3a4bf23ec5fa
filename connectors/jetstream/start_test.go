package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
)

func TestStartPositions(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 50, 2)
		s, err := f.js.Stream(context.Background(), f.stream)
		require.NoError(t, err)
		m, err := s.GetMsg(context.Background(), 31)
		require.NoError(t, err)
		at := m.Time
		var fromTime []uint64 // every message stored at or after at
		for seq := uint64(1); seq <= 50; seq++ {
			m, err := s.GetMsg(context.Background(), seq)
			require.NoError(t, err)
			if !m.Time.Before(at) {
				fromTime = append(fromTime, seq)
			}
		}

		read := func(start jetstream.StartPosition, parts int) []uint64 {
			cfg := f.sourceConfig(parts)
			cfg.Start = start
			o := openSource(t, cfg, 0, 1, nil)
			o.pollUntil(t, func() bool { return false })
			require.True(t, o.eoi)
			return seqs(o.out.vals)
		}
		for _, parts := range []int{0, 2} {
			require.Equal(t, upTo(50), read(jetstream.Earliest(), parts))
			require.Equal(t, upTo(50)[19:], read(jetstream.Sequence(20), parts))
			require.Equal(t, fromTime, read(jetstream.Time(at), parts))
			require.Empty(t, read(jetstream.Time(time.Now().Add(time.Hour)), parts))
			require.Empty(t, read(jetstream.Latest(), parts), "bounded from the latest: nothing")
		}

		// Latest, unbounded: only what comes after Open.
		cfg := f.sourceConfig(2)
		cfg.Start, cfg.Bounded = jetstream.Latest(), false
		o := openSource(t, cfg, 0, 1, nil)
		f.publishViews(50, 60, 2)
		o.pollUntil(t, func() bool { return len(o.out.vals) == 10 })
		require.Equal(t, upTo(60)[50:], seqs(o.out.vals))
		// Restored, Latest is forgotten: the job goes on from its position.
		snap := snapshot(t, o)
		f.publishViews(60, 65, 2)
		cfg.Bounded = true
		o = openSource(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{snap}})
		o.pollUntil(t, func() bool { return false })
		require.Equal(t, upTo(65)[60:], seqs(o.out.vals))
	})
}

func TestUnreadPartitionIsCheckpointedAtItsStart(t *testing.T) {
	for name, start := range map[string]jetstream.StartPosition{"earliest": jetstream.Earliest(), "time": jetstream.Time(time.Now().Add(-time.Hour))} {
		t.Run(name, func(t *testing.T) {
			eachServer(t, func(t *testing.T, f *fixture) {
				f.publishViews(0, 1, 2) // seq 1 on views.0
				cfg := f.sourceConfig(2)
				cfg.Bounded, cfg.Start = false, start
				o := openSource(t, cfg, 0, 1, nil)
				o.pollUntil(t, func() bool { return len(o.out.vals) >= 1 })
				// views.1 had no message: it is checkpointed where it started.
				snap := snapshot(t, o)
				require.NoError(t, o.src.Close())
				f.publishViews(1, 2, 2) // seq 2 on views.1 is removed before it was read
				s, err := f.js.Stream(context.Background(), f.stream)
				require.NoError(t, err)
				require.NoError(t, s.Purge(context.Background()))
				f.publishViews(3, 4, 2) // seq 3 on views.1
				cfg.Bounded = true
				o = openSource(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{snap}})
				err = o.pollErr(t)
				require.ErrorIs(t, err, jetstream.ErrPurged)
				require.ErrorContains(t, err, "partition "+f.subj("views.1")+" was at seq 0 (next 1) but the stream now starts at seq 3")
			})
		})
	}
}

func TestParseStartPosition(t *testing.T) {
	for in, want := range map[string]string{"": "earliest", "earliest": "earliest", "latest": "latest", "seq:42": "seq:42", "time:2026-01-02T03:04:05Z": "time:2026-01-02T03:04:05Z"} {
		p, err := jetstream.ParseStartPosition(in)
		require.NoError(t, err, in)
		require.Equal(t, want, p.String())
	}
	for _, in := range []string{"seq:0", "seq:x", "time:yesterday", "first"} {
		_, err := jetstream.ParseStartPosition(in)
		require.ErrorIs(t, err, jetstream.ErrConfig, in)
	}
}

func TestEventTimeFromRecordHeaderAndMessage(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.publishViews(0, 20, 2)
		// One message with an event-time header, in milliseconds and RFC 3339.
		hdrAt := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		for _, v := range []string{"1777636800000", hdrAt.Format(time.RFC3339Nano)} {
			m := nats.NewMsg(f.subj("views.0"))
			m.Data = []byte(`{"n":99}`)
			m.Header.Set("Event-Time", v)
			_, err := f.js.PublishMsg(context.Background(), m)
			require.NoError(t, err)
		}

		// From the record, per partition, bounded out-of-orderness.
		cfg := f.sourceConfig(2)
		cfg.Decode = recDecoder
		cfg.Watermarks = dataflow.BoundedOutOfOrderness(time.Second, func(r rec) time.Time { return r.At })
		o := openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return false })
		require.Len(t, o.out.vals, 22)
		for i, r := range o.out.vals[:20] {
			require.Equal(t, dataflow.TimestampOf(r.At), o.out.ts[i])
		}
		require.NotEmpty(t, o.out.wms)
		// The minimum over both partitions: views.0's last record (n=99)
		// has At zero, so its watermark stays at that of n=18.
		require.Equal(t, dataflow.TimestampOf(mkView(18).At)-dataflow.Timestamp(time.Second)-1, o.out.wms[len(o.out.wms)-1])

		// From a header.
		cfg = f.sourceConfig(0)
		cfg.Start = jetstream.Sequence(21)
		cfg.MessageTime = &jetstream.MessageTime{Header: "Event-Time"}
		o = openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return false })
		require.Equal(t, []dataflow.Timestamp{dataflow.TimestampOf(hdrAt), dataflow.TimestampOf(hdrAt)}, o.out.ts)

		// A missing header is a decode failure.
		cfg.Start = jetstream.Sequence(20)
		o = openSource(t, cfg, 0, 1, nil)
		err := o.pollErr(t)
		require.ErrorIs(t, err, jetstream.ErrDecode)
		require.ErrorContains(t, err, "seq 20: event-time header Event-Time: missing")

		// From the stream's timestamps.
		s, err := f.js.Stream(context.Background(), f.stream)
		require.NoError(t, err)
		cfg.Start = jetstream.Earliest()
		cfg.MessageTime = &jetstream.MessageTime{MaxOutOfOrderness: time.Millisecond}
		o = openSource(t, cfg, 0, 1, nil)
		o.pollUntil(t, func() bool { return false })
		require.Len(t, o.out.ts, 22)
		for i, r := range o.out.vals {
			m, err := s.GetMsg(context.Background(), r.Seq)
			require.NoError(t, err)
			require.Equal(t, dataflow.TimestampOf(m.Time), o.out.ts[i])
		}
	})
}

func TestIdlePartitionStopsHoldingTheWatermark(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		// views.1 never gets a record: without idleness it would hold the
		// watermark at its minimum for ever. views.0 gets one record per
		// poll, so it stays active.
		cfg := f.sourceConfig(2)
		cfg.Bounded = false
		cfg.Watermarks = dataflow.Monotonic(func(r rec) time.Time { return r.At }).WithIdleness(50 * time.Millisecond)
		o := openSource(t, cfg, 0, 1, nil)
		n := 0
		o.pollUntil(t, func() bool {
			if len(o.out.wms) > 0 {
				return true
			}
			f.publishViews(2*n, 2*n+1, 2)
			n++
			return false
		})
		// It is views.0's: just below one of its records' times.
		at := (o.out.wms[len(o.out.wms)-1] + 1).Time()
		k := int(at.Sub(epoch) / time.Second)
		require.Equal(t, mkView(k).At, at)
		require.True(t, k%2 == 0 && k <= 2*(n-1), "record %d of %d", k, n)
		require.Zero(t, o.out.idle)
		// Then views.0 goes quiet too: the subtask is idle.
		o.pollUntil(t, func() bool { return o.out.idle > 0 })
	})
}
