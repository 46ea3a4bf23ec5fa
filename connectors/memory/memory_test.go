package memory_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSliceSplitsContiguouslyOverSubtasks(t *testing.T) {
	items := make([]int, 10)
	for i := range items {
		items[i] = i
	}
	job := dataflow.NewJob("slice")
	src := memory.FromSlice(job, "src", items, dataflow.Parallelism(3))
	out := memory.Collect(src, "out", dataflow.Parallelism(3))
	require.NoError(t, job.Run(context.Background()))
	per := map[int][]int{}
	for _, r := range out.Records() {
		per[r.Subtask] = append(per[r.Subtask], r.Value)
		require.Equal(t, dataflow.NoTimestamp, r.Timestamp)
	}
	require.Equal(t, map[int][]int{0: {0, 1, 2}, 1: {3, 4, 5}, 2: {6, 7, 8, 9}}, per)
}

func TestEmptySliceEnds(t *testing.T) {
	job := dataflow.NewJob("empty")
	out := memory.Collect(memory.FromSlice(job, "src", []string(nil), dataflow.Parallelism(2)), "out")
	require.NoError(t, job.Run(context.Background()))
	require.Zero(t, out.Len())
}

func TestBoundedGeneratorMakesEverySequenceOnce(t *testing.T) {
	for _, p := range []int{1, 3, 4} {
		job := dataflow.NewJob("gen")
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{Count: 1001, Generate: func(s int64) int64 { return s }}, dataflow.Parallelism(p))
		out := memory.Collect(src, "out", dataflow.Parallelism(p))
		require.NoError(t, job.Run(context.Background()))
		got := out.Values()
		slices.Sort(got)
		require.Len(t, got, 1001, "parallelism %d", p)
		for i, v := range got {
			require.Equal(t, int64(i), v)
		}
	}
}

// Hold holds a record back, asking again, until it returns false; nothing
// after it is made meanwhile, and nothing is lost.
func TestGeneratorHold(t *testing.T) {
	for _, p := range []int{1, 2} {
		var asks atomic.Int32
		job := dataflow.NewJob("hold")
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{
			Count:    1000,
			Generate: func(s int64) int64 { return s },
			Hold: func(s int64) bool {
				if s == 500 {
					return asks.Add(1) < 5
				}
				return false
			},
		}, dataflow.Parallelism(p))
		out := memory.Collect(src, "out")
		require.NoError(t, job.Run(context.Background()))
		require.Equal(t, int32(5), asks.Load(), "parallelism %d: asked until released", p)
		got := out.Values()
		require.Len(t, got, 1000)
		if p == 1 {
			for i, v := range got {
				require.Equal(t, int64(i), v, "in order, none skipped")
			}
		}
	}
}

func TestGeneratorTimestampsAndWatermarks(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	job := dataflow.NewJob("gen-ts")
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int64]{
		Count:      600,
		Generate:   func(s int64) int64 { return s },
		Watermarks: dataflow.Monotonic(func(v int64) time.Time { return base.Add(time.Duration(v) * time.Second) }),
	})
	var wms []dataflow.Timestamp
	dataflow.AddSink(src, "sink", func() dataflow.Operator[int64] { return &wmRecorder{wms: &wms} })
	out := memory.Collect(src, "out")
	require.NoError(t, job.Run(context.Background()))
	recs := out.Records()
	require.Equal(t, dataflow.TimestampOf(base.Add(599*time.Second)), recs[599].Timestamp)
	require.True(t, slices.IsSorted(wms))
	require.Equal(t, dataflow.TimestampOf(base.Add(255*time.Second))-1, wms[0], "first watermark follows the first poll of 256 records")
	require.Equal(t, dataflow.MaxWatermark, wms[len(wms)-1])
}

type wmRecorder struct {
	dataflow.OperatorBase
	wms *[]dataflow.Timestamp
}

func (w *wmRecorder) Process(int64, dataflow.Timestamp) error { return nil }
func (w *wmRecorder) ProcessWatermark(wm dataflow.Timestamp) error {
	*w.wms = append(*w.wms, wm)
	return nil
}

func TestRateLimitedGeneratorKeepsItsRate(t *testing.T) {
	// 300 records at 1000/s over two subtasks cannot finish in much less than 0.3 s.
	job := dataflow.NewJob("rate")
	src := memory.Generator(job, "gen", memory.GeneratorConfig[int]{Count: 300, Rate: 1000, Generate: func(s int64) int { return int(s) }}, dataflow.Parallelism(2))
	out := memory.Collect(src, "out", dataflow.Parallelism(2))
	start := time.Now()
	require.NoError(t, job.Run(context.Background()))
	require.Equal(t, 300, out.Len())
	require.GreaterOrEqual(t, time.Since(start), 280*time.Millisecond)
}

func TestUnboundedGeneratorRunsUntilCancelled(t *testing.T) {
	for _, rate := range []float64{0, 5000} {
		job := dataflow.NewJob("unbounded")
		src := memory.Generator(job, "gen", memory.GeneratorConfig[int]{Rate: rate, Generate: func(s int64) int { return int(s) }})
		ctx, cancel := context.WithCancel(context.Background())
		var n atomic.Int64
		dataflow.AddSink(src, "sink", func() dataflow.Operator[int] { return &cancelAfter{n: &n, at: 100, cancel: cancel} })
		require.ErrorIs(t, job.Run(ctx), context.Canceled)
		require.GreaterOrEqual(t, n.Load(), int64(100))
	}
}

type cancelAfter struct {
	dataflow.OperatorBase
	n      *atomic.Int64
	at     int64
	cancel func()
}

func (c *cancelAfter) Process(int, dataflow.Timestamp) error {
	if c.n.Add(1) == c.at {
		c.cancel()
	}
	return nil
}

func TestGeneratorBadConfig(t *testing.T) {
	job := dataflow.NewJob("bad-gen")
	memory.Discard(memory.Generator(job, "gen", memory.GeneratorConfig[int]{Count: -1, Generate: func(int64) int { return 0 }}), "sink")
	require.ErrorContains(t, job.Validate(), `dataflow: operator "gen": memory: generator count -1 and rate 0 must be finite and not negative`)

	job = dataflow.NewJob("nil-gen")
	memory.Discard(memory.Generator(job, "gen", memory.GeneratorConfig[int]{Count: 1}), "sink")
	require.ErrorIs(t, job.Validate(), dataflow.ErrNilFunction)
}

func TestPrintLogAndDiscardSinks(t *testing.T) {
	var printed, logged bytes.Buffer
	job := dataflow.NewJob("sinks")
	src := memory.FromSlice(job, "src", []int{1, 2, 3, 4})
	memory.Print(src, "print", &printed)
	memory.Print(dataflow.Rebalance(src), "print2", &printed, dataflow.Parallelism(2))
	memory.Log(src, "log", slog.New(slog.NewTextHandler(&logged, nil)))
	n := memory.Discard(src, "discard")
	require.NoError(t, job.Run(context.Background()))
	lines := strings.Split(strings.TrimSpace(printed.String()), "\n")
	slices.Sort(lines)
	require.Equal(t, []string{"print2:1> 1", "print2:1> 3", "print2:2> 2", "print2:2> 4", "print> 1", "print> 2", "print> 3", "print> 4"}, lines)
	require.Equal(t, 4, strings.Count(logged.String(), "msg=record operator=log subtask=0 value="))
	require.Equal(t, int64(4), n.Load())
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errFull }

var errFull = errors.New("disk full")

func TestPrintWriteErrorFailsJob(t *testing.T) {
	job := dataflow.NewJob("print-fail")
	memory.Print(memory.FromSlice(job, "src", []int{1}), "print", failingWriter{})
	err := job.Run(context.Background())
	require.ErrorIs(t, err, errFull)
	require.ErrorContains(t, err, `memory: print sink "print": disk full`)
}
