package viewcount

import (
	"container/heap"
	"fmt"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/operators"
)

func init() {
	jobs.Register(jobs.Definition{
		Name:        "viewcount",
		Description: "count synthetic video views per video and print the most viewed (no external services)",
		Params: []jobs.Param{
			{Name: "events", Default: "1000000", Usage: "views to generate"},
			{Name: "videos", Default: "10000", Usage: "distinct videos"},
			{Name: "top", Default: "10", Usage: "videos to print at the end"},
			{Name: "rate", Default: "0", Usage: "views per second; 0 for full speed"},
		},
		Build: Build,
	})
}

// View is one play of a video. About one view in a hundred has no video id.
type View struct {
	User  int64
	Video string
	Secs  int64
}

// Build makes the job.
func Build(cfg jobs.Config) (*dataflow.Job, error) {
	events, err := cfg.Int("events", 1_000_000)
	if err != nil {
		return nil, err
	}
	videos, err := cfg.Int("videos", 10_000)
	if err != nil {
		return nil, err
	}
	top, err := cfg.Int("top", 10)
	if err != nil {
		return nil, err
	}
	rate, err := cfg.Float("rate", 0)
	if err != nil {
		return nil, err
	}
	if events < 0 || videos <= 0 || top <= 0 {
		return nil, fmt.Errorf("viewcount: events (%d) must be >= 0, videos (%d) and top (%d) > 0", events, videos, top)
	}

	job := dataflow.NewJob("viewcount", cfg.Job)
	views := memory.Generator(job, "views", memory.GeneratorConfig[View]{
		Count:    events,
		Rate:     rate,
		Generate: func(seq int64) View { return GenerateView(seq, videos) },
	})
	invalid := dataflow.NewOutputTag[View]("invalid")
	valid := operators.Process(views, "validate", func(ctx *operators.ProcessContext[View], v View) error {
		if v.Video == "" {
			operators.EmitSide(ctx, invalid, v)
			return nil
		}
		ctx.Emit(v)
		return nil
	})
	counts := operators.Aggregate(dataflow.KeyBy(valid, func(v View) string { return v.Video }), "views-per-video", operators.Count[View]())
	ranking := operators.RichProcess(dataflow.Rebalance(counts), "top-videos", func() operators.ProcessFunction[dataflow.KV[string, int64], string] {
		return &topN{n: int(top), latest: map[string]int64{}}
	}, dataflow.Parallelism(1))
	memory.Print(ranking, "top", cfg.Output, dataflow.Parallelism(1))
	skipped := operators.Aggregate(dataflow.KeyBy(dataflow.SideOutput(valid, invalid), func(View) bool { return true }), "invalid-views", operators.Count[View](), dataflow.Parallelism(1))
	final := operators.RichProcess(skipped, "invalid-total", func() operators.ProcessFunction[dataflow.KV[bool, int64], string] {
		return &lastCount{}
	}, dataflow.Parallelism(1))
	memory.Print(final, "skipped", cfg.Output, dataflow.Parallelism(1))
	return job, nil
}

// GenerateView makes view number seq among videos distinct videos. About one
// view in a hundred has no video id, and low video numbers are watched more.
func GenerateView(seq, videos int64) View {
	h := uint64(seq) * 0x9E3779B97F4A7C15
	v := View{User: int64(h >> 40), Secs: int64(h>>20) % 3600}
	if h%100 != 0 {
		r := (h >> 8) % uint64(videos*videos)
		v.Video = fmt.Sprintf("video-%d", uint64(videos)-1-isqrt(r))
	}
	return v
}

func isqrt(x uint64) uint64 {
	r := uint64(0)
	for bit := uint64(1) << 62; bit > 0; bit >>= 2 {
		if x >= r+bit {
			x -= r + bit
			r = r>>1 + bit
		} else {
			r >>= 1
		}
	}
	return r
}

// topN keeps the latest count of every video and prints the n largest at end of input.
type topN struct {
	n      int
	latest map[string]int64
}

func (t *topN) ProcessElement(_ *operators.ProcessContext[string], kv dataflow.KV[string, int64]) error {
	t.latest[kv.Key] = kv.Value
	return nil
}

func (t *topN) Finish(ctx *operators.ProcessContext[string]) error {
	h := &minHeap{}
	for video, n := range t.latest {
		heap.Push(h, dataflow.KV[string, int64]{Key: video, Value: n})
		if h.Len() > t.n {
			heap.Pop(h)
		}
	}
	ranked := make([]dataflow.KV[string, int64], h.Len())
	for i := len(ranked) - 1; i >= 0; i-- {
		ranked[i] = heap.Pop(h).(dataflow.KV[string, int64])
	}
	for i, kv := range ranked {
		ctx.Emit(fmt.Sprintf("#%d %s: %d views", i+1, kv.Key, kv.Value))
	}
	return nil
}

type minHeap []dataflow.KV[string, int64]

func (h minHeap) Len() int { return len(h) }
func (h minHeap) Less(i, j int) bool {
	if h[i].Value != h[j].Value {
		return h[i].Value < h[j].Value
	}
	return h[i].Key > h[j].Key
}
func (h minHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)   { *h = append(*h, x.(dataflow.KV[string, int64])) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// lastCount prints the final count of invalid views.
type lastCount struct{ n int64 }

func (l *lastCount) ProcessElement(_ *operators.ProcessContext[string], kv dataflow.KV[bool, int64]) error {
	l.n = kv.Value
	return nil
}

func (l *lastCount) Finish(ctx *operators.ProcessContext[string]) error {
	ctx.Emit(fmt.Sprintf("%d views without a video id", l.n))
	return nil
}
