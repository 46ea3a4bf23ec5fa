package operators_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

type reading struct {
	Sensor string
	At     time.Duration // event time since the epoch
}

func readingTime(r reading) time.Time { return time.Unix(0, int64(r.At)) }

// perWindow counts readings per sensor into 10 s buckets closed by an
// event-time timer at the bucket's end: a hand-made tumbling window.
type perWindow struct {
	counts *state.Map[int64, int]
}

func (p *perWindow) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	p.counts, err = state.NewMap[int64, int](oc.State(), "counts")
	return err
}

func (p *perWindow) ProcessElement(ctx *operators.KeyedContext[string, string], r reading) error {
	end := (int64(r.At)/int64(10*time.Second) + 1) * int64(10*time.Second)
	n, _, err := p.counts.Get(end)
	if err != nil {
		return err
	}
	if err := p.counts.Put(end, n+1); err != nil {
		return err
	}
	ctx.Timers().RegisterEventTimeTimer(dataflow.Timestamp(end - 1)) // registered once per window: deduplicated
	return nil
}

func (p *perWindow) OnTimer(ctx *operators.KeyedContext[string, string], timer dataflow.Timer) error {
	end := int64(timer.Time) + 1
	n, _, err := p.counts.Get(end)
	if err != nil {
		return err
	}
	if err := p.counts.Remove(end); err != nil {
		return err
	}
	if ctx.Timestamp() != timer.Time || timer.Domain != dataflow.EventTime {
		return fmt.Errorf("timer context: ts %v domain %v", ctx.Timestamp(), timer.Domain)
	}
	ctx.Emit(fmt.Sprintf("%s [%ds) %d", ctx.Key(), end/int64(time.Second), n))
	return nil
}

func runWindows(t *testing.T, p int, readings []reading) []string {
	t.Helper()
	job := dataflow.NewJob("timers", dataflow.Config{Parallelism: p})
	src := memory.Generator(job, "readings", memory.GeneratorConfig[reading]{
		Count:      int64(len(readings)),
		Generate:   func(seq int64) reading { return readings[seq] },
		Watermarks: dataflow.BoundedOutOfOrderness(5*time.Second, readingTime),
	}, dataflow.Parallelism(1))
	out := operators.KeyedProcess(dataflow.KeyBy(src, func(r reading) string { return r.Sensor }), "windows",
		func() operators.KeyedProcessFunction[string, reading, string] { return &perWindow{} })
	col := memory.Collect(out, "out", dataflow.Parallelism(1))
	require.NoError(t, job.Run(context.Background()))
	return col.Values()
}

func TestEventTimeTimersFireInOrderOncePerKeyAndTime(t *testing.T) {
	var readings []reading
	for i := 0; i < 600; i++ {
		// Out of order by up to 4 s, within the 5 s bound.
		at := time.Duration(i)*100*time.Millisecond - time.Duration(i%5)*time.Second
		readings = append(readings, reading{Sensor: fmt.Sprintf("s%d", i%3), At: max(at, 0)})
	}
	got := runWindows(t, 1, readings)
	// Expected from a plain count.
	want := map[string]int{}
	for _, r := range readings {
		want[fmt.Sprintf("%s [%ds)", r.Sensor, (int64(r.At)/int64(10*time.Second)+1)*10)]++
	}
	require.Len(t, got, len(want), "one firing per key and window")
	for _, line := range got {
		var sensor string
		var end, n int
		_, err := fmt.Sscanf(line, "%s [%ds) %d", &sensor, &end, &n)
		require.NoError(t, err)
		require.Equal(t, want[fmt.Sprintf("%s [%ds)", sensor, end)], n, line)
	}
	// Timers fire in time order (and ties in key order) on the single subtask.
	require.True(t, sort.SliceIsSorted(got, func(i, j int) bool {
		var a, b string
		var ea, eb, n int
		fmt.Sscanf(got[i], "%s [%ds) %d", &a, &ea, &n)
		fmt.Sscanf(got[j], "%s [%ds) %d", &b, &eb, &n)
		return ea < eb || ea == eb && a < b
	}), "%v", got)

	for _, p := range []int{2, 4} {
		other := runWindows(t, p, readings)
		sort.Strings(other)
		sorted := append([]string(nil), got...)
		sort.Strings(sorted)
		require.Equal(t, sorted, other, "parallelism %d", p)
	}
}

type deleter struct{}

func (deleter) ProcessElement(ctx *operators.KeyedContext[int, string], v int) error {
	ctx.Timers().RegisterEventTimeTimer(100)
	ctx.Timers().RegisterEventTimeTimer(200)
	if v%2 == 0 {
		ctx.Timers().DeleteEventTimeTimer(100)
	}
	return nil
}

func (deleter) OnTimer(ctx *operators.KeyedContext[int, string], timer dataflow.Timer) error {
	ctx.Emit(fmt.Sprintf("%d@%d", ctx.Key(), timer.Time))
	return nil
}

func TestDeletedTimersDoNotFireAndEndOfInputFiresTheRest(t *testing.T) {
	job := dataflow.NewJob("delete")
	src := memory.FromSlice(job, "src", []int{1, 2, 3}) // no event time: only end of input fires the timers
	out := operators.KeyedProcess(dataflow.KeyBy(src, func(v int) int { return v }), "timers",
		func() operators.KeyedProcessFunction[int, int, string] { return deleter{} })
	col := memory.Collect(out, "out")
	require.NoError(t, job.Run(context.Background()))
	require.Equal(t, []string{"1@100", "3@100", "1@200", "2@200", "3@200"}, col.Values())
}

type procTimer struct{}

func (procTimer) ProcessElement(ctx *operators.KeyedContext[string, string], v string) error {
	ctx.Timers().RegisterProcessingTimeTimer(ctx.Timers().CurrentProcessingTime() + dataflow.Timestamp(20*time.Millisecond))
	return nil
}

func (procTimer) OnTimer(ctx *operators.KeyedContext[string, string], timer dataflow.Timer) error {
	if timer.Domain != dataflow.ProcessingTime || ctx.Timestamp() != dataflow.NoTimestamp {
		return fmt.Errorf("unexpected timer %+v ts %v", timer, ctx.Timestamp())
	}
	ctx.Emit("fired for " + ctx.Key())
	return nil
}

// A processing-time timer fires while no input arrives: the task wakes for it
// (keyed operator behind an exchange), or the source loop fires it between
// polls (keyed operator chained to its source at parallelism 1).
func TestProcessingTimeTimerFiresWithoutInput(t *testing.T) {
	for _, p := range []int{1, 2} {
		job := dataflow.NewJob("proc", dataflow.Config{Parallelism: p})
		src := dataflow.AddSource(job, "one", func() dataflow.Source[string] {
			sent := false
			return &funcSource[string]{poll: func(ctx context.Context, out dataflow.Output[string]) (dataflow.SourceStatus, error) {
				if !sent {
					sent = true
					out.Collect("k", dataflow.NoTimestamp)
					return dataflow.MoreAvailable, nil
				}
				select { // nothing more: wait a little, as a real source would
				case <-time.After(5 * time.Millisecond):
					return dataflow.NothingAvailable, nil
				case <-ctx.Done():
					return dataflow.NothingAvailable, ctx.Err()
				}
			}}
		}, dataflow.Parallelism(1))
		out := operators.KeyedProcess(dataflow.KeyBy(src, func(s string) string { return s }), "timer",
			func() operators.KeyedProcessFunction[string, string, string] { return procTimer{} })
		fired := make(chan string, 1)
		dataflow.AddSink(out, "sink", func() dataflow.Operator[string] {
			return &sinkFunc[string]{f: func(s string) { fired <- s }}
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errc := make(chan error, 1)
		go func() { errc <- job.Run(ctx) }()
		select {
		case s := <-fired:
			require.Equal(t, "fired for k", s, "parallelism %d", p)
		case <-ctx.Done():
			t.Fatalf("parallelism %d: processing-time timer never fired", p)
		}
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
	}
}

type noOnTimer struct{}

func (noOnTimer) ProcessElement(ctx *operators.KeyedContext[int, int], v int) error {
	ctx.Timers().RegisterEventTimeTimer(5)
	return nil
}

func TestTimerWithoutOnTimerFailsClearly(t *testing.T) {
	job := dataflow.NewJob("no-handler")
	out := operators.KeyedProcess(dataflow.KeyBy(memory.FromSlice(job, "src", []int{1}), func(v int) int { return v }), "forgetful",
		func() operators.KeyedProcessFunction[int, int, int] { return noOnTimer{} })
	memory.Discard(out, "sink")
	err := job.Run(context.Background())
	require.ErrorIs(t, err, dataflow.ErrNoTimerHandler)
	require.ErrorContains(t, err, `operator "forgetful" (subtask 1/1)`)
	require.ErrorContains(t, err, "has no OnTimer")
}

type funcSource[T any] struct {
	poll func(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error)
}

func (s *funcSource[T]) Open(context.Context, *dataflow.OperatorContext) error { return nil }
func (s *funcSource[T]) Poll(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	return s.poll(ctx, out)
}
func (s *funcSource[T]) Close() error { return nil }

type sinkFunc[T any] struct {
	dataflow.OperatorBase
	f func(T)
}

func (s *sinkFunc[T]) Process(v T, _ dataflow.Timestamp) error { s.f(v); return nil }
