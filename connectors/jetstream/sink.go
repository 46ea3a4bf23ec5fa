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

	"github.com/sluicedata/sluice/dataflow"
)

// SinkConfig configures a JetStream sink. Zero fields take defaults.
type SinkConfig[T any] struct {
	// Conn says how to connect; ignored if Connect is set.
	Conn ConnConfig
	// Connect, if set, makes the connection of one subtask. It must return a
	// connection of the subtask's own: the sink closes it.
	Connect func(ctx context.Context) (*nats.Conn, error)
	// Domain is the JetStream domain, if the server uses one.
	Domain string
	// Subject gives the subject a record is published to. The subject must
	// belong to a stream, whose duplicate window makes commits idempotent.
	Subject func(v T) string
	// Encode makes a record's payload. nil means JSON, or the record as it
	// is for []byte and string records.
	Encode Encoder[T]
	// MaxTxnBytes bounds the payload bytes of one transaction (the records
	// between two checkpoints of a subtask), which are held in memory and in
	// the checkpoint. Default 64 MiB.
	MaxTxnBytes int
	// MaxInFlight is how many messages a commit has published and not yet
	// had acked at most. Default 1024.
	MaxInFlight int
	// AckTimeout bounds the wait for each ack. Default 30 s.
	AckTimeout time.Duration
}

// Defaults of SinkConfig.
const (
	DefaultMaxTxnBytes = 64 << 20
	DefaultMaxInFlight = 1024
	DefaultAckTimeout  = 30 * time.Second
)

// Validate checks the configuration without connecting.
func (c SinkConfig[T]) Validate() error {
	if c.Connect == nil {
		if err := c.Conn.Validate(); err != nil {
			return err
		}
	}
	if c.Subject == nil {
		return fmt.Errorf("%w: sink has no Subject function", ErrConfig)
	}
	if c.MaxTxnBytes < 0 || c.MaxInFlight < 0 || c.AckTimeout < 0 {
		return fmt.Errorf("%w: sink: negative MaxTxnBytes, MaxInFlight or AckTimeout", ErrConfig)
	}
	return nil
}

func (c SinkConfig[T]) withDefaults() SinkConfig[T] {
	if c.Encode == nil {
		c.Encode = defaultEncoder[T]()
	}
	if c.MaxTxnBytes == 0 {
		c.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	return c
}

// Sink publishes in's records to JetStream, exactly once within the target
// streams' duplicate windows: see the package documentation.
func Sink[T any](in dataflow.Stream[T], name string, cfg SinkConfig[T], opts ...dataflow.Option) {
	if err := cfg.Validate(); err != nil {
		if j := in.Job(); j != nil {
			j.ReportError(name, err)
		}
	}
	cfg = cfg.withDefaults()
	dataflow.AddSink(in, name, dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *Txn] {
		return NewCommitter(cfg)
	}), opts...)
}

// Txn is a sink transaction: the messages of one subtask between two
// checkpoints, with their subjects. It is recorded in the checkpoint when
// prepared, so that a restored job can publish it again.
type Txn struct {
	// ID is unique among every transaction of every run of the job's sink
	// subtask: "<job>/<sink>/<subtask>/<run>-<n>". Message i of the
	// transaction is published with Nats-Msg-Id "<ID>/<i>".
	ID   string   `msgpack:"id"`
	Msgs []TxnMsg `msgpack:"msgs"`
	size int
}

// TxnMsg is one message of a transaction.
type TxnMsg struct {
	Subject string `msgpack:"s"`
	Data    []byte `msgpack:"d"`
}

// Committer is the two-phase committer behind Sink, exported so that it can
// be driven directly (in tests, or by another sink). Like every operator of
// a subtask, it is used from one goroutine.
type Committer[T any] struct {
	cfg    SinkConfig[T]
	nc     *nats.Conn
	js     jetstream.JetStream
	url    string
	prefix string // "<job>/<sink>/<subtask>/<run>-"
	n      int
}

var _ dataflow.TwoPhaseCommitter[int, *Txn] = (*Committer[int])(nil)

// NewCommitter makes the committer of one sink subtask.
func NewCommitter[T any](cfg SinkConfig[T]) *Committer[T] {
	return &Committer[T]{cfg: cfg.withDefaults()}
}

// Open connects.
func (c *Committer[T]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	if err := c.cfg.Validate(); err != nil {
		return err
	}
	var err error
	c.url = c.cfg.Conn.URL
	if c.cfg.Connect != nil {
		c.nc, err = c.cfg.Connect(ctx)
		if err == nil && c.nc == nil {
			err = errors.New("Connect returned no connection")
		}
		if err != nil {
			return fmt.Errorf("%w: sink %s: %w", ErrConnect, oc.Operator, err)
		}
		c.url = c.nc.ConnectedUrlRedacted()
	} else if c.nc, err = Connect(ctx, c.cfg.Conn); err != nil {
		return fmt.Errorf("sink %s: %w", oc.Operator, err)
	}
	if c.cfg.Domain != "" {
		c.js, err = jetstream.NewWithDomain(c.nc, c.cfg.Domain)
	} else {
		c.js, err = jetstream.New(c.nc)
	}
	if err != nil {
		return fmt.Errorf("jetstream: sink %s on %s: %w", oc.Operator, c.url, err)
	}
	// A run of its own: transaction ids never repeat those of an earlier
	// run, whose messages may still be in the duplicate window.
	inbox := nats.NewInbox() // "_INBOX." and a random unique token (a NUID)
	c.prefix = fmt.Sprintf("%s/%s/%d/%s-", oc.Job, oc.Operator, oc.Subtask, inbox[strings.LastIndexByte(inbox, '.')+1:])
	return nil
}

// Begin starts an empty transaction.
func (c *Committer[T]) Begin(context.Context) (*Txn, error) {
	c.n++
	return &Txn{ID: c.prefix + strconv.Itoa(c.n)}, nil
}

// Write encodes v into txn.
func (c *Committer[T]) Write(_ context.Context, txn *Txn, v T, _ dataflow.Timestamp) error {
	subject := c.cfg.Subject(v)
	if subject == "" || strings.ContainsAny(subject, "*> \t\r\n") {
		return fmt.Errorf("%w: sink subject %q of a record is empty or not a literal subject", ErrPublish, subject)
	}
	data, err := c.cfg.Encode(v)
	if err != nil {
		return fmt.Errorf("jetstream: sink: encode a record for subject %s: %w", subject, err)
	}
	if txn.size+len(data) > c.cfg.MaxTxnBytes {
		return fmt.Errorf("jetstream: sink transaction %s would hold more than MaxTxnBytes=%d bytes (%d messages): take checkpoints more often or raise MaxTxnBytes", txn.ID, c.cfg.MaxTxnBytes, len(txn.Msgs))
	}
	txn.size += len(data)
	txn.Msgs = append(txn.Msgs, TxnMsg{Subject: subject, Data: data})
	return nil
}

// Prepare returns txn as it is: its messages are recorded in the checkpoint.
func (c *Committer[T]) Prepare(_ context.Context, txn *Txn) (*Txn, error) { return txn, nil }

// Commit publishes txn's messages with their message ids and waits for every
// ack. Publishing a transaction again (after a crash) is deduplicated by the
// streams within their duplicate window.
func (c *Committer[T]) Commit(ctx context.Context, txn *Txn) error {
	type inflight struct {
		f jetstream.PubAckFuture
		i int
	}
	window := make([]inflight, 0, min(len(txn.Msgs), c.cfg.MaxInFlight))
	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	wait := func(w inflight) error {
		timer.Reset(c.cfg.AckTimeout)
		select {
		case <-w.f.Ok():
			return nil
		case err := <-w.f.Err():
			return fmt.Errorf("%w: transaction %s message %d to subject %s on %s: %w", ErrPublish, txn.ID, w.i, txn.Msgs[w.i].Subject, c.url, err)
		case <-timer.C:
			return fmt.Errorf("%w: transaction %s message %d to subject %s on %s: no ack within %v", ErrPublish, txn.ID, w.i, txn.Msgs[w.i].Subject, c.url, c.cfg.AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	flush := func() error {
		for _, w := range window {
			if err := wait(w); err != nil {
				return err
			}
		}
		window = window[:0]
		return nil
	}
	for i, m := range txn.Msgs {
		if len(window) == cap(window) {
			if err := flush(); err != nil {
				return err
			}
		}
		msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{nats.MsgIdHdr: {txn.ID + "/" + strconv.Itoa(i)}}}
		f, err := c.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("%w: transaction %s message %d to subject %s on %s: %w", ErrPublish, txn.ID, i, m.Subject, c.url, err)
		}
		window = append(window, inflight{f, i})
	}
	return flush()
}

// Abort drops txn's messages: nothing of it was published.
func (c *Committer[T]) Abort(_ context.Context, txn *Txn) error {
	txn.Msgs, txn.size = nil, 0
	return nil
}

// Close closes the connection.
func (c *Committer[T]) Close() error {
	if c.nc != nil {
		c.nc.Close()
	}
	return nil
}
