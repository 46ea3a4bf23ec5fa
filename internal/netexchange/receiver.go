package netexchange

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicedata/sluice/internal/exchange"
)

// Receiver is the consumer end of one remote channel: it receives the
// messages of the channel's data subject and hands them, in sequence, to one
// channel of a local gate, granting credit as the gate takes them. Run
// belongs to one goroutine, the producer of that gate channel; Close may be
// called from any.
type Receiver[E any] struct {
	nc      *nats.Conn
	subject string
	credit  string
	gate    *exchange.Gate[E]
	channel int
	cfg     Config[E]

	sub    *nats.Subscription
	msgs   chan *nats.Msg
	status chan nats.Status
	done   chan struct{}
	once   sync.Once
	ran    bool
	mu     sync.Mutex
	stop   context.CancelFunc // Run's: Close releases a Gate.Send waiting for room

	next      uint64 // the sequence number expected next
	delivered uint64 // messages handed to the gate
	granted   uint64 // the last cumulative credit granted
	buf       []byte
	// dropGrant, set by tests, loses the grants for which it returns true
	// as the network might.
	dropGrant func(total uint64, regrant bool) bool
}

// NewReceiver returns the receiver of the channel with data subject subject
// on nc, feeding channel channel of gate. It subscribes at once; Run grants
// the first credit, so no message comes before Run.
func NewReceiver[E any](nc *nats.Conn, subject string, gate *exchange.Gate[E], channel int, cfg Config[E]) (*Receiver[E], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if gate == nil || channel < 0 || channel >= gate.Channels() {
		return nil, fmt.Errorf("netexchange: receiver of %s: no channel %d in the gate", subject, channel)
	}
	r := &Receiver[E]{
		nc: nc, subject: subject, credit: CreditSubject(subject), gate: gate, channel: channel, cfg: cfg,
		// The sender never has more than Credit messages beyond those
		// handed to the gate, and answers a repeated grant with at most
		// one sync (Run reads the sync before it repeats a grant), so
		// they all fit: nats.go drops a message only from a sender that
		// ignores its credit, and the gap is then reported.
		msgs: make(chan *nats.Msg, cfg.Credit+2),
		done: make(chan struct{}),
		next: 1,
	}
	r.status = nc.StatusChanged(nats.CLOSED)
	sub, err := nc.ChanSubscribe(subject, r.msgs)
	if err != nil {
		nc.RemoveStatusListener(r.status)
		return nil, fmt.Errorf("netexchange: subscribe to %s: %w", subject, err)
	}
	r.sub = sub
	return r, nil
}

// Subject is the data subject.
func (r *Receiver[E]) Subject() string { return r.subject }

// Run grants the first credit and hands the channel's messages to the gate
// in sequence until the end of input, which it hands on too, and then
// returns nil. It returns ctx.Err() when ctx ends, ErrClosed after Close, an
// error wrapping ErrSequence for a message out of sequence, ErrDecode for
// one it cannot decode, nats.ErrConnectionClosed when the connection closes,
// and the error of Gate.Send. It unsubscribes before it returns. Run may be
// called once.
func (r *Receiver[E]) Run(ctx context.Context) error {
	if r.ran {
		return fmt.Errorf("netexchange: receiver of %s: Run called twice", r.subject)
	}
	r.ran = true
	defer r.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.stop = cancel
	r.mu.Unlock()
	select {
	case <-r.done:
		return fmt.Errorf("%w: receiver of %s", ErrClosed, r.subject)
	default:
	}
	if err := r.grant(false); err != nil {
		return err
	}
	tick := time.NewTicker(r.cfg.RegrantInterval)
	defer tick.Stop()
	active := false
	for {
		select {
		case m := <-r.msgs:
			active = true
			end, err := r.deliver(ctx, m.Data)
			if err != nil {
				select {
				case <-r.done:
					return fmt.Errorf("%w: receiver of %s", ErrClosed, r.subject)
				default:
					return err
				}
			}
			if end {
				return nil
			}
		case <-tick.C:
			if !active {
				if err := r.grant(true); err != nil {
					return err
				}
			}
			active = false
		case <-r.status:
			if r.nc.IsClosed() {
				return fmt.Errorf("netexchange: receive on %s: %w", r.subject, nats.ErrConnectionClosed)
			}
		case <-r.done:
			return fmt.Errorf("%w: receiver of %s", ErrClosed, r.subject)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliver decodes one data message, hands it to the gate and grants credit
// when GrantEvery more have been handed on. end is true for the end of input.
func (r *Receiver[E]) deliver(ctx context.Context, data []byte) (end bool, err error) {
	if len(data) < headerLen {
		return false, fmt.Errorf("%w: message %d on %s: %d bytes is shorter than a header", ErrDecode, r.next, r.subject, len(data))
	}
	seq := binary.BigEndian.Uint64(data[1:headerLen])
	if data[0] == frameSync {
		// Every message up to seq was published before the sync, on the
		// same connection: those not here are lost.
		if seq >= r.next {
			return false, fmt.Errorf("%w: on %s the sender has sent %d messages, %d came: the last %d lost", ErrSequence, r.subject, seq, r.next-1, seq-r.next+1)
		}
		return false, nil
	}
	if seq != r.next {
		if seq > r.next {
			return false, fmt.Errorf("%w: on %s got message %d after %d: %d lost", ErrSequence, r.subject, seq, r.next-1, seq-r.next)
		}
		return false, fmt.Errorf("%w: on %s got message %d after %d: repeated or reordered (a sender of another run?)", ErrSequence, r.subject, seq, r.next-1)
	}
	var m exchange.Message[E]
	switch data[0] {
	case frameBatch:
		b := r.gate.NewBatch(r.channel, false)
		if err := r.cfg.Codec.DecodeBatch(data[headerLen:], b); err != nil {
			return false, fmt.Errorf("%w: message %d on %s: %w", ErrDecode, r.next, r.subject, err)
		}
		m.Batch = b
	case frameEvent:
		if m.Event, err = parseEvent(data); err != nil {
			return false, fmt.Errorf("message %d on %s: %w", r.next, r.subject, err)
		}
	default:
		return false, fmt.Errorf("%w: message %d on %s: unknown type %d", ErrDecode, r.next, r.subject, data[0])
	}
	if err := r.gate.Send(ctx, r.channel, m); err != nil {
		return false, err
	}
	r.next++
	r.delivered++
	if m.Event.Kind == exchange.EndOfInput {
		return true, nil
	}
	if r.delivered+uint64(r.cfg.Credit)-r.granted >= uint64(r.cfg.GrantEvery) {
		return false, r.grant(false)
	}
	return false, nil
}

// grant publishes the cumulative credit: what was handed to the gate plus
// the window.
func (r *Receiver[E]) grant(regrant bool) error {
	r.granted = r.delivered + uint64(r.cfg.Credit)
	if r.dropGrant != nil && r.dropGrant(r.granted, regrant) {
		return nil
	}
	r.buf = appendCredit(r.buf[:0], r.granted)
	if err := r.nc.Publish(r.credit, r.buf); err != nil {
		return fmt.Errorf("netexchange: grant credit on %s: %w", r.credit, err)
	}
	return nil
}

// Close unsubscribes and makes Run return ErrClosed. It is safe to call more
// than once and from any goroutine; it does not close the connection.
func (r *Receiver[E]) Close() error {
	var err error
	r.once.Do(func() {
		close(r.done)
		r.mu.Lock()
		if r.stop != nil {
			r.stop()
		}
		r.mu.Unlock()
		r.nc.RemoveStatusListener(r.status)
		if uerr := r.sub.Unsubscribe(); uerr != nil && !r.nc.IsClosed() {
			err = fmt.Errorf("netexchange: unsubscribe from %s: %w", r.subject, uerr)
		}
	})
	return err
}
