package memory

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sluicedata/sluice/dataflow"
)

// Record is a collected value with its event time and the sink subtask that got it.
type Record[T any] struct {
	Value     T
	Timestamp dataflow.Timestamp
	Subtask   int
}

// Collector holds what a collecting sink received. It is safe to read while the
// job runs; each subtask appends its records when its input ends (or on Flush),
// so reading after Job.Run returns gives everything.
type Collector[T any] struct {
	mu        sync.Mutex
	bySubtask map[int][]Record[T]
	count     atomic.Int64
}

// Collect ends in with a sink that keeps every record in memory.
func Collect[T any](in dataflow.Stream[T], name string, opts ...dataflow.Option) *Collector[T] {
	c := &Collector[T]{bySubtask: map[int][]Record[T]{}}
	dataflow.AddSink(in, name, func() dataflow.Operator[T] { return &collectOp[T]{c: c} }, opts...)
	return c
}

// Values returns the collected values, subtask by subtask, each in arrival order.
func (c *Collector[T]) Values() []T {
	var vs []T
	for _, r := range c.Records() {
		vs = append(vs, r.Value)
	}
	return vs
}

// Records returns the collected records, subtask by subtask, each in arrival order.
func (c *Collector[T]) Records() []Record[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	subtasks := slices.Sorted(maps.Keys(c.bySubtask))
	var out []Record[T]
	for _, s := range subtasks {
		out = append(out, c.bySubtask[s]...)
	}
	return out
}

// Len is the number of records received so far.
func (c *Collector[T]) Len() int { return int(c.count.Load()) }

type collectOp[T any] struct {
	dataflow.OperatorBase
	c       *Collector[T]
	subtask int
	local   []Record[T]
}

func (o *collectOp[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	o.subtask = oc.Subtask
	return nil
}

func (o *collectOp[T]) Process(v T, ts dataflow.Timestamp) error {
	o.local = append(o.local, Record[T]{Value: v, Timestamp: ts, Subtask: o.subtask})
	if len(o.local) >= 1024 {
		o.flush()
	}
	return nil
}

func (o *collectOp[T]) ProcessWatermark(dataflow.Timestamp) error {
	o.flush()
	return nil
}

func (o *collectOp[T]) flush() {
	if len(o.local) == 0 {
		return
	}
	o.c.mu.Lock()
	o.c.bySubtask[o.subtask] = append(o.c.bySubtask[o.subtask], o.local...)
	o.c.count.Add(int64(len(o.local)))
	o.c.mu.Unlock()
	o.local = o.local[:0]
}

func (o *collectOp[T]) Finish(context.Context) error { o.flush(); return nil }

// Print ends in with a sink that writes each record as a line "name:subtask> value"
// to w (os.Stdout if nil), like Flink's print(). Writes of all print sinks are
// serialised, so several sinks and subtasks can share one writer and lines never
// interleave. It is meant for demos and debugging, not for volume.
func Print[T any](in dataflow.Stream[T], name string, w io.Writer, opts ...dataflow.Option) {
	if w == nil {
		w = os.Stdout
	}
	dataflow.AddSink(in, name, func() dataflow.Operator[T] { return &printOp[T]{w: w, name: name} }, opts...)
}

// printMu serialises the writes of every print sink: they often share a writer.
var printMu sync.Mutex

type printOp[T any] struct {
	dataflow.OperatorBase
	w      io.Writer
	name   string
	prefix string
	buf    []byte
}

func (o *printOp[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	o.prefix = o.name + "> "
	if oc.Parallelism > 1 {
		o.prefix = fmt.Sprintf("%s:%d> ", o.name, oc.Subtask+1)
	}
	return nil
}

func (o *printOp[T]) Process(v T, _ dataflow.Timestamp) error {
	o.buf = fmt.Appendf(o.buf[:0], "%s%+v\n", o.prefix, v)
	printMu.Lock()
	_, err := o.w.Write(o.buf)
	printMu.Unlock()
	if err != nil {
		return fmt.Errorf("memory: print sink %q: %w", o.name, err)
	}
	return nil
}

// Log ends in with a sink that logs each record at level Info with attributes
// operator, subtask, timestamp and value.
func Log[T any](in dataflow.Stream[T], name string, logger *slog.Logger, opts ...dataflow.Option) {
	if logger == nil {
		logger = slog.Default()
	}
	dataflow.AddSink(in, name, func() dataflow.Operator[T] { return &logOp[T]{l: logger, name: name} }, opts...)
}

type logOp[T any] struct {
	dataflow.OperatorBase
	l       *slog.Logger
	name    string
	subtask int
}

func (o *logOp[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	o.subtask = oc.Subtask
	return nil
}

func (o *logOp[T]) Process(v T, ts dataflow.Timestamp) error {
	attrs := []any{"operator", o.name, "subtask", o.subtask, "value", v}
	if ts != dataflow.NoTimestamp {
		attrs = append(attrs, "timestamp", ts.Time())
	}
	o.l.Info("record", attrs...)
	return nil
}

// Counter counts the records a discarding sink received.
type Counter struct{ n atomic.Int64 }

// Load returns the count.
func (c *Counter) Load() int64 { return c.n.Load() }

// Discard ends in with a sink that drops every record and counts them, for
// benchmarks. The count is added once per batch of records, not per record.
func Discard[T any](in dataflow.Stream[T], name string, opts ...dataflow.Option) *Counter {
	c := &Counter{}
	dataflow.AddSink(in, name, func() dataflow.Operator[T] { return &discardOp[T]{c: c} }, opts...)
	return c
}

type discardOp[T any] struct {
	dataflow.OperatorBase
	c     *Counter
	local int64
}

func (o *discardOp[T]) Process(T, dataflow.Timestamp) error {
	o.local++
	if o.local == 4096 {
		o.c.n.Add(o.local)
		o.local = 0
	}
	return nil
}

func (o *discardOp[T]) Finish(context.Context) error { o.c.n.Add(o.local); o.local = 0; return nil }
