package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

// lateAlert counts events per key and, through an event-time timer, reports
// the count one minute after a key's first event; a processing-time timer
// reports keys that stayed quiet for ten seconds of wall time.
type lateAlert struct {
	count *state.Value[int]
}

func (a *lateAlert) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	a.count, err = state.NewValue[int](oc.State(), "count")
	return err
}

func (a *lateAlert) ProcessElement(ctx *operators.KeyedContext[string, string], v string) error {
	n, ok, err := a.count.Get()
	if err != nil {
		return err
	}
	if !ok {
		ctx.Timers().RegisterEventTimeTimer(ctx.Timestamp() + dataflow.Timestamp(time.Minute))
		ctx.Timers().RegisterProcessingTimeTimer(ctx.Timers().CurrentProcessingTime() + dataflow.Timestamp(10*time.Second))
	}
	return a.count.Update(n + 1)
}

func (a *lateAlert) OnTimer(ctx *operators.KeyedContext[string, string], t dataflow.Timer) error {
	n, _, err := a.count.Get()
	if err != nil {
		return err
	}
	ctx.Emit(fmt.Sprintf("%s: %d after %s", ctx.Key(), n, t.Domain))
	return nil
}

func newAlertHarness(t *testing.T) *dataflow.TestHarness[string, string] {
	t.Helper()
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[string]) dataflow.Stream[string] {
		return operators.KeyedProcess(dataflow.KeyBy(in, func(s string) string { return s }), "alert",
			func() operators.KeyedProcessFunction[string, string, string] { return &lateAlert{} })
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

func TestHarnessScriptsEventAndProcessingTime(t *testing.T) {
	h := newAlertHarness(t)
	t0 := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	require.NoError(t, h.Add("a", t0))
	require.NoError(t, h.Add("a", t0.Add(10*time.Second)))
	require.NoError(t, h.Add("b", t0.Add(20*time.Second)))
	require.Empty(t, h.Output())

	require.NoError(t, h.AdvanceWatermark(t0.Add(59*time.Second)))
	require.Empty(t, h.TakeOutput(), "a's timer is at t0+60s")
	require.NoError(t, h.AdvanceWatermark(t0.Add(60*time.Second)))
	out := h.TakeOutput()
	require.Equal(t, []dataflow.Timestamped[string]{{Value: "a: 2 after event time", Timestamp: dataflow.TimestampOf(t0.Add(time.Minute))}}, out)

	require.NoError(t, h.AdvanceProcessingTime(9*time.Second))
	require.Empty(t, h.TakeOutput())
	require.NoError(t, h.AdvanceProcessingTime(time.Second))
	require.Equal(t, []string{"a: 2 after processing time", "b: 1 after processing time"}, values(h.TakeOutput()), "ties fire in key order")

	require.NoError(t, h.Finish())
	require.Equal(t, []string{"b: 1 after event time"}, values(h.TakeOutput()), "end of input fires the remaining event-time timers")
	require.Equal(t, dataflow.MaxWatermark, h.Watermarks()[len(h.Watermarks())-1])
	require.ErrorIs(t, h.Add("c", t0), dataflow.ErrHarnessClosed)
}

func TestHarnessIgnoresWatermarksThatDoNotAdvance(t *testing.T) {
	h := newAlertHarness(t)
	require.NoError(t, h.AdvanceWatermarkTo(100))
	require.NoError(t, h.AdvanceWatermarkTo(50))
	require.NoError(t, h.AdvanceWatermarkTo(100))
	require.NoError(t, h.AdvanceWatermarkTo(200))
	require.Equal(t, []dataflow.Timestamp{100, 200}, h.Watermarks())
	require.Error(t, h.AdvanceProcessingTime(-time.Second))
}

func values(rs []dataflow.Timestamped[string]) []string {
	var vs []string
	for _, r := range rs {
		vs = append(vs, r.Value)
	}
	return vs
}

func TestHarnessReportsFailuresAndRefusesParallelPipelines(t *testing.T) {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[int]) dataflow.Stream[int] {
		return operators.Process(in, "picky", func(ctx *operators.ProcessContext[int], v int) error {
			if v < 0 {
				return errors.New("negative")
			}
			ctx.Emit(v)
			return nil
		})
	})
	require.NoError(t, err)
	require.NoError(t, h.AddAt(1, dataflow.NoTimestamp))
	err = h.AddAt(-1, dataflow.NoTimestamp)
	require.EqualError(t, err, `operator "picky" (subtask 1/1) at harness input #2: negative`)
	require.Equal(t, err, h.AddAt(2, dataflow.NoTimestamp), "a failed harness keeps its error")
	require.Equal(t, []int{1}, h.Values())
	require.NoError(t, h.Close())

	_, err = dataflow.NewTestHarness(func(in dataflow.Stream[int]) dataflow.Stream[int] {
		return operators.Map(in, "wide", func(v int) int { return v }, dataflow.Parallelism(2))
	})
	require.ErrorContains(t, err, "the pipeline must run as one task")
}
