package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
)

// bad reports whether stream sequence seq of the dead-letter test's input
// is undecodable: every tenth.
func bad(seq uint64) bool { return seq%10 == 0 }

// rereadOp passes records on and, twice, fails (first) or crashes (then)
// the job right after a dead letter that no checkpoint can cover yet: at a
// record whose predecessor in the stream is undecodable and was dead-lettered
// in the same Poll. It knows that from DecodeFailures, which the source adds
// to at the end of each Poll: unchanged since the previous record, read just
// before that bad message, means no Poll ended in between, so no checkpoint
// barrier either, and the restored job reads the bad message again.
type rereadOp struct {
	dataflow.OperatorBase
	out      dataflow.Output[rec]
	failures *jetstream.Counter
	st       *memStore[rec]
	fired    *atomic.Int32
	crash    func()
	prevSeq  uint64
	prevFail int64
}

func (o *rereadOp) Process(r rec, ts dataflow.Timestamp) error {
	n := o.failures.Load()
	inOnePoll := o.prevSeq == r.Seq-2 && bad(r.Seq-1) && n == o.prevFail
	o.prevSeq, o.prevFail = r.Seq, n
	if inOnePoll && o.st.commitCount() > 0 {
		switch o.fired.Load() {
		case 0:
			o.fired.Add(1)
			return fmt.Errorf("after the dead letter of seq %d: %w", r.Seq-1, errInjected)
		case 1:
			o.fired.Add(1)
			o.crash()
		}
	}
	o.out.Collect(r, ts)
	return nil
}

// TestDeadLettersExactlyOnceAcrossRestores reads a stream with undecodable
// messages under the DeadLetter policy, with checkpoints, through a failure
// and a crash that each come right after a dead letter the checkpoint does
// not cover, and resumes as a new job from the checkpoint storage. The
// messages read again are dead-lettered again, and the dead-letter stream
// drops those duplicates: it holds each bad message once, in order, while
// every good record reaches the two-phase sink once.
func TestDeadLettersExactlyOnceAcrossRestores(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		const maxMsgs = 20000
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dlqSubject := "dlq_" + f.prefix
		dlqStream := "DLQ_" + f.stream
		f.createStream(dlqStream, dlqSubject)
		// A plain subscriber sees every dead letter that reaches the
		// server, also those the stream drops as duplicates.
		dlqMsgs := make(chan *nats.Msg, 1<<16)
		sub, err := f.nc.ChanSubscribe(dlqSubject, dlqMsgs)
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
		require.NoError(t, f.nc.Flush())
		var failures jetstream.Counter
		var ckpts *checkpoint.LocalStorage
		st := newMemStore[rec]()
		var fired atomic.Int32
		newJob := func(cfg dataflow.Config, bounded bool, crash func()) *dataflow.Job {
			job := dataflow.NewJob("dead-letters", cfg)
			src := f.sourceConfig(0) // the whole stream: one partition, in stream order
			src.Bounded, src.PollBatch = bounded, 64
			src.OnDecodeError, src.DecodeFailures = jetstream.DeadLetter(dlqSubject), &failures
			in := jetstream.Source(job, "in", src)
			checked := dataflow.AddOperator(in, "reread", func(out dataflow.Output[rec]) dataflow.Operator[rec] {
				return &rereadOp{out: out, failures: &failures, st: st, fired: &fired, crash: crash}
			})
			memSink(checked, "sink", st)
			return job
		}
		// A publisher publishes while job A runs, until job A has failed and
		// crashed (at most maxMsgs): stream seq n is view n-1, or garbage
		// where bad(n).
		dir := t.TempDir()
		ckpts, err = checkpoint.NewLocalStorage(dir)
		require.NoError(t, err)
		ctxA, crash := context.WithCancel(ctx)
		defer crash()
		var total uint64
		published := make(chan error, 1)
		go func() {
			published <- func() error {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for fired.Load() < 2 && total < maxMsgs {
					for range 20 {
						total++
						p := "not json " + strconv.FormatUint(total, 10)
						if !bad(total) {
							b, err := json.Marshal(mkView(int(total - 1)))
							if err != nil {
								return err
							}
							p = string(b)
						}
						if _, err := f.js.Publish(ctx, f.subj("views"), []byte(p)); err != nil {
							crash()
							return fmt.Errorf("publish seq %d: %w", total, err)
						}
					}
					select {
					case <-tick.C:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}()
		}()
		jobA := newJob(dataflow.Config{
			Checkpoint: checkpoint.Config{Interval: 5 * time.Millisecond}, CheckpointStorage: ckpts,
			Restart: restartStrategy(t, 3, 0), Logger: testLogger(t),
		}, false, crash)
		errA := jobA.Run(ctxA)
		require.NoError(t, <-published)
		require.ErrorIs(t, errA, context.Canceled, "job A ends with the crash (checkpoints %+v, %d commits, %d published)", jobA.Metrics().Checkpoints, st.commitCount(), total)
		require.Equal(t, int32(2), fired.Load(), "a failure and a crash right after a dead letter")
		require.Equal(t, int64(1), jobA.Restarts())

		ckpts, err = checkpoint.NewLocalStorage(dir)
		require.NoError(t, err)
		jobB := newJob(dataflow.Config{
			Checkpoint: checkpoint.Config{Interval: 5 * time.Millisecond}, CheckpointStorage: ckpts, RestoreFrom: ckpts, Logger: testLogger(t),
		}, true, func() { t.Error("job B crashed") })
		require.NoError(t, jobB.Run(ctx))

		var wantGood, wantBad []uint64
		for seq := uint64(1); seq <= total; seq++ {
			if bad(seq) {
				wantBad = append(wantBad, seq)
			} else {
				wantGood = append(wantGood, seq)
			}
		}
		got := st.values()
		gotSeqs := make([]uint64, len(got))
		for i, r := range got {
			gotSeqs[i] = r.Seq
			require.Equal(t, mkView(int(r.Seq-1)).N, r.N)
		}
		require.Equal(t, wantGood, gotSeqs, "every good record once, in stream order")

		// The dead-letter stream: each bad message once, in order, though
		// some were dead-lettered twice.
		s, err := f.js.Stream(ctx, dlqStream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		var gotBad []uint64
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			require.NoError(t, err)
			src, err := strconv.ParseUint(nats.Header(m.Header).Get("Sluice-Source-Sequence"), 10, 64)
			require.NoError(t, err)
			require.Equal(t, "not json "+strconv.FormatUint(src, 10), string(m.Data))
			gotBad = append(gotBad, src)
		}
		require.Equal(t, wantBad, gotBad)
		// After a round trip to the server, every dead letter it got is in
		// the subscription's channel.
		require.NoError(t, f.nc.Flush())
		publications := map[string]int{}
		for len(dlqMsgs) > 0 {
			publications[(<-dlqMsgs).Header.Get("Sluice-Source-Sequence")]++
		}
		n, again := 0, 0
		for _, k := range publications {
			n += k
			if k > 1 {
				again++
			}
		}
		require.Len(t, publications, len(wantBad))
		require.GreaterOrEqual(t, n, len(wantBad)+2, "the failure and the crash each made a message be dead-lettered again")
		require.GreaterOrEqual(t, failures.Load(), int64(len(wantBad)), "DecodeFailures counts every dead letter of a Poll that completed")
		t.Logf("%s: %d bad messages, %d dead letters published (%d messages more than once), DecodeFailures %d", f.name, len(wantBad), n, again, failures.Load())
	})
}

// TestDeadLetterSubjectOfWholeStreamSource: a source without partitions may
// dead-letter to a subject of another stream (the usual set-up), but not to
// one of its own stream, which it would read back.
func TestDeadLetterSubjectOfWholeStreamSource(t *testing.T) {
	cfg := jetstream.SourceConfig[rec]{Conn: jetstream.ConnConfig{URL: "nats://127.0.0.1:1"}, Stream: "VIEWS", OnDecodeError: jetstream.DeadLetter("dlq")}
	require.NoError(t, cfg.Validate())
	cfg.Partitions = []string{"views.*", "dlq"}
	require.ErrorIs(t, cfg.Validate(), jetstream.ErrConfig, "an explicit partition reads the dead-letter subject")

	srv := newEmbedded(t)
	f := newFixture(t, "embedded", srv.URL(), srv)
	cfg = f.sourceConfig(0)
	cfg.OnDecodeError = jetstream.DeadLetter(f.subj("dlq"))
	err := openErr(t, cfg)
	require.ErrorIs(t, err, jetstream.ErrConfig)
	require.ErrorContains(t, err, fmt.Sprintf(`stream %s: dead-letter subject %q is in the stream and read by partition ">"`, f.stream, f.subj("dlq")))
}
