package dataflow_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

func metricsOf(m dataflow.Metrics, op string) (in, out int64, n int) {
	for _, o := range m.Operators {
		if o.Operator == op {
			in += o.RecordsIn
			out += o.RecordsOut
			n++
		}
	}
	return in, out, n
}

func TestMetricsCountRecordsPerOperator(t *testing.T) {
	const total = 10000
	events := make([]event, total)
	for i := range events {
		events[i] = event{Key: int64(i % 10), Seq: int64(i)}
	}
	job := dataflow.NewJob("metrics", dataflow.Config{Parallelism: 2})
	src := memory.FromSlice(job, "source", events)
	even := operators.Filter(src, "even", func(e event) bool { return e.Seq%2 == 0 })
	keyed := dataflow.KeyBy(even, func(e event) int64 { return e.Key })
	sums := operators.Reduce(keyed, "sum", func(a, b event) event { a.Seq += b.Seq; return a })
	memory.Print(sums, "sink", io.Discard)

	// Metrics may be read while the job runs, from another goroutine.
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
				_ = job.Metrics()
			}
		}
	}()
	require.NoError(t, job.Run(context.Background()))
	close(stop)
	<-readerDone

	m := job.Metrics()
	require.False(t, m.Running)
	_, out, n := metricsOf(m, "source")
	require.Equal(t, 2, n, "one entry per subtask")
	require.EqualValues(t, total, out)
	in, out, _ := metricsOf(m, "even")
	require.EqualValues(t, total, in)
	require.EqualValues(t, total/2, out)
	in, out, _ = metricsOf(m, "sum")
	require.EqualValues(t, total/2, in)
	require.EqualValues(t, total/2, out, "a rolling reduce emits per record")
	in, _, _ = metricsOf(m, "sink")
	require.EqualValues(t, total/2, in)
	require.Equal(t, "source", m.Operators[0].Operator, "graph order")
	for _, o := range m.Operators {
		if o.Operator != "sink" {
			continue
		}
		require.Equal(t, dataflow.MaxWatermark, o.Watermark, "end of input moves the watermark to the end")
	}
}

func TestMetricsAddUpOverRestartsAndCountCommits(t *testing.T) {
	const total = 4000
	var failed atomic.Bool
	st := newTxnStore[event]()
	restart, err := checkpoint.FixedDelay(3, 0)
	require.NoError(t, err)
	ckpts, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	job := dataflow.NewJob("metrics-restart", dataflow.Config{Restart: restart, CheckpointStorage: ckpts,
		Checkpoint: checkpoint.Config{Interval: 5 * time.Millisecond}, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	src := memory.Generator(job, "source", memory.GeneratorConfig[event]{Count: total, Rate: 40000,
		Generate: func(seq int64) event { return event{Key: seq % 5, Seq: seq} }})
	mapped := operators.FlatMap(src, "fail-once", func(e event, emit func(event)) error {
		if e.Seq == total/2 && failed.CompareAndSwap(false, true) {
			return errors.New("injected failure")
		}
		emit(e)
		return nil
	})
	txnSink(mapped, "sink", st)
	require.NoError(t, job.Run(context.Background()))
	require.True(t, failed.Load())

	m := job.Metrics()
	require.EqualValues(t, 1, m.Restarts)
	got := map[int64]int{}
	for _, v := range st.values() {
		got[v.Seq]++
	}
	for seq := int64(0); seq < total; seq++ {
		if got[seq] != 1 {
			t.Fatalf("record %d committed %d times, want once", seq, got[seq])
		}
	}
	in, _, n := metricsOf(m, "sink")
	require.Equal(t, 1, n)
	// Records between the last checkpoint and the failure are processed
	// twice: the counters count work done, across both runs.
	require.GreaterOrEqual(t, in, int64(total))
	var commits int64
	for _, o := range m.Operators {
		if o.Operator == "sink" {
			commits = o.SinkCommits
			require.Positive(t, o.SinkCommitTime)
		}
	}
	require.Positive(t, commits)
	require.Positive(t, m.Checkpoints.Completed)
	require.NotNil(t, m.Checkpoints.Last)
	require.Positive(t, m.Checkpoints.Last.Size)
	require.Equal(t, ckpts.Location(), m.Checkpoints.Last.Location)
}
