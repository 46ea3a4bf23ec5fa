package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

// eoJob is the exactly-once job: the input stream's events, keyed, counted
// per key in keyed state, published by the JetStream sink (with fault
// injection) to outPrefix.<key>.
func eoJob(f *fixture, fl *faults, parts int, outPrefix string, bounded bool, cfg dataflow.Config) *dataflow.Job {
	job := dataflow.NewJob("exactly-once", cfg)
	src := jetstream.Source(job, "in", jetstream.SourceConfig[event]{
		Conn: f.conn(), Stream: f.stream, Partitions: f.inPartitions(parts), Bounded: bounded, PollBatch: 128,
	})
	counts := dataflow.AddKeyedOperator(dataflow.KeyBy(src, func(e event) int { return e.Key }), "count",
		func(out dataflow.Output[counted]) dataflow.Operator[event] { return &countOp{f: fl, out: out} })
	faultySink(counts, "out", jetstream.SinkConfig[counted]{
		Conn:    f.conn(),
		Subject: func(c counted) string { return fmt.Sprintf("%s.%d", outPrefix, c.Key) },
	}, fl)
	return job
}

// checkOutput runs the checker over the output stream.
func checkOutput(t *testing.T, f *fixture, outStream string, nKeys int, total int64) {
	t.Helper()
	outs := decodeAll[counted](t, readStream(t, f.js, outStream))
	require.Equal(t, checkResult{}, check(outs, nKeys, total), "lost, duplicated, out of order, state errors, unknown keys (%d records)", len(outs))
	require.Len(t, outs, int(total))
}

func restartStrategy(t *testing.T, attempts int, delay time.Duration) checkpoint.RestartStrategy {
	t.Helper()
	r, err := checkpoint.FixedDelay(attempts, delay)
	require.NoError(t, err)
	return r
}

// TestExactlyOnceThroughFailuresAndRestore runs a job reading per-key
// sequence numbers while a publisher publishes them, with checkpoints every
// 5 ms, through an operator failure, a sink failure right after a commit
// (so that the restore publishes that transaction again) and a crash (the
// context cancelled right after a commit), and then resumes it as a new job
// from its checkpoint storage at another parallelism. The output stream
// holds every record once, in order per key, with the right counts.
func TestExactlyOnceThroughFailuresAndRestore(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		const nKeys, parts = 20, 4
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		outStream, outPrefix := f.outStream("eo")
		fl := newFaults()
		fl.failAt = []int64{600}
		fl.failCommitAt = 1200
		fl.crashAt = 1800
		ctxA, crash := context.WithCancel(ctx)
		defer crash()
		fl.crash = crash
		// The publisher goes on until job A crashed, so that records keep
		// coming however fast job A reads them, and keeps at most about
		// 1000 records ahead of what job A committed.
		pub := newPublisher(t, f, parts)
		var total int64
		published := make(chan error, 1)
		go func() {
			published <- func() error {
				for !fl.crashed.Load() {
					if err := pub.publish(ctx, total, total+500, 50, time.Millisecond, seqEvent(nKeys)); err != nil {
						return err
					}
					total += 500
					select {
					case <-fl.committedAtLeast(total - 1000):
					case <-ctxA.Done():
					}
				}
				return nil
			}()
		}()

		dir := t.TempDir()
		st, err := checkpoint.NewLocalStorage(dir)
		require.NoError(t, err)
		jobA := eoJob(f, fl, parts, outPrefix, false, dataflow.Config{
			Parallelism:       2,
			Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
			CheckpointStorage: st,
			Restart:           restartStrategy(t, 5, 0),
			Logger:            testLogger(t),
		})
		require.ErrorIs(t, jobA.Run(ctxA), context.Canceled, "job A ends with the crash (checkpoints %+v, %d committed)", jobA.Metrics().Checkpoints, committed(fl))
		require.Equal(t, int32(3), fl.fired.Load(), "operator failure, failure after a commit, crash")
		require.Equal(t, int64(2), jobA.Restarts())
		committedA, republishedA := fl.counts()
		require.GreaterOrEqual(t, committedA, fl.crashAt)
		require.Positive(t, republishedA, "the restore after the failure following a commit published that transaction again")
		require.NoError(t, <-published)

		// A new process resumes from the checkpoint storage, at parallelism
		// 3, and reads to the end of the stream.
		st2, err := checkpoint.NewLocalStorage(dir)
		require.NoError(t, err)
		jobB := eoJob(f, fl, parts, outPrefix, true, dataflow.Config{
			Parallelism:       3,
			Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
			CheckpointStorage: st2,
			RestoreFrom:       st2,
			Logger:            testLogger(t),
		})
		require.NoError(t, jobB.Run(ctx))
		_, republished := fl.counts()
		t.Logf("%s: %d transactions published again after restores (%d in job A); publisher retried %d batches",
			f.name, republished, republishedA, pub.retries.Load())

		checkInput(t, f, nKeys, total)
		checkOutput(t, f, outStream, nKeys, total)
		m, err := st2.Latest(ctx)
		require.NoError(t, err)
		require.True(t, m.Final, "job B ended with its final checkpoint")
	})
}

// TestExactlyOnceAcrossServerRestarts restarts the NATS server twice while a
// checkpointed job reads and publishes; the job's connections come back (or
// it restarts from its checkpoint) and its output is still exactly once.
func TestExactlyOnceAcrossServerRestarts(t *testing.T) {
	const total, nKeys, parts = 3000, 20, 4
	srv := newEmbedded(t)
	f := newFixture(t, "embedded", srv.URL(), srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	outStream, outPrefix := f.outStream("eo")
	pub := newPublisher(t, f, parts)
	published := make(chan error, 1)
	go func() { published <- pub.publish(ctx, 0, total, 25, time.Millisecond, seqEvent(nKeys)) }()

	st, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	fl := newFaults()
	job := eoJob(f, fl, parts, outPrefix, false, dataflow.Config{
		Parallelism:       2,
		Checkpoint:        checkpoint.Config{Interval: 5 * time.Millisecond},
		CheckpointStorage: st,
		Restart:           restartStrategy(t, 200, 20*time.Millisecond),
		Logger:            testLogger(t),
	})
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case err := <-done:
			t.Fatalf("job ended before %s: %v", what, err)
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s (%d committed, checkpoints %+v)", what, committed(fl), job.Metrics().Checkpoints)
		}
	}
	restarts := 0
	for _, at := range []int64{total / 4, total / 2} {
		wait(fl.committedAtLeast(at), fmt.Sprintf("%d records committed", at))
		require.NoError(t, srv.Restart())
		restarts++
	}
	require.NoError(t, <-published)
	wait(fl.committedAtLeast(total), "every record committed")
	sp, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	_, err = job.StopWithSavepoint(ctx, sp)
	require.NoError(t, err)
	require.NoError(t, <-done)
	_, republished := fl.counts()
	t.Logf("server restarts %d, job restarts %d, transactions published again %d, publisher retries %d",
		restarts, job.Restarts(), republished, pub.retries.Load())

	checkInput(t, f, nKeys, total)
	checkOutput(t, f, outStream, nKeys, total)
}

// TestRestoreFromCheckpointOfRemovedData restores jobs, through the
// runtime's RestoreFrom, from a checkpoint whose stream was since purged or
// deleted: data the checkpoint had not read is gone, and the job fails with
// an error naming the stream instead of going on without it. A purge of
// data it had read is fine.
func TestRestoreFromCheckpointOfRemovedData(t *testing.T) {
	type outcome struct {
		err  error  // nil: the restored job reads to the end
		msg  string // in the error
		seqs []uint64
	}
	purge := func(opts ...njs.StreamPurgeOpt) func(t *testing.T, f *fixture) {
		return func(t *testing.T, f *fixture) {
			s, err := f.js.Stream(context.Background(), f.stream)
			require.NoError(t, err)
			require.NoError(t, s.Purge(context.Background(), opts...))
		}
	}
	recreate := func(n int) func(t *testing.T, f *fixture) {
		return func(t *testing.T, f *fixture) {
			require.NoError(t, f.js.DeleteStream(context.Background(), f.stream))
			f.createStream(f.stream, f.prefix+".>")
			f.publishViews(0, n, 2)
		}
	}
	cases := []struct {
		name       string
		partitions int // 0: the whole stream
		change     func(t *testing.T, f *fixture)
		want       func(f *fixture) outcome
	}{
		{"purged below the checkpoint", 2, purge(njs.WithPurgeSequence(100)), func(*fixture) outcome {
			return outcome{seqs: upTo(150)[100:]}
		}},
		{"purged past the checkpoint", 2, purge(njs.WithPurgeSequence(121)), func(f *fixture) outcome {
			return outcome{err: jetstream.ErrPurged, msg: fmt.Sprintf("stream %s purged: partition %s.", f.stream, f.subj("views"))}
		}},
		{"whole stream purged", 0, purge(), func(f *fixture) outcome {
			return outcome{err: jetstream.ErrPurged, msg: fmt.Sprintf("stream %s on %s purged: checkpoint 1 has it read up to seq 100 (next 101), but the stream now starts at seq 151", f.stream, f.url)}
		}},
		{"deleted", 2, func(t *testing.T, f *fixture) {
			require.NoError(t, f.js.DeleteStream(context.Background(), f.stream))
		}, func(f *fixture) outcome {
			return outcome{err: jetstream.ErrStreamDeleted, msg: fmt.Sprintf("stream %s on %s: checkpoint 1 has read positions in it, but the stream is gone", f.stream, f.url)}
		}},
		{"deleted and recreated shorter", 2, recreate(20), func(f *fixture) outcome {
			return outcome{err: jetstream.ErrStreamDeleted, msg: fmt.Sprintf("stream %s on %s was deleted and created again since checkpoint 1", f.stream, f.url)}
		}},
		{"deleted and recreated longer", 2, recreate(300), func(f *fixture) outcome {
			return outcome{err: jetstream.ErrStreamDeleted, msg: fmt.Sprintf("stream %s on %s was deleted and created again since checkpoint 1", f.stream, f.url)}
		}},
	}
	eachServer(t, func(t *testing.T, f0 *fixture) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				f := newFixture(t, f0.name, f0.url, f0.srv)
				f.publishViews(0, 100, 2)
				run := func(cfg dataflow.Config) ([]uint64, error) {
					cfg.Logger = testLogger(t)
					job := dataflow.NewJob("restore", cfg)
					out := memory.Collect(jetstream.Source(job, "views", f.sourceConfig(tc.partitions)), "collect")
					err := job.Run(ctx)
					return seqs(values(out.Records())), err
				}
				// A bounded job reads the 100 messages, with checkpoints; its
				// final checkpoint (id 1 if no periodic one came first) holds
				// the positions.
				dir := t.TempDir()
				st, err := checkpoint.NewLocalStorage(dir)
				require.NoError(t, err)
				got, err := run(dataflow.Config{CheckpointStorage: st})
				require.NoError(t, err)
				require.Equal(t, upTo(100), got)
				f.publishViews(100, 150, 2)
				tc.change(t, f)

				st, err = checkpoint.NewLocalStorage(dir)
				require.NoError(t, err)
				got, err = run(dataflow.Config{CheckpointStorage: st, RestoreFrom: st, Restart: restartStrategy(t, 1, 0)})
				want := tc.want(f)
				if want.err == nil {
					require.NoError(t, err)
					require.Equal(t, want.seqs, got)
					return
				}
				require.ErrorIs(t, err, want.err)
				require.ErrorContains(t, err, want.msg)
				var oe *dataflow.OperatorError
				require.True(t, errors.As(err, &oe), "%T: %v", err, err)
				require.Equal(t, "views", oe.Operator)
				require.Empty(t, got, "nothing read after the restore")
			})
		}
	})
}
