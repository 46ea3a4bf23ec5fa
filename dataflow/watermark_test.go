package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

type timed struct {
	Part int
	At   time.Duration // since epoch, to keep the tests short
}

func at(v timed) time.Time { return time.Unix(0, int64(v.At)) }

func ts(d time.Duration) dataflow.Timestamp { return dataflow.Timestamp(d) }

func TestBoundedOutOfOrderness(t *testing.T) {
	s := dataflow.BoundedOutOfOrderness(5*time.Second, at)
	require.NoError(t, s.Validate())
	p := s.NewPartitions(1, nil)
	wm, idle := p.Current()
	require.Equal(t, dataflow.MinWatermark, wm, "no record yet: no watermark")
	require.False(t, idle)
	require.Equal(t, ts(20*time.Second), p.Observe(0, timed{At: 20 * time.Second}))
	p.Observe(0, timed{At: 12 * time.Second}) // late but within the bound: does not move the watermark
	wm, _ = p.Current()
	require.Equal(t, ts(15*time.Second)-1, wm)
	p.Observe(0, timed{At: 30 * time.Second})
	wm, _ = p.Current()
	require.Equal(t, ts(25*time.Second)-1, wm)
}

func TestMonotonicNeverGoesBack(t *testing.T) {
	p := dataflow.Monotonic(at).NewPartitions(1, nil)
	p.Observe(0, timed{At: 10})
	p.Observe(0, timed{At: 3}) // out of order: the watermark stays
	wm, _ := p.Current()
	require.Equal(t, ts(9), wm)
}

type everyOther struct{ n, max dataflow.Timestamp }

func (g *everyOther) OnEvent(ts dataflow.Timestamp) { g.n++; g.max = max(g.max, ts) }
func (g *everyOther) Current() dataflow.Timestamp {
	if g.n%2 == 0 {
		return g.max
	}
	return dataflow.MinWatermark
}

func TestCustomGeneratorAndMinimumOverPartitions(t *testing.T) {
	p := dataflow.CustomWatermarks(at, func() dataflow.WatermarkGenerator { return &everyOther{} }).NewPartitions(2, nil)
	p.Observe(0, timed{At: 100})
	p.Observe(0, timed{At: 200})
	wm, _ := p.Current()
	require.Equal(t, dataflow.MinWatermark, wm, "partition 1 has no record: it holds the watermark back")
	p.Observe(1, timed{At: 50})
	p.Observe(1, timed{At: 60})
	wm, _ = p.Current()
	require.Equal(t, ts(60), wm)
	p.Observe(1, timed{At: 70}) // odd count: this generator reports MinWatermark
	wm, _ = p.Current()
	require.Equal(t, ts(60), wm, "the combined watermark never goes back")
}

func TestIdlePartitionStopsHoldingTheWatermarkAndRejoins(t *testing.T) {
	now := time.Unix(1_000, 0)
	clock := func() time.Time { return now }
	p := dataflow.Monotonic(at).WithIdleness(time.Minute).NewPartitions(2, clock)
	p.Observe(0, timed{At: 100})
	p.Observe(1, timed{At: 50})
	wm, idle := p.Current()
	require.Equal(t, ts(49), wm)
	require.False(t, idle)

	now = now.Add(30 * time.Second)
	p.Observe(0, timed{At: 500})
	wm, _ = p.Current()
	require.Equal(t, ts(49), wm, "partition 1 is quiet but not idle yet")

	now = now.Add(31 * time.Second) // partition 1 silent for 61 s
	wm, idle = p.Current()
	require.Equal(t, ts(499), wm, "an idle partition no longer holds the watermark back")
	require.False(t, idle)

	p.Observe(1, timed{At: 300}) // rejoins behind the watermark
	wm, _ = p.Current()
	require.Equal(t, ts(499), wm, "the watermark does not go back when a partition rejoins")
	p.Observe(1, timed{At: 800})
	p.Observe(0, timed{At: 900})
	wm, _ = p.Current()
	require.Equal(t, ts(799), wm, "the rejoined partition counts again")

	now = now.Add(2 * time.Minute)
	wm, idle = p.Current()
	require.True(t, idle, "every partition idle")
	require.Equal(t, ts(799), wm)
}

func TestInvalidWatermarkStrategies(t *testing.T) {
	require.ErrorIs(t, dataflow.BoundedOutOfOrderness[timed](time.Second, nil).Validate(), dataflow.ErrWatermarks)
	require.ErrorContains(t, dataflow.BoundedOutOfOrderness[timed](time.Second, nil).Validate(), "missing timestamp function")
	require.ErrorContains(t, dataflow.BoundedOutOfOrderness(-time.Second, at).Validate(), "negative out-of-orderness -1s")
	require.ErrorContains(t, dataflow.Monotonic(at).WithIdleness(0).Validate(), "idleness timeout 0s must be positive")
	require.ErrorContains(t, dataflow.CustomWatermarks(at, nil).Validate(), "nil generator")
	require.True(t, dataflow.WatermarkStrategy[timed]{}.IsZero())

	job := dataflow.NewJob("bad-wm")
	memory.Discard(memory.Generator(job, "gen", memory.GeneratorConfig[timed]{
		Count: 1, Generate: func(int64) timed { return timed{} }, Watermarks: dataflow.Monotonic[timed](nil),
	}), "sink")
	err := job.Validate()
	require.ErrorIs(t, err, dataflow.ErrWatermarks)
	require.ErrorContains(t, err, `operator "gen"`)
}

// scripted is a source whose every poll runs the next step the test sends, then
// reports NothingAvailable so that the task flushes what the step emitted.
func scripted(steps <-chan func(dataflow.Output[timed])) func() dataflow.Source[timed] {
	return func() dataflow.Source[timed] {
		return &funcSource[timed]{poll: func(ctx context.Context, out dataflow.Output[timed]) (dataflow.SourceStatus, error) {
			select {
			case step := <-steps:
				step(out)
				return dataflow.NothingAvailable, nil
			case <-ctx.Done():
				return dataflow.NothingAvailable, ctx.Err()
			}
		}}
	}
}

func TestIdleInputDoesNotStallDownstreamAndRejoins(t *testing.T) {
	busySteps, quietSteps := make(chan func(dataflow.Output[timed])), make(chan func(dataflow.Output[timed]))
	job := dataflow.NewJob("idle")
	busy := dataflow.AddSource(job, "busy", scripted(busySteps))
	quiet := dataflow.AddSource(job, "quiet", scripted(quietSteps))
	seen := make(chan dataflow.Timestamp, 16)
	records := make(chan dataflow.Timestamp, 16)
	dataflow.AddSink(dataflow.Union(busy, quiet), "sink", func() dataflow.Operator[timed] {
		return &opFunc[timed]{
			watermark: func(wm dataflow.Timestamp) error { seen <- wm; return nil },
			process:   func(_ timed, ts dataflow.Timestamp) error { records <- ts; return nil },
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- job.Run(ctx) }()
	emit := func(steps chan func(dataflow.Output[timed]), at time.Duration, wm dataflow.Timestamp) {
		steps <- func(out dataflow.Output[timed]) {
			out.Collect(timed{At: at}, ts(at))
			out.EmitWatermark(wm)
		}
	}
	expect := func(want dataflow.Timestamp) {
		t.Helper()
		select {
		case got := <-seen:
			require.Equal(t, want, got)
		case <-ctx.Done():
			t.Fatalf("no watermark %v: %v", want, ctx.Err())
		}
	}
	emit(quietSteps, 0, 0)
	emit(busySteps, 100, 100)
	expect(0) // the minimum of the two inputs
	quietSteps <- func(out dataflow.Output[timed]) { out.MarkIdle() }
	expect(100) // the idle input no longer holds the watermark back
	emit(busySteps, 1000, 1000)
	expect(1000)
	emit(quietSteps, 500, 500) // rejoins behind: no watermark goes back
	for got := range records {
		if got == 500 {
			break // the rejoining record has reached the sink
		}
	}
	emit(busySteps, 3000, 3000)
	emit(quietSteps, 2000, 2000)
	expect(2000) // the rejoined input counts again
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}
