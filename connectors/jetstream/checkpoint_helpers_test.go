package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

// The checkpoint tests run whole jobs through the dataflow runtime's
// checkpoints, restarts and restores against a real server, in the manner of
// dataflow/exactlyonce_test.go: the input is per-key increasing sequence
// numbers, a keyed operator counts per key in keyed state, and the checker
// counts lost, duplicated and out-of-order records and state errors in what
// the job committed. Every injected failure is counted, and a test whose
// failures did not fire fails.

// event is the input record: sequence number Seq of key Key (Seq % nKeys),
// with an event time in milliseconds for the windowed tests. A tick only
// moves its partition's watermark.
type event struct {
	Key  int   `json:"k"`
	Seq  int64 `json:"s"`
	At   int64 `json:"t,omitempty"`
	Tick bool  `json:"tick,omitempty"`
}

// counted is what the keyed count operator emits: the count it had for the
// key in keyed state when it saw seq.
type counted struct {
	Key   int   `json:"k"`
	Seq   int64 `json:"s"`
	Count int64 `json:"c"`
}

// inSubject is where key's records are published: one subject per
// partition, so that a key's records are in order in one partition.
func (f *fixture) inSubject(key, parts int) string {
	return f.subj(fmt.Sprintf("in.%d", key%parts))
}

func (f *fixture) inPartitions(parts int) []string {
	ps := make([]string, parts)
	for i := range ps {
		ps[i] = f.subj(fmt.Sprintf("in.%d", i))
	}
	return ps
}

// outStream makes a second stream for a job's output, with subjects
// "o<prefix>.<name>.>", and returns its name and subject prefix.
func (f *fixture) outStream(name string) (stream, prefix string) {
	f.t.Helper()
	stream = "O" + name + "_" + f.stream
	prefix = "o" + f.prefix + "." + name
	f.createStream(stream, prefix+".>")
	return stream, prefix
}

// publisher publishes events on its own connection. Every message has the
// id "in-<seq>", so a batch published again after an error (a server
// restart) is stored once.
type publisher struct {
	f     *fixture
	nc    *nats.Conn
	js    njs.JetStream
	parts int
	// retries counts batches published again after an error.
	retries atomic.Int64
}

func newPublisher(t *testing.T, f *fixture, parts int) *publisher {
	t.Helper()
	nc, err := nats.Connect(f.url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	require.NoError(t, err)
	return &publisher{f: f, nc: nc, js: js, parts: parts}
}

// publish publishes mk(seq) for seq in [from, to), batch messages at a time
// (waiting for their acks), one batch per pace (none if pace is 0), and
// returns when all are stored or ctx ends.
func (p *publisher) publish(ctx context.Context, from, to int64, batch int, pace time.Duration, mk func(seq int64) event) error {
	var tick <-chan time.Time
	if pace > 0 {
		t := time.NewTicker(pace)
		defer t.Stop()
		tick = t.C
	}
	futures := make([]njs.PubAckFuture, 0, batch)
	for start := from; start < to; start += int64(batch) {
		end := min(start+int64(batch), to)
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				p.retries.Add(1)
				if attempt > 200 {
					return fmt.Errorf("publish seqs %d..%d: gave up after %d attempts", start, end-1, attempt)
				}
				// Give the connection a moment to come back.
				backoff := time.NewTimer(20 * time.Millisecond)
				select {
				case <-backoff.C:
				case <-ctx.Done():
					backoff.Stop()
					return ctx.Err()
				}
			}
			futures = futures[:0]
			failed := false
			for seq := start; seq < end; seq++ {
				e := mk(seq)
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				m := &nats.Msg{Subject: p.f.inSubject(e.Key, p.parts), Data: b, Header: nats.Header{nats.MsgIdHdr: {"in-" + strconv.FormatInt(seq, 10)}}}
				fu, err := p.js.PublishMsgAsync(m)
				if err != nil {
					failed = true
					break
				}
				futures = append(futures, fu)
			}
			timeout := time.NewTimer(time.Second)
			for _, fu := range futures {
				select {
				case <-fu.Ok():
				case <-fu.Err():
					failed = true
				case <-timeout.C:
					failed = true
				case <-ctx.Done():
					timeout.Stop()
					return ctx.Err()
				}
				if failed {
					break
				}
			}
			timeout.Stop()
			if !failed {
				break
			}
		}
		if tick != nil && end < to {
			select {
			case <-tick:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// seqEvent is the event of sequence number seq among nKeys keys.
func seqEvent(nKeys int) func(seq int64) event {
	return func(seq int64) event { return event{Key: int(seq % int64(nKeys)), Seq: seq} }
}

// readStream returns the payloads of every message in stream, in stream
// order, read with an ordered consumer.
func readStream(t *testing.T, js njs.JetStream, stream string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	want := int(info.State.Msgs)
	var out [][]byte
	if want == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, njs.OrderedConsumerConfig{})
	require.NoError(t, err)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), njs.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			out = append(out, m.Data())
			n++
		}
		require.NoError(t, batch.Error())
		require.Positive(t, n, "stream %s: read %d of %d messages, then nothing more", stream, len(out), want)
	}
	return out
}

// decodeAll decodes JSON payloads.
func decodeAll[T any](t *testing.T, payloads [][]byte) []T {
	t.Helper()
	out := make([]T, len(payloads))
	for i, b := range payloads {
		require.NoError(t, json.Unmarshal(b, &out[i]), "message %d: %s", i, b)
	}
	return out
}

// checkResult is what exactly-once forbids: all must be zero.
type checkResult struct {
	Lost, Duplicated, OutOfOrder, StateErrors, UnknownKeys int
}

// check counts, for keys 0..nKeys-1 whose sequence numbers are k, k+nKeys,
// ... below total, the records lost, duplicated and out of order (in the
// order given), and counts that disagree with the sequence number (the key's
// state was lost or counted twice).
func check(outs []counted, nKeys int, total int64) checkResult {
	var r checkResult
	perKey := map[int][]counted{}
	for _, o := range outs {
		perKey[o.Key] = append(perKey[o.Key], o)
	}
	for k := range nKeys {
		seen := map[int64]int{}
		last := int64(-1)
		for _, o := range perKey[k] {
			seen[o.Seq]++
			if o.Seq <= last {
				r.OutOfOrder++
			}
			last = o.Seq
			if o.Count != (o.Seq-int64(k))/int64(nKeys)+1 {
				r.StateErrors++
			}
		}
		for seq := int64(k); seq < total; seq += int64(nKeys) {
			switch n := seen[seq]; {
			case n == 0:
				r.Lost++
			case n > 1:
				r.Duplicated += n - 1
			}
		}
		delete(perKey, k)
	}
	for _, os := range perKey {
		r.UnknownKeys += len(os)
	}
	return r
}

// checkInput checks the input stream itself: every sequence number once, in
// order per key, so that a fault the checker finds in the output is the
// job's and not the publisher's.
func checkInput(t *testing.T, f *fixture, nKeys int, total int64) {
	t.Helper()
	evs := decodeAll[event](t, readStream(t, f.js, f.stream))
	outs := make([]counted, len(evs))
	for i, e := range evs {
		outs[i] = counted{Key: e.Key, Seq: e.Seq, Count: (e.Seq-int64(e.Key))/int64(nKeys) + 1}
	}
	require.Equal(t, checkResult{}, check(outs, nKeys, total), "the input stream")
}

// errInjected is the failure the tests inject.
var errInjected = fmt.Errorf("injected failure")

// faults injects failures into a job and counts those that fired. It also
// watches the sink's commits.
type faults struct {
	fired atomic.Int32

	// The count operator fails at the first record with a sequence number
	// at or above each of failAt (once each).
	failAt []int64
	next   atomic.Int32

	// The sink fails right after a successful commit that brings the
	// committed messages to failCommitAt or more (0: never), and calls crash
	// (cancels the job's context: a process dying) right after one that
	// brings them to crashAt or more.
	failCommitAt, crashAt int64
	crash                 func()
	commitFailed, crashed atomic.Bool

	mu          sync.Mutex
	txns        map[string]bool // non-empty transactions committed
	committed   int64           // their messages
	republished int             // non-empty transactions committed again
	waiters     []waiter
}

type waiter struct {
	n  int64
	ch chan struct{}
}

func newFaults() *faults { return &faults{txns: map[string]bool{}} }

// committedAtLeast returns a channel closed once n messages were committed.
func (f *faults) committedAtLeast(n int64) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	if f.committed >= n {
		close(ch)
	} else {
		f.waiters = append(f.waiters, waiter{n, ch})
	}
	return ch
}

// commits records a successful commit and reports the messages committed.
func (f *faults) commits(txn *jetstream.Txn) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(txn.Msgs) == 0 {
		return f.committed
	}
	if f.txns[txn.ID] {
		f.republished++
		return f.committed
	}
	f.txns[txn.ID] = true
	f.committed += int64(len(txn.Msgs))
	f.waiters = slices.DeleteFunc(f.waiters, func(w waiter) bool {
		if f.committed >= w.n {
			close(w.ch)
			return true
		}
		return false
	})
	return f.committed
}

func committed(f *faults) int64 {
	n, _ := f.counts()
	return n
}

func (f *faults) counts() (committed int64, republished int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.committed, f.republished
}

// faultyCommitter is the JetStream sink's committer with fault injection
// after commits. Commits before the first Begin are those of a restore.
type faultyCommitter[T any] struct {
	*jetstream.Committer[T]
	f     *faults
	began bool
	// canCrash: the crash may come from this committer, made after the
	// commit failure (if one is planned) took its attempt down. Otherwise a
	// checkpoint whose commits carry the count past both failCommitAt and
	// crashAt (a slow machine, many records per checkpoint) would fail and
	// crash one attempt, with one restart instead of two.
	canCrash bool
}

func (c *faultyCommitter[T]) Begin(ctx context.Context) (*jetstream.Txn, error) {
	c.began = true
	return c.Committer.Begin(ctx)
}

func (c *faultyCommitter[T]) Commit(ctx context.Context, txn *jetstream.Txn) error {
	if err := c.Committer.Commit(ctx, txn); err != nil {
		return err
	}
	n := c.f.commits(txn)
	if len(txn.Msgs) == 0 || !c.began {
		// Not while restoring: a crash there could keep another subtask
		// from publishing its restored transactions again.
		return nil
	}
	if c.f.failCommitAt > 0 && n >= c.f.failCommitAt && c.f.commitFailed.CompareAndSwap(false, true) {
		c.f.fired.Add(1)
		return fmt.Errorf("after committing %s: %w", txn.ID, errInjected)
	}
	if c.canCrash && c.f.crashAt > 0 && n >= c.f.crashAt && c.f.crashed.CompareAndSwap(false, true) {
		c.f.fired.Add(1)
		c.f.crash()
	}
	return nil
}

// faultySink adds the JetStream sink with fault injection.
func faultySink[T any](in dataflow.Stream[T], name string, cfg jetstream.SinkConfig[T], f *faults) {
	dataflow.AddSink(in, name, dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *jetstream.Txn] {
		return &faultyCommitter[T]{Committer: jetstream.NewCommitter(cfg), f: f, canCrash: f.failCommitAt == 0 || f.commitFailed.Load()}
	}))
}

// countOp counts records per key in keyed state and fails where f says.
type countOp struct {
	dataflow.OperatorBase
	f     *faults
	out   dataflow.Output[counted]
	count *state.Value[int64]
}

func (c *countOp) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	c.count, err = state.NewValue[int64](oc.State(), "count")
	return err
}

func (c *countOp) Process(e event, ts dataflow.Timestamp) error {
	if i := c.f.next.Load(); int(i) < len(c.f.failAt) && e.Seq >= c.f.failAt[i] && c.f.next.CompareAndSwap(i, i+1) {
		c.f.fired.Add(1)
		return fmt.Errorf("count seq %d: %w", e.Seq, errInjected)
	}
	n, _, err := c.count.Get()
	if err != nil {
		return err
	}
	n++
	if err := c.count.Update(n); err != nil {
		return err
	}
	c.out.Collect(counted{Key: e.Key, Seq: e.Seq, Count: n}, ts)
	return nil
}

// eventually polls cond (which asks a server) until it holds, and fails
// with what() if it does not within d.
func eventually(t *testing.T, d time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what())
		}
		<-tick.C
	}
}

// testLogger sends a job's log to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// memTxn and memSink are an in-memory two-phase sink: a transaction is
// committed once, by id, into a store shared by every run of a test.
type memTxn[T any] struct {
	ID      string
	Records []T
}

type memStore[T any] struct {
	mu        sync.Mutex
	committed map[string]bool
	out       []T
	commits   int
}

func newMemStore[T any]() *memStore[T] { return &memStore[T]{committed: map[string]bool{}} }

func (s *memStore[T]) values() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.out)
}

func (s *memStore[T]) commitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

type memCommitter[T any] struct {
	st  *memStore[T]
	sub int
}

// memTxns numbers the transactions of every memCommitter: ids are never
// reused, also not by the committers of a restarted job.
var memTxns atomic.Int64

func (c *memCommitter[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	c.sub = oc.Subtask
	return nil
}
func (c *memCommitter[T]) Begin(context.Context) (*memTxn[T], error) {
	return &memTxn[T]{ID: fmt.Sprintf("%d-%d", c.sub, memTxns.Add(1))}, nil
}
func (c *memCommitter[T]) Write(_ context.Context, t *memTxn[T], v T, _ dataflow.Timestamp) error {
	t.Records = append(t.Records, v)
	return nil
}
func (c *memCommitter[T]) Prepare(_ context.Context, t *memTxn[T]) (*memTxn[T], error) {
	return t, nil
}
func (c *memCommitter[T]) Commit(_ context.Context, t *memTxn[T]) error {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if !c.st.committed[t.ID] {
		c.st.committed[t.ID] = true
		c.st.out = append(c.st.out, t.Records...)
		if len(t.Records) > 0 {
			c.st.commits++
		}
	}
	return nil
}
func (c *memCommitter[T]) Abort(context.Context, *memTxn[T]) error { return nil }
func (c *memCommitter[T]) Close() error                            { return nil }

// memSink adds an in-memory two-phase sink committing into st.
func memSink[T any](in dataflow.Stream[T], name string, st *memStore[T]) {
	dataflow.AddSink(in, name, dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *memTxn[T]] {
		return &memCommitter[T]{st: st}
	}))
}
