package netexchange

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/internal/exchange"
)

// runOrder writes records through a Writer whose one target is a Sender,
// with watermarks, barriers and an idle event between them, and checks that
// the consumer of the receiving gate sees exactly that sequence.
func runOrder(t *testing.T, url, subject string) {
	cfg := testConfig()
	cfg.Credit, cfg.GrantEvery = 4, 2 // many waits for credit
	p := newPipe(t, url, subject, cfg, exchange.NewGate[rec](1, 3, 16, nil))
	ctx := context.Background()
	w, err := exchange.NewWriter([]exchange.Target[rec]{{Remote: p.s}}, exchange.RoundRobin, 0, 128, 16)
	require.NoError(t, err)
	consumed := consumeAsync(ctx, p.gate)

	var want []item
	emit := func(ev exchange.Event) {
		require.NoError(t, w.Emit(ctx, ev))
		want = append(want, item{Event: ev})
	}
	for i := range 5000 {
		r := rec{A: int64(i), B: -int64(i), S: fmt.Sprintf("k%d", i%97)}
		require.NoError(t, w.Write(ctx, r))
		want = append(want, item{Rec: r})
		switch {
		case i%1000 == 999:
			emit(exchange.Event{Kind: exchange.Barrier, Value: int64(i / 1000)})
		case i%300 == 7:
			emit(exchange.Event{Kind: exchange.Watermark, Value: int64(i)})
		case i == 2500:
			emit(exchange.Event{Kind: exchange.Idle})
		}
	}
	emit(exchange.Event{Kind: exchange.EndOfInput})

	c := <-consumed
	require.NoError(t, c.err)
	got := c.got
	require.Equal(t, want, got)
	require.NoError(t, <-p.errc, "Run returns nil after the end of input")
	require.LessOrEqual(t, p.s.Sent(), p.s.Credit())
}

func TestOrderOfRecordsAndEvents(t *testing.T) {
	runOrder(t, startServer(t), Subject("test", "order", 0, 1))
}

// The same against the NATS server installed on the machine (Debian's 2.9),
// when one runs.
func TestOrderOnInstalledServer(t *testing.T) {
	url := localNATS(t)
	runOrder(t, url, Subject("sluicetest."+nats.NewInbox()[7:], "order", 0, 1))
}

func TestKeyedBatchesKeepKeyGroups(t *testing.T) {
	p := newPipe(t, startServer(t), Subject("test", "keyed", 3, 0), testConfig(), exchange.NewGate[rec](1, 4, 32, nil))
	ctx := context.Background()
	w, err := exchange.NewWriter([]exchange.Target[rec]{{Remote: p.s}}, exchange.Keyed, 0, 128, 32)
	require.NoError(t, err)
	consumed := consumeAsync(ctx, p.gate)
	var want []item
	var recs []rec
	var kgs []uint16
	for i := range 1000 {
		recs = append(recs, rec{A: int64(i), S: "x"})
		kgs = append(kgs, uint16(i*37%128))
		want = append(want, item{Rec: recs[i], Keyed: true, KG: kgs[i]})
	}
	require.NoError(t, w.WriteKeyed(ctx, recs[:500], kgs[:500]))
	require.NoError(t, w.WriteKeyed(ctx, recs[500:], kgs[500:]))
	require.NoError(t, w.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput}))
	want = append(want, item{Event: exchange.Event{Kind: exchange.EndOfInput}})
	c := <-consumed
	require.NoError(t, c.err)
	require.Equal(t, want, c.got)
	require.NoError(t, <-p.errc)
}

// A consumer that takes one message at a time, and only once its producer
// has stopped for want of credit, holds the producer to Credit messages
// beyond the gate channel's capacity, and loses nothing.
func TestSlowConsumerBoundsInFlight(t *testing.T) {
	const capacity, n = 3, 60
	cfg := testConfig()
	cfg.Credit, cfg.GrantEvery = 5, 2
	p := newPipe(t, startServer(t), Subject("test", "slow", 0, 0), cfg, exchange.NewGate[rec](1, capacity, 4, nil))
	ctx := context.Background()
	w, err := exchange.NewWriter([]exchange.Target[rec]{{Remote: p.s}}, exchange.RoundRobin, 0, 128, 4)
	require.NoError(t, err)
	wrote := make(chan error, 1)
	go func() {
		for i := range 4 * n {
			if err := w.Write(ctx, rec{A: int64(i)}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput})
	}()

	bound := uint64(cfg.Credit + capacity)
	var polled uint64
	next := int64(0)
	for {
		// Wait until the producer is as far ahead as credit lets it: the
		// last grant may lag by up to GrantEvery-1 messages.
		require.Eventually(t, func() bool {
			return p.s.Sent() >= min(polled+bound-uint64(cfg.GrantEvery-1), n+1)
		}, 10*time.Second, time.Millisecond)
		require.LessOrEqual(t, p.s.Sent(), polled+bound, "in flight beyond credit and gate capacity")
		_, m, ok := p.gate.Poll()
		if !ok {
			require.NoError(t, p.gate.Wait(ctx))
			continue
		}
		polled++
		if m.Batch == nil {
			require.Equal(t, exchange.EndOfInput, m.Event.Kind)
			break
		}
		for _, r := range m.Batch.Records {
			require.Equal(t, next, r.A, "nothing lost or reordered")
			next++
		}
		p.gate.Recycle(0, m.Batch)
	}
	require.EqualValues(t, 4*n, next)
	require.EqualValues(t, n+1, polled)
	require.NoError(t, <-wrote)
	require.NoError(t, <-p.errc)
	require.Greater(t, w.Blocked(), time.Duration(0), "the producer's wait for credit is its backpressure")
}

// With every grant after the first lost but the periodic ones, the sender
// still gets all its messages through.
func TestLostGrantsDoNotDeadlock(t *testing.T) {
	url := startServer(t)
	cfg := testConfig()
	cfg.Credit, cfg.GrantEvery = 2, 1
	subject := Subject("test", "lost", 0, 0)
	s, err := NewSender(connect(t, url), subject, cfg)
	require.NoError(t, err)
	defer s.Close()
	gate := exchange.NewGate[rec](1, 4, 1, nil)
	r, err := NewReceiver(connect(t, url), subject, gate, 0, cfg)
	require.NoError(t, err)
	var lost, regrants atomic.Int64
	r.dropGrant = func(total uint64, regrant bool) bool {
		if regrant {
			regrants.Add(1)
			return false
		}
		if total > uint64(cfg.Credit) {
			lost.Add(1)
			return true
		}
		return false
	}
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	const n = 20
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			b := &exchange.Batch[rec]{Records: []rec{{A: int64(i)}}}
			if _, err := s.Send(ctx, exchange.Message[rec]{Batch: b}); err != nil {
				sent <- err
				return
			}
		}
		_, err := s.Send(ctx, exchange.Message[rec]{Event: exchange.Event{Kind: exchange.EndOfInput}})
		sent <- err
	}()
	got, err := consume(ctx, gate)
	require.NoError(t, err)
	require.Len(t, got, n+1)
	for i := range n {
		require.EqualValues(t, i, got[i].Rec.A)
	}
	require.NoError(t, <-sent)
	require.NoError(t, <-errc)
	require.Positive(t, lost.Load())
	require.Positive(t, regrants.Load(), "the periodic grants carried the sender on")
}

// A receiver that grants before its sender subscribed loses that grant: the
// sender gets its credit from the next periodic grant.
func TestReceiverBeforeSender(t *testing.T) {
	url := startServer(t)
	cfg := testConfig()
	subject := Subject("test", "early", 1, 1)
	gate := exchange.NewGate[rec](1, 4, 1, nil)
	r, err := NewReceiver(connect(t, url), subject, gate, 0, cfg)
	require.NoError(t, err)
	wc := connect(t, url)
	watch, err := wc.SubscribeSync(CreditSubject(subject))
	require.NoError(t, err)
	require.NoError(t, wc.Flush())
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	first, err := watch.NextMsg(5 * time.Second)
	require.NoError(t, err)
	total, err := parseCredit(first.Data)
	require.NoError(t, err)
	require.EqualValues(t, cfg.Credit, total, "the first grant is the initial credit")

	s, err := NewSender(connect(t, url), subject, cfg)
	require.NoError(t, err)
	defer s.Close()
	sendAll(t, ctx, s, 10)
	got, err := consume(ctx, gate)
	require.NoError(t, err)
	require.Len(t, got, 11)
	require.NoError(t, <-errc)
}

// sendAll sends n one-record batches and the end of input.
func sendAll(t *testing.T, ctx context.Context, s *Sender[rec], n int) {
	t.Helper()
	for i := range n {
		_, err := s.Send(ctx, exchange.Message[rec]{Batch: &exchange.Batch[rec]{Records: []rec{{A: int64(i)}}}})
		require.NoError(t, err)
	}
	_, err := s.Send(ctx, exchange.Message[rec]{Event: exchange.Event{Kind: exchange.EndOfInput}})
	require.NoError(t, err)
}

// A sender that starts first waits for its receiver's first grant.
func TestSenderBeforeReceiver(t *testing.T) {
	url := startServer(t)
	cfg := testConfig()
	subject := Subject("test", "late", 0, 2)
	s, err := NewSender(connect(t, url), subject, cfg)
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	sent := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, exchange.Message[rec]{Event: exchange.Event{Kind: exchange.Watermark, Value: 5}})
		if err == nil {
			_, err = s.Send(ctx, exchange.Message[rec]{Event: exchange.Event{Kind: exchange.EndOfInput}})
		}
		sent <- err
	}()
	require.Zero(t, s.Sent(), "no credit, nothing sent")
	gate := exchange.NewGate[rec](1, 4, 1, nil)
	r, err := NewReceiver(connect(t, url), subject, gate, 0, cfg)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	got, err := consume(ctx, gate)
	require.NoError(t, err)
	require.Equal(t, []item{{Event: exchange.Event{Kind: exchange.Watermark, Value: 5}}, {Event: exchange.Event{Kind: exchange.EndOfInput}}}, got)
	require.NoError(t, <-sent)
	require.NoError(t, <-errc)
}

func TestNoReceiverTimesOut(t *testing.T) {
	cfg := testConfig()
	cfg.StartTimeout = 50 * time.Millisecond
	subject := Subject("test", "nobody", 4, 5)
	s, err := NewSender(connect(t, startServer(t)), subject, cfg)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Send(context.Background(), exchange.Message[rec]{Event: exchange.Event{Kind: exchange.Idle}})
	require.ErrorIs(t, err, ErrNoReceiver)
	require.ErrorContains(t, err, "test.nobody.4.5.credit within 50ms (is the receiver of test.nobody.4.5 running?)")
}

// Messages a receiver cannot take fail it with an error that says which and
// why; raw publishes stand for a broken or foreign sender.
func TestReceiverReportsBadMessages(t *testing.T) {
	url := startServer(t)
	good := func(seq uint64) []byte {
		b := appendHeader(nil, frameBatch, seq)
		b, err := Msgpack[rec]().AppendBatch(b, []rec{{A: 1}}, nil)
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name string
		msgs [][]byte
		is   error
		says string
	}{
		{"gap", [][]byte{good(1), good(4)}, ErrSequence, "got message 4 after 1: 2 lost"},
		{"repeat", [][]byte{good(1), good(1)}, ErrSequence, "got message 1 after 1: repeated"},
		{"tail", [][]byte{good(1), appendHeader(nil, frameSync, 1), good(2), appendHeader(nil, frameSync, 4)}, ErrSequence, "the sender has sent 4 messages, 2 came: the last 2 lost"},
		{"short", [][]byte{{frameBatch, 0, 0}}, ErrDecode, "3 bytes is shorter than a header"},
		{"type", [][]byte{appendHeader(nil, 9, 1)}, ErrDecode, "unknown type 9"},
		{"records", [][]byte{append(appendHeader(nil, frameBatch, 1), 0, 0x91, 0xc1, 0xc1)}, ErrDecode, "message 1 on test.records.0.0: netexchange: decode record 0 of 1"},
		{"count", [][]byte{append(appendHeader(nil, frameBatch, 1), 0, 0x92, 0xc1)}, ErrDecode, "2 records in 1 bytes"},
		{"trailing", [][]byte{append(good(1), 7)}, ErrDecode, "1 bytes after the last of 1 records"},
		{"event", [][]byte{appendEvent(nil, 1, exchange.Event{Kind: 42})}, ErrDecode, "unknown event kind 42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject := Subject("test", tc.name, 0, 0)
			gate := exchange.NewGate[rec](1, 4, 1, nil)
			rnc := connect(t, url)
			r, err := NewReceiver(rnc, subject, gate, 0, testConfig())
			require.NoError(t, err)
			require.NoError(t, rnc.Flush(), "the subscription is in place before the publishes")
			errc := make(chan error, 1)
			go func() { errc <- r.Run(context.Background()) }()
			pub := connect(t, url)
			for _, m := range tc.msgs {
				require.NoError(t, pub.Publish(subject, m))
			}
			err = <-errc
			require.ErrorIs(t, err, tc.is)
			require.ErrorContains(t, err, tc.says)
		})
	}
}

func TestSenderReportsBadGrant(t *testing.T) {
	url := startServer(t)
	subject := Subject("test", "badgrant", 0, 0)
	snc := connect(t, url)
	s, err := NewSender(snc, subject, testConfig())
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, snc.Flush())
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), exchange.Message[rec]{Event: exchange.Event{Kind: exchange.Idle}})
		done <- err
	}()
	require.NoError(t, connect(t, url).Publish(CreditSubject(subject), []byte("more please")))
	err = <-done
	require.ErrorIs(t, err, ErrDecode)
	require.ErrorContains(t, err, "credit for test.badgrant.0.0 on test.badgrant.0.0.credit")
}

// Cancelling the context releases a sender waiting for credit and a
// receiver waiting for room in its gate; Close releases both as well.
func TestCancelAndCloseRelease(t *testing.T) {
	url := startServer(t)
	idle := exchange.Message[rec]{Event: exchange.Event{Kind: exchange.Idle}}
	t.Run("cancel", func(t *testing.T) {
		cfg := testConfig()
		cfg.Credit, cfg.GrantEvery = 1, 1
		// Gate capacity 1 and a consumer that never polls: the second
		// message blocks the receiver in Gate.Send, the third the sender.
		p := newPipe(t, url, Subject("test", "cancel", 0, 0), cfg, exchange.NewGate[rec](1, 1, 1, nil))
		ctx, cancel := context.WithCancel(context.Background())
		_, err := p.s.Send(ctx, idle)
		require.NoError(t, err)
		_, err = p.s.Send(ctx, idle)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { _, err := p.s.Send(ctx, idle); done <- err }()
		require.Eventually(t, func() bool { return p.gate.Queued(0) == 1 }, 5*time.Second, time.Millisecond)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.EqualValues(t, 2, p.s.Sent())
		// The receiver's own context is cancelled by the cleanup; Close
		// is what releases it here, from inside Gate.Send.
		require.NoError(t, p.r.Close())
		require.ErrorIs(t, <-p.errc, ErrClosed)
	})
	t.Run("close", func(t *testing.T) {
		s, err := NewSender(connect(t, url), Subject("test", "close", 0, 0), testConfig())
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { _, err := s.Send(context.Background(), idle); done <- err }()
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close twice")
		require.ErrorIs(t, <-done, ErrClosed)
		_, err = s.Send(context.Background(), idle)
		require.ErrorIs(t, err, ErrClosed)

		r, err := NewReceiver(connect(t, url), Subject("test", "close", 1, 0), exchange.NewGate[rec](1, 1, 1, nil), 0, testConfig())
		require.NoError(t, err)
		require.NoError(t, r.Close())
		require.ErrorIs(t, r.Run(context.Background()), ErrClosed)
	})
}

// When a connection closes under them, a waiting sender and a receiver
// fail with nats.ErrConnectionClosed.
func TestConnectionClosed(t *testing.T) {
	url := startServer(t)
	subject := Subject("test", "conn", 0, 0)
	snc, rnc := connect(t, url), connect(t, url)
	s, err := NewSender(snc, subject, testConfig())
	require.NoError(t, err)
	defer s.Close()
	r, err := NewReceiver(rnc, subject, exchange.NewGate[rec](1, 1, 1, nil), 0, testConfig())
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	rnc.Close()
	err = <-errc
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	require.ErrorContains(t, err, subject)

	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), exchange.Message[rec]{Event: exchange.Event{Kind: exchange.Idle}})
		done <- err
	}()
	snc.Close()
	require.ErrorIs(t, <-done, nats.ErrConnectionClosed)
}

func TestConfigSubjectsAndArguments(t *testing.T) {
	require.Equal(t, "sluice.job1.a2.map.3.0", Subject("sluice.job1.a2", "map", 3, 0))
	require.Equal(t, "sluice.e.3.0.credit", CreditSubject(Subject("sluice", "e", 3, 0)))
	require.NoError(t, DefaultConfig[rec]().Validate())
	for _, tc := range []struct {
		edit func(*Config[rec])
		says string
	}{
		{func(c *Config[rec]) { c.Codec = nil }, "Codec is nil"},
		{func(c *Config[rec]) { c.Credit = 0 }, "Credit 0 must be at least 1"},
		{func(c *Config[rec]) { c.GrantEvery = 17 }, "GrantEvery 17 must be in [1, Credit=16]"},
		{func(c *Config[rec]) { c.RegrantInterval = 0 }, "RegrantInterval 0s"},
		{func(c *Config[rec]) { c.StartTimeout = -1 }, "StartTimeout -1ns"},
	} {
		cfg := DefaultConfig[rec]()
		tc.edit(&cfg)
		require.ErrorContains(t, cfg.Validate(), tc.says)
	}
	nc := connect(t, startServer(t))
	for _, bad := range []string{"", "a..b", "a.*.b", "a.>", "a b.c"} {
		_, err := NewSender(nc, bad, DefaultConfig[rec]())
		require.Error(t, err, bad)
	}
	g := exchange.NewGate[rec](2, 1, 1, nil)
	_, err := NewReceiver(nc, "a.b", g, 2, DefaultConfig[rec]())
	require.ErrorContains(t, err, "no channel 2 in the gate")
	s, err := NewSender(nc, "a.b", DefaultConfig[rec]())
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Send(context.Background(), exchange.Message[rec]{})
	require.ErrorContains(t, err, "neither a batch nor an event")
	_, err = s.Send(context.Background(), exchange.Message[rec]{Batch: &exchange.Batch[rec]{Records: []rec{{}}, KeyGroups: []uint16{1, 2}}})
	require.ErrorContains(t, err, "2 key groups for 1 records")
	require.Zero(t, s.Sent())
}

// A NATS server restart in the middle of a run loses what was in flight on
// core NATS; the receiver must then fail with ErrSequence, never go on
// without it. Either everything arrives in order or the loss is reported,
// and what arrived before is a prefix in order.
func TestServerRestartLosesNothingSilently(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	cfg := testConfig()
	cfg.Credit, cfg.GrantEvery = 8, 2
	p := newPipe(t, srv.URL(), Subject("test", "restart", 0, 0), cfg, exchange.NewGate[rec](1, 4, 8, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := exchange.NewWriter([]exchange.Target[rec]{{Remote: p.s}}, exchange.RoundRobin, 0, 128, 8)
	require.NoError(t, err)
	const n = 20000
	wrote := make(chan error, 1)
	go func() {
		for i := range n {
			if err := w.Write(ctx, rec{A: int64(i)}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput})
	}()
	consumed := consumeAsync(ctx, p.gate)
	require.Eventually(t, func() bool { return p.s.Sent() > 100 }, 10*time.Second, time.Millisecond)
	require.NoError(t, srv.Restart())

	// Run returns nil after the end of input, or the loss, found by the
	// next message or, if the last ones were lost, by the sender's sync.
	if runErr := <-p.errc; runErr == nil {
		c := <-consumed
		require.NoError(t, c.err)
		require.Len(t, c.got, n+1, "all arrived")
		for i := range n {
			require.EqualValues(t, i, c.got[i].Rec.A)
		}
		t.Log("nothing was in flight at the restart")
		require.NoError(t, <-wrote)
		return
	} else {
		require.ErrorIs(t, runErr, ErrSequence)
		t.Log(runErr)
	}
	cancel() // the sender may wait for credit that no longer comes
	c := <-consumed
	for i, it := range c.got {
		require.EqualValues(t, i, it.Rec.A, "before the gap, everything in order")
	}
	require.Less(t, len(c.got), n)
	<-wrote
}

// A keyed writer on node A with one consumer on A and one on B: each gets
// the records of its key groups, with them, and the barrier after them,
// whether its channel is in memory or over NATS.
func TestKeyedWriterOverTwoNodes(t *testing.T) {
	const maxP = 128
	gateA := exchange.NewGate[rec](1, 4, 16, nil)
	p := newPipe(t, startServer(t), Subject("test", "keyby", 0, 1), testConfig(), exchange.NewGate[rec](1, 4, 16, nil))
	ctx := context.Background()
	w, err := exchange.NewWriter([]exchange.Target[rec]{{Gate: gateA, Channel: 0}, {Remote: p.s}}, exchange.Keyed, 0, maxP, 16)
	require.NoError(t, err)
	onA, onB := consumeAsync(ctx, gateA), consumeAsync(ctx, p.gate)
	want := [2][]item{}
	for round := range 20 {
		var recs []rec
		var kgs []uint16
		for i := range 50 {
			r := rec{A: int64(round*50 + i), S: "k"}
			kg := uint16((round*50 + i) * 7 % maxP)
			recs, kgs = append(recs, r), append(kgs, kg)
			want[kg/64] = append(want[kg/64], item{Rec: r, Keyed: true, KG: kg})
		}
		require.NoError(t, w.WriteKeyed(ctx, recs, kgs))
	}
	for _, ev := range []exchange.Event{{Kind: exchange.Barrier, Value: 1}, {Kind: exchange.EndOfInput}} {
		require.NoError(t, w.Emit(ctx, ev))
		want[0], want[1] = append(want[0], item{Event: ev}), append(want[1], item{Event: ev})
	}
	a, b := <-onA, <-onB
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	require.Equal(t, want[0], a.got, "node A, in memory")
	require.Equal(t, want[1], b.got, "node B, over NATS")
	require.NoError(t, <-p.errc)
}
