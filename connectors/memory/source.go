package memory

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/dataflow"
)

// FromSlice is a bounded source of items, without event times. Subtask i of
// n reads the i-th n-th of items. Its position is part of checkpoints: a job
// restored from a checkpoint goes on after the last item read, also at
// another parallelism.
func FromSlice[T any](job *dataflow.Job, name string, items []T, opts ...dataflow.Option) dataflow.Stream[T] {
	return dataflow.AddSource(job, name, func() dataflow.Source[T] { return &sliceSource[T]{items: items} }, opts...)
}

// span is a range of items still to read: [Pos, End).
type span struct {
	Pos int `msgpack:"p"`
	End int `msgpack:"e"`
}

type sliceSource[T any] struct {
	items     []T
	spans     []span // what is left, read in order
	batchSize int
}

func (s *sliceSource[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	s.batchSize = 256
	if r := oc.Restored; r != nil {
		for old, b := range r.Subtasks {
			if !oc.Owns(old) || b == nil {
				continue
			}
			var sp []span
			if err := msgpack.Unmarshal(b, &sp); err != nil {
				return fmt.Errorf("memory: restore slice position of old subtask %d: %w", old, err)
			}
			for _, x := range sp {
				if x.Pos < 0 || x.End > len(s.items) || x.Pos > x.End {
					return fmt.Errorf("memory: restored slice span [%d,%d) of old subtask %d does not fit %d items", x.Pos, x.End, old, len(s.items))
				}
			}
			s.spans = append(s.spans, sp...)
		}
		return nil
	}
	n := len(s.items)
	s.spans = []span{{Pos: oc.Subtask * n / oc.Parallelism, End: (oc.Subtask + 1) * n / oc.Parallelism}}
	return nil
}

func (s *sliceSource[T]) Poll(_ context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	for len(s.spans) > 0 && s.spans[0].Pos >= s.spans[0].End {
		s.spans = s.spans[1:]
	}
	if len(s.spans) == 0 {
		return dataflow.EndOfInput, nil
	}
	sp := &s.spans[0]
	stop := min(sp.Pos+s.batchSize, sp.End)
	for ; sp.Pos < stop; sp.Pos++ {
		out.Collect(s.items[sp.Pos], dataflow.NoTimestamp)
	}
	return dataflow.MoreAvailable, nil
}

// SnapshotState records the spans left to read.
func (s *sliceSource[T]) SnapshotState(context.Context, int64) ([]byte, error) {
	return msgpack.Marshal(s.spans)
}

func (s *sliceSource[T]) Position() string {
	if len(s.spans) == 0 {
		return "slice end"
	}
	return fmt.Sprintf("slice index %d", s.spans[0].Pos)
}
func (s *sliceSource[T]) Close() error { return nil }

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
	// Hold, if set, holds back the record with sequence number seq while it
	// returns true: the subtask makes nothing meanwhile, and asks again
	// every millisecond, while checkpoints go on. Tests use it to wait for
	// something to happen (a checkpoint, a commit) at a chosen point of the
	// input, without depending on timing.
	Hold func(seq int64) bool
}

// Generator is a source that makes records from sequence numbers: subtask i
// of n makes i, i+n, i+2n, ... Its position is part of checkpoints: a job
// restored from a checkpoint goes on after the last record made, also at
// another parallelism (a subtask then continues the sequences of the old
// subtasks it owns, interleaved in sequence order).
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

// cursor is one sequence a generator subtask makes: Seq, Seq+Step, ...
type cursor struct {
	Seq  int64 `msgpack:"s"`
	Step int64 `msgpack:"n"`
}

type generator[T any] struct {
	cfg        GeneratorConfig[T]
	cursors    []cursor // never empty; cursors[0] is the next to emit from
	last       int64    // the last sequence number emitted, for Position
	emitted    int64
	start      time.Time
	perSubtask float64
	wms        *dataflow.PartitionWatermarks[T] // nil without event time
	lastWm     dataflow.Timestamp
	idle       bool
	timer      *time.Timer
}

func (g *generator[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	g.cursors = []cursor{{Seq: int64(oc.Subtask), Step: int64(oc.Parallelism)}}
	g.last = -1
	if r := oc.Restored; r != nil {
		g.cursors = g.cursors[:0]
		for old, b := range r.Subtasks {
			if !oc.Owns(old) || b == nil {
				continue
			}
			var cs []cursor
			if err := msgpack.Unmarshal(b, &cs); err != nil {
				return fmt.Errorf("memory: restore generator position of old subtask %d: %w", old, err)
			}
			for _, c := range cs {
				if c.Seq < 0 || c.Step <= 0 {
					return fmt.Errorf("memory: restored generator cursor %+v of old subtask %d is invalid", c, old)
				}
			}
			g.cursors = append(g.cursors, cs...)
		}
		if len(g.cursors) == 0 {
			// Owns no old subtask (scaled up): nothing to make.
			g.cursors = []cursor{{Seq: math.MaxInt64, Step: 1}}
		}
		g.sortCursors()
	}
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
	if g.done() {
		return dataflow.EndOfInput, nil
	}
	held := false
	for ; n > 0; n-- {
		if g.done() {
			break
		}
		c := &g.cursors[0]
		if g.cfg.Hold != nil && g.cfg.Hold(c.Seq) {
			held = true
			break
		}
		v := g.cfg.Generate(c.Seq)
		ts := dataflow.NoTimestamp
		if g.wms != nil {
			ts = g.wms.Observe(0, v)
		}
		g.last = c.Seq // before Collect: a failure downstream names this record
		out.Collect(v, ts)
		c.Seq += c.Step
		g.emitted++
		if len(g.cursors) > 1 {
			g.sortCursors()
		}
	}
	g.emitWatermark(out)
	if g.done() {
		return dataflow.EndOfInput, nil
	}
	if held {
		if err := g.sleep(ctx, time.Millisecond); err != nil {
			return dataflow.NothingAvailable, err
		}
		return dataflow.NothingAvailable, nil
	}
	return dataflow.MoreAvailable, nil
}

// done reports whether every cursor has reached Count (or, restored into a
// subtask that owns no old one, there is nothing to make).
func (g *generator[T]) done() bool {
	s := g.cursors[0].Seq
	return s == math.MaxInt64 || g.cfg.Count > 0 && s >= g.cfg.Count
}

// sortCursors puts the cursor with the lowest next sequence first, so that
// several restored sequences interleave in order.
func (g *generator[T]) sortCursors() {
	slices.SortFunc(g.cursors, func(a, b cursor) int { return cmp.Compare(a.Seq, b.Seq) })
}

// SnapshotState records the sequences' next numbers.
func (g *generator[T]) SnapshotState(context.Context, int64) ([]byte, error) {
	return msgpack.Marshal(g.cursors)
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

func (g *generator[T]) Position() string { return fmt.Sprintf("generator seq %d", g.last) }

func (g *generator[T]) Close() error {
	if g.timer != nil {
		g.timer.Stop()
	}
	return nil
}
