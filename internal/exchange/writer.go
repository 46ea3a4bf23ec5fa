package exchange

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Target is one consumer channel: a gate and a channel index in it, or a
// channel in another process reached through Remote.
type Target[E any] struct {
	Gate    *Gate[E]
	Channel int
	// Remote, if set, is used instead of Gate and Channel: the consumer
	// channel is in another process (package netexchange).
	Remote Remote[E]
}

// Remote is the producer end of a consumer channel in another process. It
// belongs to the writer's goroutine, like the writer.
type Remote[E any] interface {
	// Send sends m in order after the messages sent before it, waiting
	// while the channel has no room (no credit), and returns how long it
	// waited: the writer counts that as backpressure. Send must not retain
	// m.Batch after it returns: the writer reuses the batch at once.
	Send(ctx context.Context, m Message[E]) (waited time.Duration, err error)
}

// Mode says how a Writer spreads records over its targets.
type Mode uint8

const (
	// RoundRobin sends each record to the next target in turn (with one
	// target, to that one: a forward exchange).
	RoundRobin Mode = iota
	// Broadcast sends every record to every target.
	Broadcast
	// Keyed sends each record to the target that owns its key group; records
	// are written with WriteKeyed.
	Keyed
)

// Writer partitions records over targets and sends them in batches. It
// belongs to one producer goroutine.
type Writer[E any] struct {
	targets []Target[E]
	bufs    []*Batch[E]
	mode    Mode
	next    int      // RoundRobin: the next target
	owner   []uint16 // Keyed: the target index of each key group
	batch   int
	pending int // records buffered across all targets
	blocked atomic.Int64
}

// Blocked is the total time the writer waited for room in a full queue: its
// backpressure. It is safe to call from any goroutine.
func (w *Writer[E]) Blocked() time.Duration { return time.Duration(w.blocked.Load()) }

// NewWriter returns a writer over targets in mode, sending batches of
// batchSize records. A RoundRobin writer starts at target start (mod the
// number of targets), so that producers do not all begin with the same one.
// A Keyed writer's key groups are 0..maxParallelism-1 and target i owns
// those whose kg*len(targets)/maxParallelism is i (keygroup.Subtask).
func NewWriter[E any](targets []Target[E], mode Mode, start, maxParallelism, batchSize int) (*Writer[E], error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("exchange: writer without targets")
	}
	if batchSize < 1 {
		return nil, fmt.Errorf("exchange: batch size %d must be at least 1", batchSize)
	}
	for i, t := range targets {
		if t.Gate == nil && t.Remote == nil {
			return nil, fmt.Errorf("exchange: target %d has neither a gate nor a remote", i)
		}
	}
	w := &Writer[E]{targets: targets, bufs: make([]*Batch[E], len(targets)), mode: mode, batch: batchSize}
	switch mode {
	case RoundRobin:
		w.next = start % len(targets)
	case Keyed:
		if maxParallelism < len(targets) || maxParallelism > 1<<16 {
			return nil, fmt.Errorf("exchange: %d key groups for %d targets", maxParallelism, len(targets))
		}
		w.owner = make([]uint16, maxParallelism)
		for kg := range w.owner {
			w.owner[kg] = uint16(kg * len(targets) / maxParallelism)
		}
	case Broadcast:
	default:
		return nil, fmt.Errorf("exchange: unknown mode %d", mode)
	}
	return w, nil
}

// Write buffers e for its target (RoundRobin) or for every target
// (Broadcast) and sends a target's batch when it is full. A Keyed writer
// takes WriteKeyed instead.
func (w *Writer[E]) Write(ctx context.Context, e E) error {
	switch w.mode {
	case Broadcast:
		for i := range w.targets {
			if err := w.add(ctx, i, e); err != nil {
				return err
			}
		}
		return nil
	case Keyed:
		return fmt.Errorf("exchange: Write on a keyed writer (use WriteKeyed)")
	}
	i := w.next
	if w.next++; w.next == len(w.targets) {
		w.next = 0
	}
	return w.add(ctx, i, e)
}

func (w *Writer[E]) add(ctx context.Context, i int, e E) error {
	b := w.bufs[i]
	if b == nil {
		b = w.newBatch(i, false)
		w.bufs[i] = b
	}
	b.Records = append(b.Records, e)
	w.pending++
	if len(b.Records) >= w.batch {
		return w.send(ctx, i)
	}
	return nil
}

// WriteKeyed partitions a whole batch of records of a Keyed writer, each
// with its key group in kgs (parallel to es): every record is appended, with
// its key group, to the batch of the target owning it, and full batches are
// sent. The writer copies es and kgs; the caller may reuse them.
func (w *Writer[E]) WriteKeyed(ctx context.Context, es []E, kgs []uint16) error {
	if w.mode != Keyed {
		return fmt.Errorf("exchange: WriteKeyed on a writer that is not keyed")
	}
	if len(kgs) != len(es) {
		return fmt.Errorf("exchange: %d key groups for %d records", len(kgs), len(es))
	}
	owner := w.owner
	w.pending += len(es) // send subtracts what it sends
	for j := range es {
		kg := kgs[j]
		if int(kg) >= len(owner) {
			w.pending -= len(es) - j
			return fmt.Errorf("exchange: key group %d out of range [0,%d)", kg, len(owner))
		}
		i := owner[kg]
		b := w.bufs[i]
		if b == nil {
			b = w.newBatch(int(i), true)
			w.bufs[i] = b
		}
		b.Records = append(b.Records, es[j])
		b.KeyGroups = append(b.KeyGroups, kg)
		if len(b.Records) >= w.batch {
			if err := w.send(ctx, int(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// newBatch returns an empty batch for target i: one its gate recycled, or a
// new one for a remote target (which then keeps it, see send).
func (w *Writer[E]) newBatch(i int, keyed bool) *Batch[E] {
	t := w.targets[i]
	if t.Remote == nil {
		return t.Gate.NewBatch(t.Channel, keyed)
	}
	b := &Batch[E]{Records: make([]E, 0, w.batch)}
	if keyed {
		b.KeyGroups = make([]uint16, 0, w.batch)
	}
	return b
}

// send sends target i's batch.
func (w *Writer[E]) send(ctx context.Context, i int) error {
	b := w.bufs[i]
	w.pending -= len(b.Records)
	t := w.targets[i]
	if t.Remote != nil {
		return w.sendRemote(ctx, t.Remote, b)
	}
	w.bufs[i] = nil
	return t.Gate.send(ctx, t.Channel, Message[E]{Batch: b}, &w.blocked)
}

// sendRemote sends b to r and keeps b, emptied, as the target's buffer: the
// remote has encoded it and holds no reference to it.
func (w *Writer[E]) sendRemote(ctx context.Context, r Remote[E], b *Batch[E]) error {
	waited, err := r.Send(ctx, Message[E]{Batch: b})
	if waited > 0 {
		w.blocked.Add(int64(waited))
	}
	clear(b.Records) // drop references so a kept batch does not pin values
	b.Records, b.KeyGroups = b.Records[:0], b.KeyGroups[:0]
	return err
}

// Pending is the number of records buffered and not yet sent.
func (w *Writer[E]) Pending() int { return w.pending }

// Flush sends every non-empty buffer.
func (w *Writer[E]) Flush(ctx context.Context) error {
	if w.pending == 0 {
		return nil
	}
	for i, b := range w.bufs {
		if b == nil || len(b.Records) == 0 {
			continue
		}
		if err := w.send(ctx, i); err != nil {
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
		if t.Remote != nil {
			waited, err := t.Remote.Send(ctx, Message[E]{Event: ev})
			if waited > 0 {
				w.blocked.Add(int64(waited))
			}
			if err != nil {
				return err
			}
			continue
		}
		if err := t.Gate.send(ctx, t.Channel, Message[E]{Event: ev}, &w.blocked); err != nil {
			return err
		}
	}
	return nil
}
