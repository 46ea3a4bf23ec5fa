package memory

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// FromSlice is a bounded source of items, without event times.
func FromSlice[T any](job *dataflow.Job, name string, items []T, opts ...dataflow.Option) dataflow.Stream[T] {
	return dataflow.AddSource(job, name, func() dataflow.Source[T] { return &sliceSource[T]{items: items} }, opts...)
}

type sliceSource[T any] struct {
	items     []T
	pos, end  int
	batchSize int
}

func (s *sliceSource[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	n := len(s.items)
	s.pos = oc.Subtask * n / oc.Parallelism
	s.end = (oc.Subtask + 1) * n / oc.Parallelism
	s.batchSize = 256
	return nil
}

func (s *sliceSource[T]) Poll(_ context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	stop := min(s.pos+s.batchSize, s.end)
	for ; s.pos < stop; s.pos++ {
		out.Collect(s.items[s.pos], dataflow.NoTimestamp)
	}
	if s.pos >= s.end {
		return dataflow.EndOfInput, nil
	}
	return dataflow.MoreAvailable, nil
}

func (s *sliceSource[T]) Position() string { return fmt.Sprintf("slice index %d", s.pos) }
func (s *sliceSource[T]) Close() error     { return nil }

// GeneratorConfig describes a generator source.
type GeneratorConfig[T any] struct {
	// Generate makes the record with sequence number seq (0, 1, 2, ...).
	Generate func(seq int64) T
	// Count is the number of records to make over all subtasks; 0 means unbounded.
	Count int64
	// Rate limits the records per second over all subtasks; 0 means full speed.
	Rate float64
	// Watermarks, if set, gives records their event time and the generator
	// watermarks (each subtask is one partition). Without it records have no
	// event time.
	Watermarks dataflow.WatermarkStrategy[T]
}

// Generator is a source that makes records from sequence numbers.
func Generator[T any](job *dataflow.Job, name string, cfg GeneratorConfig[T], opts ...dataflow.Option) dataflow.Stream[T] {
	var newSrc func() dataflow.Source[T]
	if cfg.Generate != nil {
		newSrc = func() dataflow.Source[T] { return &generator[T]{cfg: cfg} }
	}
	if err := cfg.Watermarks.Validate(); err != nil {
		job.ReportError(name, err)
	}
	if cfg.Count < 0 || cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		job.ReportError(name, fmt.Errorf("memory: generator count %d and rate %v must be finite and not negative", cfg.Count, cfg.Rate))
	}
	return dataflow.AddSource(job, name, newSrc, opts...)
}

type generator[T any] struct {
	cfg        GeneratorConfig[T]
	seq, step  int64
	emitted    int64
	start      time.Time
	perSubtask float64
	wms        *dataflow.PartitionWatermarks[T] // nil without event time
	lastWm     dataflow.Timestamp
	idle       bool
	timer      *time.Timer
}

func (g *generator[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	g.seq = int64(oc.Subtask)
	g.step = int64(oc.Parallelism)
	g.start = time.Now()
	g.perSubtask = g.cfg.Rate / float64(oc.Parallelism)
	g.lastWm = dataflow.MinWatermark
	if !g.cfg.Watermarks.IsZero() {
		g.wms = g.cfg.Watermarks.NewPartitions(1, nil)
	}
	return nil
}

const genBatch = 256

func (g *generator[T]) Poll(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	n := int64(genBatch)
	if g.perSubtask > 0 {
		// Records allowed by now at the configured rate.
		allowed := int64(time.Since(g.start).Seconds()*g.perSubtask) + 1
		n = min(n, allowed-g.emitted)
		if n <= 0 {
			// The next record is due when elapsed*rate reaches emitted.
			due := g.start.Add(time.Duration(float64(g.emitted) / g.perSubtask * float64(time.Second)))
			if err := g.sleep(ctx, min(time.Until(due), 50*time.Millisecond)); err != nil {
				return dataflow.NothingAvailable, err
			}
			g.emitWatermark(out)
			return dataflow.NothingAvailable, nil
		}
	}
	if g.cfg.Count > 0 {
		// Records this subtask still owns: seq, seq+step, ... below Count.
		left := (g.cfg.Count - g.seq + g.step - 1) / g.step
		n = max(0, min(n, left))
	}
	if g.wms == nil {
		for ; n > 0; n-- {
			out.Collect(g.cfg.Generate(g.seq), dataflow.NoTimestamp)
			g.seq += g.step
			g.emitted++
		}
	} else {
		for ; n > 0; n-- {
			v := g.cfg.Generate(g.seq)
			out.Collect(v, g.wms.Observe(0, v))
			g.seq += g.step
			g.emitted++
		}
		g.emitWatermark(out)
	}
	if g.cfg.Count > 0 && g.seq >= g.cfg.Count {
		return dataflow.EndOfInput, nil
	}
	return dataflow.MoreAvailable, nil
}

// emitWatermark emits the watermark if it advanced, or marks the subtask idle.
func (g *generator[T]) emitWatermark(out dataflow.Output[T]) {
	if g.wms == nil {
		return
	}
	wm, idle := g.wms.Current()
	switch {
	case idle && !g.idle:
		g.idle = true
		out.MarkIdle()
	case !idle && (wm > g.lastWm || g.idle):
		g.idle = false
		g.lastWm = wm
		out.EmitWatermark(wm)
	}
}

func (g *generator[T]) sleep(ctx context.Context, d time.Duration) error {
	if g.timer == nil {
		g.timer = time.NewTimer(d)
	} else {
		g.timer.Reset(d)
	}
	select {
	case <-g.timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *generator[T]) Position() string { return fmt.Sprintf("generator seq %d", g.seq) }

func (g *generator[T]) Close() error {
	if g.timer != nil {
		g.timer.Stop()
	}
	return nil
}
