package exchange

import (
	"context"
	"sync/atomic"
	"time"
)

// Target is one consumer channel: a gate and a channel index in it.
type Target[E any] struct {
	Gate    *Gate[E]
	Channel int
}

// Partitioner picks the target index (0..n-1) for a record; n is the number of targets.
type Partitioner[E any] func(e E, n int) int

// Writer partitions records over targets and sends them in batches. Broadcast
// writers (nil partitioner with Broadcast set) send every record to every target.
type Writer[E any] struct {
	targets   []Target[E]
	bufs      [][]E
	part      Partitioner[E]
	broadcast bool
	batch     int
	pending   int // records buffered across all targets
	blocked   atomic.Int64
}

// Blocked is the total time the writer waited for room in a full queue: its
// backpressure. It is safe to call from any goroutine.
func (w *Writer[E]) Blocked() time.Duration { return time.Duration(w.blocked.Load()) }

// NewWriter returns a writer over targets. part chooses a target per record; if
// broadcast is true every record goes to every target and part is ignored.
func NewWriter[E any](targets []Target[E], part Partitioner[E], broadcast bool, batchSize int) *Writer[E] {
	w := &Writer[E]{targets: targets, bufs: make([][]E, len(targets)), part: part, broadcast: broadcast, batch: batchSize}
	return w
}

// Write buffers e for its target and sends the target's batch when full.
func (w *Writer[E]) Write(ctx context.Context, e E) error {
	if w.broadcast {
		for i := range w.targets {
			if err := w.add(ctx, i, e); err != nil {
				return err
			}
		}
		return nil
	}
	i := 0
	if len(w.targets) > 1 {
		i = w.part(e, len(w.targets))
	}
	return w.add(ctx, i, e)
}

func (w *Writer[E]) add(ctx context.Context, i int, e E) error {
	b := w.bufs[i]
	if b == nil {
		t := w.targets[i]
		b = t.Gate.newBatch(t.Channel)
	}
	b = append(b, e)
	w.pending++
	if len(b) >= w.batch {
		w.bufs[i] = nil
		w.pending -= len(b)
		t := w.targets[i]
		return t.Gate.send(ctx, t.Channel, Message[E]{Records: b}, &w.blocked)
	}
	w.bufs[i] = b
	return nil
}

// Pending is the number of records buffered and not yet sent.
func (w *Writer[E]) Pending() int { return w.pending }

// Flush sends every non-empty buffer.
func (w *Writer[E]) Flush(ctx context.Context) error {
	if w.pending == 0 {
		return nil
	}
	for i, b := range w.bufs {
		if len(b) == 0 {
			continue
		}
		w.bufs[i] = nil
		w.pending -= len(b)
		t := w.targets[i]
		if err := t.Gate.send(ctx, t.Channel, Message[E]{Records: b}, &w.blocked); err != nil {
			return err
		}
	}
	return nil
}

// Emit flushes the buffers and sends ev to every target, so it follows every
// record written before it.
func (w *Writer[E]) Emit(ctx context.Context, ev Event) error {
	if err := w.Flush(ctx); err != nil {
		return err
	}
	for _, t := range w.targets {
		if err := t.Gate.send(ctx, t.Channel, Message[E]{Event: ev}, &w.blocked); err != nil {
			return err
		}
	}
	return nil
}
