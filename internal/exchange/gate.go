package exchange

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what a control message carries.
type EventKind uint8

const (
	// NoEvent marks a message that carries records.
	NoEvent EventKind = iota
	// Watermark carries an event-time watermark in Event.Value.
	Watermark
	// Barrier carries a checkpoint barrier whose id is Event.Value.
	Barrier
	// EndOfInput says the producer will send nothing more on this channel.
	EndOfInput
	// Idle says the producer has no data for now: its watermark must not hold
	// the consumer back until it sends a record or a watermark again.
	Idle
)

// Event is a control element travelling in order with the records.
type Event struct {
	Kind  EventKind
	Value int64
}

// Batch is a batch of records. It travels by pointer: producer and consumer
// hand the same Batch back and forth (Gate.Recycle), so a channel moves no
// more than a pointer per batch and allocates nothing once warm.
type Batch[E any] struct {
	Records []E
	// KeyGroups holds, for a batch of a keyed exchange (Writer.WriteKeyed),
	// each record's key group, parallel to Records, so that the consumer
	// need not hash the key again; it is nil otherwise.
	KeyGroups []uint16
}

// Len is the number of records in b.
func (b *Batch[E]) Len() int { return len(b.Records) }

// Message is one entry in a channel: a batch of records or one event.
type Message[E any] struct {
	Batch *Batch[E] // nil for an event
	Event Event
}

type channel[E any] struct {
	ring    []Message[E]
	head    int
	n       int
	blocked bool
	// notFull wakes this channel's producer; buffered so a wake-up is never lost.
	notFull chan struct{}
	free    []*Batch[E] // recycled batches for the producer
}

// Gate is the input of one consumer subtask. See the package doc for the concurrency contract.
type Gate[E any] struct {
	mu    sync.Mutex
	chans []channel[E]
	ready int // messages in non-blocked channels
	next  int // round-robin start
	// notify wakes the consumer; it may be shared by several gates of one task.
	notify chan struct{}
	batch  int
}

// NewGate returns a gate with n channels of capacity messages each. notify wakes
// the consumer when a message arrives; pass a channel of capacity 1 shared by
// all gates of a task, or nil to have one made.
func NewGate[E any](n, capacity, batchSize int, notify chan struct{}) *Gate[E] {
	if notify == nil {
		notify = make(chan struct{}, 1)
	}
	g := &Gate[E]{chans: make([]channel[E], n), notify: notify, batch: batchSize}
	for i := range g.chans {
		g.chans[i].ring = make([]Message[E], capacity)
		g.chans[i].notFull = make(chan struct{}, 1)
	}
	return g
}

// Channels is the number of input channels.
func (g *Gate[E]) Channels() int { return len(g.chans) }

// Notify is the channel that is signalled when a message arrives.
func (g *Gate[E]) Notify() <-chan struct{} { return g.notify }

// Send appends m to channel ch, waiting while the channel is full. It returns
// ctx.Err() if the context ends first.
func (g *Gate[E]) Send(ctx context.Context, ch int, m Message[E]) error {
	return g.send(ctx, ch, m, nil)
}

// send is Send adding the time it waited for room to *blocked, if not nil.
func (g *Gate[E]) send(ctx context.Context, ch int, m Message[E], blocked *atomic.Int64) error {
	c := &g.chans[ch]
	for {
		g.mu.Lock()
		if c.n < len(c.ring) {
			c.ring[(c.head+c.n)%len(c.ring)] = m
			c.n++
			if !c.blocked {
				g.ready++
			}
			g.mu.Unlock()
			select {
			case g.notify <- struct{}{}:
			default:
			}
			return nil
		}
		g.mu.Unlock()
		var start time.Time
		if blocked != nil {
			start = time.Now()
		}
		select {
		case <-c.notFull:
		case <-ctx.Done():
			return ctx.Err()
		}
		if blocked != nil {
			blocked.Add(int64(time.Since(start)))
		}
	}
}

// Poll takes the next message from a non-blocked channel, round-robin over the
// channels so none starves. ok is false if none is available.
func (g *Gate[E]) Poll() (ch int, m Message[E], ok bool) {
	g.mu.Lock()
	if g.ready == 0 {
		g.mu.Unlock()
		return 0, m, false
	}
	n := len(g.chans)
	for i := 0; i < n; i++ {
		ch = (g.next + i) % n
		c := &g.chans[ch]
		if c.blocked || c.n == 0 {
			continue
		}
		m = c.ring[c.head]
		c.ring[c.head] = Message[E]{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
		g.ready--
		// Keep draining a channel that has records; move on after an event so
		// control events of all channels are seen promptly.
		if m.Event.Kind == NoEvent {
			g.next = ch
		} else {
			g.next = ch + 1
		}
		g.mu.Unlock()
		select {
		case c.notFull <- struct{}{}:
		default:
		}
		return ch, m, true
	}
	g.mu.Unlock()
	return 0, m, false
}

// Wait blocks until a message may be available or ctx ends.
func (g *Gate[E]) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-g.notify:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Block stops Poll from returning messages of channel ch (barrier alignment).
func (g *Gate[E]) Block(ch int) {
	g.mu.Lock()
	c := &g.chans[ch]
	if !c.blocked {
		c.blocked = true
		g.ready -= c.n
	}
	g.mu.Unlock()
}

// UnblockAll makes every channel readable again.
func (g *Gate[E]) UnblockAll() {
	g.mu.Lock()
	for i := range g.chans {
		c := &g.chans[i]
		if c.blocked {
			c.blocked = false
			g.ready += c.n
		}
	}
	g.mu.Unlock()
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// Queued returns the number of messages waiting in channel ch.
func (g *Gate[E]) Queued(ch int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.chans[ch].n
}

// Recycle hands a processed batch back to the producer of channel ch for reuse.
// The consumer must not touch b afterwards.
func (g *Gate[E]) Recycle(ch int, b *Batch[E]) {
	if b == nil || cap(b.Records) < g.batch {
		return
	}
	clear(b.Records[:cap(b.Records)]) // drop references so recycled batches do not pin values
	b.Records, b.KeyGroups = b.Records[:0], b.KeyGroups[:0]
	g.mu.Lock()
	c := &g.chans[ch]
	if len(c.free) < len(c.ring)+1 {
		c.free = append(c.free, b)
	}
	g.mu.Unlock()
}

// NewBatch returns an empty batch for the producer of channel ch to fill and
// Send, reusing one the consumer recycled if any; keyed batches have room for
// key groups. Writers use it, and so does a producer that is not a Writer,
// such as the receiver of a remote channel. Only that channel's producer
// goroutine may call it.
func (g *Gate[E]) NewBatch(ch int, keyed bool) *Batch[E] {
	g.mu.Lock()
	c := &g.chans[ch]
	if k := len(c.free); k > 0 {
		b := c.free[k-1]
		c.free = c.free[:k-1]
		g.mu.Unlock()
		if keyed && b.KeyGroups == nil {
			b.KeyGroups = make([]uint16, 0, g.batch)
		}
		return b
	}
	g.mu.Unlock()
	b := &Batch[E]{Records: make([]E, 0, g.batch)}
	if keyed {
		b.KeyGroups = make([]uint16, 0, g.batch)
	}
	return b
}
