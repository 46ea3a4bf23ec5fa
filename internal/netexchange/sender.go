package netexchange

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicedata/sluice/internal/exchange"
)

// Sender is the producer end of one remote channel: it publishes batches and
// events on the channel's data subject within the credit its Receiver grants.
// It implements exchange.Remote, so a Writer sends to it as to a local gate.
// Send belongs to one goroutine; Close may be called from any.
type Sender[E any] struct {
	nc      *nats.Conn
	subject string
	credit  string
	codec   Codec[E]
	start   time.Duration
	window  uint64 // Config.Credit

	sub    *nats.Subscription
	status chan nats.Status // CLOSED of the connection
	// granted is the cumulative credit: Send may publish sequence numbers
	// up to it. The credit subscription raises it and signals wake.
	granted atomic.Uint64
	wake    chan struct{}
	failed  atomic.Pointer[error] // a grant that could not be decoded
	sent    atomic.Uint64         // the last sequence number published
	done    chan struct{}
	once    sync.Once

	seq     uint64 // the last sequence number published, Send's copy
	started bool   // a first grant has come: later waits have no timeout
	buf     []byte
}

// NewSender returns the sender of the channel with data subject subject on
// nc. It subscribes to the channel's credit subject at once, so it hears the
// first grant of a receiver that starts later; Send waits for that grant.
func NewSender[E any](nc *nats.Conn, subject string, cfg Config[E]) (*Sender[E], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	s := &Sender[E]{
		nc: nc, subject: subject, credit: CreditSubject(subject), codec: cfg.Codec, start: cfg.StartTimeout, window: uint64(cfg.Credit),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	s.status = nc.StatusChanged(nats.CLOSED)
	sub, err := nc.Subscribe(s.credit, s.onGrant)
	if err != nil {
		nc.RemoveStatusListener(s.status)
		return nil, fmt.Errorf("netexchange: subscribe to %s: %w", s.credit, err)
	}
	s.sub = sub
	return s, nil
}

// onGrant runs on the credit subscription's goroutine, the only writer of
// granted.
func (s *Sender[E]) onGrant(m *nats.Msg) {
	total, err := parseCredit(m.Data)
	if err != nil {
		err = fmt.Errorf("netexchange: credit for %s on %s: %w", s.subject, s.credit, err)
		s.failed.CompareAndSwap(nil, &err)
	} else if total <= s.granted.Load() {
		// A repeated grant: the receiver got nothing for a while. If it
		// has not had all that was sent, the rest is in flight or lost;
		// a sync, published after it, tells which.
		if sent := s.sent.Load(); sent+s.window > total {
			if err := s.nc.Publish(s.subject, appendHeader(make([]byte, 0, headerLen), frameSync, sent)); err != nil && !s.nc.IsClosed() {
				err = fmt.Errorf("netexchange: sync on %s: %w", s.subject, err)
				s.failed.CompareAndSwap(nil, &err)
			}
		}
		return
	} else {
		s.granted.Store(total)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Subject is the data subject.
func (s *Sender[E]) Subject() string { return s.subject }

// Sent is the number of messages published so far; Credit is the cumulative
// credit granted so far. Sent never exceeds Credit. Both are safe to call
// from any goroutine.
func (s *Sender[E]) Sent() uint64 { return s.sent.Load() }

// Credit is the cumulative credit the receiver has granted (see Sent).
func (s *Sender[E]) Credit() uint64 { return s.granted.Load() }

// Send publishes m as the next message of the channel, first waiting for
// credit if the sender has used all it was granted, and returns how long it
// waited. A batch is encoded before Send returns, so the caller may reuse it
// at once. Send returns ctx.Err() if ctx ends while it waits, ErrNoReceiver
// if no credit came within Config.StartTimeout of the first Send, ErrClosed
// after Close, and an error wrapping nats.ErrConnectionClosed if the
// connection closed.
func (s *Sender[E]) Send(ctx context.Context, m exchange.Message[E]) (time.Duration, error) {
	select {
	case <-s.done:
		return 0, fmt.Errorf("%w: sender of %s", ErrClosed, s.subject)
	default:
	}
	if p := s.failed.Load(); p != nil {
		return 0, *p
	}
	seq := s.seq + 1
	var err error
	if m.Batch != nil {
		s.buf = appendHeader(s.buf[:0], frameBatch, seq)
		s.buf, err = s.codec.AppendBatch(s.buf, m.Batch.Records, m.Batch.KeyGroups)
		if err != nil {
			return 0, fmt.Errorf("netexchange: send on %s: %w", s.subject, err)
		}
	} else {
		if m.Event.Kind == exchange.NoEvent || m.Event.Kind > exchange.Idle {
			return 0, fmt.Errorf("netexchange: send on %s: a message with neither a batch nor an event (kind %d)", s.subject, m.Event.Kind)
		}
		s.buf = appendEvent(s.buf[:0], seq, m.Event)
	}
	var waited time.Duration
	if seq > s.granted.Load() {
		if waited, err = s.waitCredit(ctx, seq); err != nil {
			return waited, err
		}
	}
	s.started = true
	// Publish copies the data into the connection's buffer: s.buf is free
	// again when it returns.
	if err := s.nc.Publish(s.subject, s.buf); err != nil {
		return waited, fmt.Errorf("netexchange: publish on %s: %w", s.subject, err)
	}
	s.seq = seq
	s.sent.Store(seq)
	return waited, nil
}

// waitCredit waits until seq is within the credit.
func (s *Sender[E]) waitCredit(ctx context.Context, seq uint64) (time.Duration, error) {
	begin := time.Now()
	var timeout <-chan time.Time
	if !s.started {
		t := time.NewTimer(s.start)
		defer t.Stop()
		timeout = t.C
	}
	for seq > s.granted.Load() {
		if s.nc.IsClosed() {
			return time.Since(begin), fmt.Errorf("netexchange: wait for credit on %s: %w", s.credit, nats.ErrConnectionClosed)
		}
		select {
		case <-s.wake:
			if p := s.failed.Load(); p != nil {
				return time.Since(begin), *p
			}
		case <-s.status:
		case <-timeout:
			return time.Since(begin), fmt.Errorf("%w: sender of %s heard no grant on %s within %v (is the receiver of %s running?)",
				ErrNoReceiver, s.subject, s.credit, s.start, s.subject)
		case <-s.done:
			return time.Since(begin), fmt.Errorf("%w: sender of %s", ErrClosed, s.subject)
		case <-ctx.Done():
			return time.Since(begin), ctx.Err()
		}
	}
	return time.Since(begin), nil
}

// Close stops the sender: it unsubscribes from the credit subject and makes
// a Send waiting for credit return ErrClosed. It does not flush or close the
// connection. It is safe to call more than once and from any goroutine.
// A closed sender no longer answers repeated grants with a sync, so close it
// once its receiver has ended (or the job is being cancelled): the loss of
// its last messages would otherwise go unnoticed.
func (s *Sender[E]) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		s.nc.RemoveStatusListener(s.status)
		if uerr := s.sub.Unsubscribe(); uerr != nil && !s.nc.IsClosed() {
			err = fmt.Errorf("netexchange: unsubscribe from %s: %w", s.credit, uerr)
		}
	})
	return err
}
