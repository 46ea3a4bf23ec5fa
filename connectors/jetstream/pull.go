package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A partition is read by an ephemeral pull consumer of its own: AckNone,
// in-memory, filtered on the partition's subject filter, starting at the
// sequence after the last one emitted. The source does not use the consumer's
// acks or state for its position: that is the stream sequence it keeps (and
// checkpoints) per partition, so a consumer can be dropped and recreated at
// any time (after a reconnect, a server restart, lost messages) without
// losing or repeating a record.
//
// Pull requests and deliveries go over core NATS: the messages of all the
// subtask's consumers arrive on one Go channel, which Poll drains without
// blocking, a batch at a time. The source keeps up to PullBatch messages
// requested per partition and asks for more when half have arrived.
type partition struct {
	idx    int    // index among the subtask's partitions (watermarks)
	filter string // subject filter, or wholeStream

	// last is the stream sequence of the last record emitted, or the
	// position before the start. Meaningful if resolved: set at Open, or
	// by the first consumer of an Earliest or Time start.
	last     uint64
	resolved bool
	// strict: a first delivery after last+1 while the stream starts after
	// last+1 means messages were purged before they were read. False only
	// for a fresh Earliest or Time start until its first message.
	strict bool
	// start is the consumer start of a partition not yet resolved.
	start StartPosition

	bounded bool
	end     uint64 // bounded: the last sequence to read
	done    bool

	consumer    string // current consumer's name, "" if none
	sub         *nats.Subscription
	reqSubj     string
	outstanding int    // messages requested and not yet delivered or expired
	dseq        uint64 // consumer sequence of the last delivery
	checkFirst  bool   // the next delivery is the consumer's first
	seen        bool   // something arrived since the last maintenance
	lastActive  time.Time
	needsNew    bool      // the consumer must be recreated
	failSince   time.Time // first failed recreation in a row, zero if none
	retryAt     time.Time
	lastErr     error
}

// Status codes of JetStream pull responses (in the Status header).
const (
	statusHeartbeat = "100"
	statusNoMsgs    = "404"
	statusTimeout   = "408"
	statusConflict  = "409"
	statusNoReply   = "503"
)

// createConsumer (re)creates p's consumer starting after p.last (or at
// p.start if not resolved yet). Errors it returns are about reaching
// JetStream; a deleted or reset stream is reported as a fatal error through
// the second result.
func (s *source[T]) createConsumer(ctx context.Context, p *partition) (fatal, err error) {
	s.dropConsumer(p)
	info, err := s.streamInfo(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: stream %s on %s was deleted while partition %s was read at seq %d", ErrStreamDeleted, s.cfg.Stream, s.url, p.filter, p.last), nil
		}
		return nil, err
	}
	if !info.Created.Equal(s.created) {
		return fmt.Errorf("%w: stream %s on %s was deleted and created again (created %s before, %s now) while partition %s was read at seq %d", ErrStreamDeleted, s.cfg.Stream, s.url,
			s.created.UTC().Format(time.RFC3339Nano), info.Created.UTC().Format(time.RFC3339Nano), p.filter, p.last), nil
	}
	if p.resolved && info.State.LastSeq < p.last {
		return fmt.Errorf("%w: stream %s on %s ends at seq %d, before partition %s's position %d: was the stream deleted and recreated?", ErrStreamDeleted, s.cfg.Stream, s.url, info.State.LastSeq, p.filter, p.last), nil
	}
	inbox := s.nc.NewInbox()
	sub, err := s.nc.ChanSubscribe(inbox, s.ch)
	if err != nil {
		return nil, err
	}
	name := "sluice_" + inbox[strings.LastIndexByte(inbox, '.')+1:]
	cc := jetstream.ConsumerConfig{
		Name:              name,
		Description:       fmt.Sprintf("sluice source %s/%s subtask %d partition %s", s.oc.Job, s.oc.Operator, s.oc.Subtask, p.filter),
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: max(30*time.Second, 5*s.cfg.Heartbeat),
	}
	if p.filter != wholeStream {
		cc.FilterSubject = p.filter
	}
	switch {
	case p.resolved:
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = p.last + 1
	case p.start.kind == startTime:
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		t := p.start.t
		cc.OptStartTime = &t
	default: // Earliest not yet resolved
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	actx, cancel := apiContext(ctx)
	cons, err := s.js.CreateConsumer(actx, s.cfg.Stream, cc)
	cancel()
	if err != nil {
		_ = sub.Unsubscribe()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: stream %s on %s was deleted while partition %s was read", ErrStreamDeleted, s.cfg.Stream, s.url, p.filter), nil
		}
		return nil, err
	}
	if !p.resolved {
		// The server chose where an Earliest or Time start begins: the
		// position is just before it, and is checkpointed from now on, so
		// that messages purged before they were read are noticed after a
		// restore. The first consumer itself does not check (strict is
		// false): at a fresh start, whatever the stream holds is the start.
		p.last, p.resolved = cons.CachedInfo().Delivered.Stream, true
	}
	p.consumer, p.sub = name, sub
	p.reqSubj = s.apiPrefix + "CONSUMER.MSG.NEXT." + s.cfg.Stream + "." + name
	s.bySub[sub] = p
	p.outstanding, p.dseq = 0, 0
	p.checkFirst, p.needsNew = true, false
	p.failSince, p.lastErr = time.Time{}, nil
	p.lastActive = time.Now()
	if p.bounded && cons.CachedInfo().NumPending == 0 {
		// Nothing is left in the partition up to now, so nothing up to the
		// end captured at Open either: the end message was removed.
		s.finish(p)
	}
	return nil, nil
}

// dropConsumer forgets p's consumer: messages still on their way for it are
// ignored, and the consumer is deleted (if that fails, the server removes it
// after its inactivity threshold).
func (s *source[T]) dropConsumer(p *partition) {
	if p.sub == nil {
		return
	}
	delete(s.bySub, p.sub)
	_ = p.sub.Unsubscribe()
	p.sub = nil
	if p.consumer != "" && s.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.js.DeleteConsumer(ctx, s.cfg.Stream, p.consumer)
		cancel()
	}
	p.consumer = ""
}

// request asks p's consumer for n more messages.
func (s *source[T]) request(p *partition, n int) error {
	s.reqBuf = append(s.reqBuf[:0], `{"batch":`...)
	s.reqBuf = strconv.AppendInt(s.reqBuf, int64(n), 10)
	s.reqBuf = append(s.reqBuf, `,"expires":`...)
	s.reqBuf = strconv.AppendInt(s.reqBuf, int64(pullExpires(s.cfg.Heartbeat)), 10)
	s.reqBuf = append(s.reqBuf, `,"idle_heartbeat":`...)
	s.reqBuf = strconv.AppendInt(s.reqBuf, int64(s.cfg.Heartbeat), 10)
	s.reqBuf = append(s.reqBuf, '}')
	if err := s.nc.PublishRequest(p.reqSubj, p.sub.Subject, s.reqBuf); err != nil {
		return err
	}
	p.outstanding += n
	return nil
}

// pullExpires is how long a pull request waits at the server.
func pullExpires(hb time.Duration) time.Duration { return max(30*time.Second, 10*hb) }

// maintain runs before each Poll drains messages: it notices reconnects,
// recreates lost consumers (with retries up to RecoveryTimeout), recreates
// consumers that went silent, and keeps pull requests outstanding.
func (s *source[T]) maintain(ctx context.Context) error {
	now := time.Now()
	if r := s.nc.Stats().Reconnects; r != s.reconnects {
		// The server may have restarted: its consumers and waiting pull
		// requests are gone.
		s.reconnects = r
		for _, p := range s.parts {
			p.needsNew = true
		}
	}
	away := now.Sub(s.lastPoll) > s.cfg.Heartbeat/2
	s.lastPoll = now
	for _, p := range s.parts {
		if p.done {
			continue
		}
		if p.needsNew {
			if now.Before(p.retryAt) {
				continue
			}
			fatal, err := s.createConsumer(ctx, p)
			if fatal != nil {
				return fatal
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if p.failSince.IsZero() {
					p.failSince = now
				}
				p.lastErr = err
				if now.Sub(p.failSince) > s.cfg.RecoveryTimeout {
					return fmt.Errorf("%w: stream %s on %s: could not recreate the consumer of partition %s for %v: %w", ErrUnavailable, s.cfg.Stream, s.url, p.filter, s.cfg.RecoveryTimeout, err)
				}
				p.needsNew = true
				p.retryAt = now.Add(250 * time.Millisecond)
				continue
			}
			if p.done {
				continue
			}
		}
		switch {
		case p.seen || away:
			// While Poll was not called, silence proves nothing.
			p.lastActive, p.seen = now, false
		case now.Sub(p.lastActive) > 3*s.cfg.Heartbeat:
			// Neither messages nor heartbeats: the pull request or the
			// consumer was lost. Start over from the position.
			p.needsNew, p.retryAt = true, time.Time{}
			continue
		}
		if p.outstanding <= s.cfg.PullBatch/2 {
			if err := s.request(p, s.cfg.PullBatch-p.outstanding); err != nil {
				p.needsNew = true
			}
		}
	}
	return nil
}

// status handles a status message (heartbeat, expired request, deleted
// consumer) for p.
func (s *source[T]) status(ctx context.Context, p *partition, m *nats.Msg) error {
	p.seen = true
	code := m.Header.Get("Status")
	switch code {
	case statusHeartbeat:
		return nil
	case statusNoMsgs, statusTimeout:
		s.requestEnded(p, m)
		return nil
	case statusConflict:
		desc := strings.ToLower(m.Header.Get("Description"))
		if strings.Contains(desc, "consumer deleted") || strings.Contains(desc, "consumer is push based") {
			if _, err := s.streamInfo(ctx); errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("%w: stream %s on %s was deleted while partition %s was read at seq %d", ErrStreamDeleted, s.cfg.Stream, s.url, p.filter, p.last)
			}
			p.needsNew = true
			return nil
		}
		s.requestEnded(p, m)
		return nil
	case statusNoReply:
		// No responders: JetStream or the consumer is not there (yet).
		p.needsNew = true
		return nil
	}
	return fmt.Errorf("jetstream: stream %s on %s partition %s: unexpected status %s %q from the server", s.cfg.Stream, s.url, p.filter, code, m.Header.Get("Description"))
}

// requestEnded accounts for a pull request that ended with messages still
// owed: the server says how many in Nats-Pending-Messages.
func (s *source[T]) requestEnded(p *partition, m *nats.Msg) {
	if n, ok := parseInt(m.Header.Get("Nats-Pending-Messages")); ok {
		p.outstanding = max(0, p.outstanding-int(n))
		return
	}
	p.outstanding = 0
}

// ackInfo is what a JetStream message's reply subject says about it.
type ackInfo struct {
	sseq, dseq, pending uint64
	ts                  int64
}

// parseAck reads "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>"
// or the newer form with domain and account hash after ACK (and a token at
// the end), without allocating.
func parseAck(reply string) (a ackInfo, ok bool) {
	var dots [13]int
	n := 0
	for i := 0; i < len(reply); i++ {
		if reply[i] == '.' {
			if n == len(dots) {
				return a, false
			}
			dots[n] = i
			n++
		}
	}
	tokens := n + 1
	tok := func(i int) string {
		start := 0
		if i > 0 {
			start = dots[i-1] + 1
		}
		end := len(reply)
		if i < n {
			end = dots[i]
		}
		return reply[start:end]
	}
	var base int
	switch {
	case tokens == 9:
		base = 4
	case tokens >= 11:
		base = 6
	default:
		return a, false
	}
	if tok(0) != "$JS" || tok(1) != "ACK" {
		return a, false
	}
	var ok1, ok2, ok3, ok4 bool
	a.sseq, ok1 = parseUint(tok(base + 1))
	a.dseq, ok2 = parseUint(tok(base + 2))
	var ts uint64
	ts, ok3 = parseUint(tok(base + 3))
	a.ts = int64(ts)
	a.pending, ok4 = parseUint(tok(base + 4))
	return a, ok1 && ok2 && ok3 && ok4
}

func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
