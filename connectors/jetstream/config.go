package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicedata/sluice/dataflow"
)

// StartPosition says where a source starts reading when the job is not
// restored from a checkpoint or savepoint (a restored job always goes on
// from the positions in the checkpoint). The zero value is Earliest.
type StartPosition struct {
	kind startKind
	seq  uint64
	t    time.Time
}

type startKind uint8

const (
	startEarliest startKind = iota
	startLatest
	startSeq
	startTime
)

// Earliest starts at the first message of the stream: offset zero.
func Earliest() StartPosition { return StartPosition{} }

// Latest starts after the last message the stream holds when the source opens.
func Latest() StartPosition { return StartPosition{kind: startLatest} }

// Sequence starts at stream sequence seq (the first message at or after it
// of each partition). seq must be at least 1.
func Sequence(seq uint64) StartPosition { return StartPosition{kind: startSeq, seq: seq} }

// Time starts at the first message the stream stored at or after t.
func Time(t time.Time) StartPosition { return StartPosition{kind: startTime, t: t} }

// ParseStartPosition parses "earliest", "latest", "seq:N" or "time:T" (T in
// RFC 3339), as jobrunner's --start flag takes them.
func ParseStartPosition(s string) (StartPosition, error) {
	switch {
	case s == "earliest" || s == "":
		return Earliest(), nil
	case s == "latest":
		return Latest(), nil
	case strings.HasPrefix(s, "seq:"):
		n, err := strconv.ParseUint(s[4:], 10, 64)
		if err != nil || n == 0 {
			return StartPosition{}, fmt.Errorf("%w: %q: the sequence must be a number of at least 1", ErrConfig, s)
		}
		return Sequence(n), nil
	case strings.HasPrefix(s, "time:"):
		t, err := time.Parse(time.RFC3339Nano, s[5:])
		if err != nil {
			return StartPosition{}, fmt.Errorf("%w: %q: the time must be RFC 3339: %v", ErrConfig, s, err)
		}
		return Time(t), nil
	}
	return StartPosition{}, fmt.Errorf("%w: start position %q is not earliest, latest, seq:N or time:T", ErrConfig, s)
}

func (p StartPosition) String() string {
	switch p.kind {
	case startLatest:
		return "latest"
	case startSeq:
		return "seq:" + strconv.FormatUint(p.seq, 10)
	case startTime:
		return "time:" + p.t.UTC().Format(time.RFC3339Nano)
	}
	return "earliest"
}

// DecodePolicy says what a source does with a message it cannot decode (or
// whose event-time header it cannot parse). The zero value is Fail.
type DecodePolicy struct {
	kind    decodeKind
	subject string
}

type decodeKind uint8

const (
	decodeFail decodeKind = iota
	decodeSkip
	decodeDeadLetter
)

// Fail fails the job with an error naming the stream, subject and sequence.
func Fail() DecodePolicy { return DecodePolicy{} }

// Skip drops the message and counts it (SourceConfig.DecodeFailures).
func Skip() DecodePolicy { return DecodePolicy{kind: decodeSkip} }

// DeadLetter publishes the message's payload to subject, which must belong
// to a stream, and counts it. The dead letter keeps the original headers and
// gets these: Sluice-Source-Stream, Sluice-Source-Subject,
// Sluice-Source-Sequence and Sluice-Error. Its Nats-Msg-Id is
// "<stream>:<sequence>", so that the dead letter of a message read again
// after a restore is dropped as a duplicate by the dead-letter stream (within
// its duplicate window). The source waits for the dead letters' acks before
// it goes on.
func DeadLetter(subject string) DecodePolicy {
	return DecodePolicy{kind: decodeDeadLetter, subject: subject}
}

func (p DecodePolicy) String() string {
	switch p.kind {
	case decodeSkip:
		return "skip"
	case decodeDeadLetter:
		return "dead-letter to " + p.subject
	}
	return "fail"
}

// Counter is a count shared by the subtasks of a source, safe for
// concurrent use. Subtasks add to it once per batch.
type Counter struct{ n atomic.Int64 }

// Load returns the count.
func (c *Counter) Load() int64 { return c.n.Load() }

// MessageTime takes records' event time from their message rather than from
// the record: from a header, or else from the time the stream stored the
// message. Watermarks are bounded out-of-orderness, per partition.
type MessageTime struct {
	// Header, if set, names the header holding the event time, in RFC 3339
	// or as an integer of Unix milliseconds. A message without it, or with a
	// value that does not parse, is handled by the DecodePolicy. Empty means
	// the stream's timestamp.
	Header string
	// MaxOutOfOrderness is how much later a message may come than messages
	// with a later event time (see dataflow.BoundedOutOfOrderness).
	MaxOutOfOrderness time.Duration
	// Idleness, if positive, marks a partition idle after that long without
	// a message (see dataflow.WatermarkStrategy.WithIdleness).
	Idleness time.Duration
}

// SourceConfig configures a JetStream source. Zero fields take the defaults
// of DefaultSourceConfig.
type SourceConfig[T any] struct {
	// Conn says how to connect; ignored if Connect is set.
	Conn ConnConfig
	// Connect, if set, makes the connection of one subtask. It must return a
	// connection of the subtask's own: the source closes it.
	Connect func(ctx context.Context) (*nats.Conn, error)
	// Domain is the JetStream domain, if the server uses one.
	Domain string

	// Stream is the stream to read.
	Stream string
	// Partitions are subject filters of the stream, one per partition, for
	// example views.0 ... views.7 or views.eu.>. Partition p is read by
	// subtask p % parallelism; each partition is read in stream order and
	// has its own offset and watermark. Filters must not overlap. Empty
	// means one partition: the whole stream.
	Partitions []string
	// Start is where a job that is not restored starts; a restored job goes
	// on from its checkpoint.
	Start StartPosition
	// Bounded reads each partition up to the last message it holds when the
	// source opens (captured once, at Open), then ends: a backfill. Without
	// it the source runs until the job is stopped.
	Bounded bool

	// Decode makes a record of a message's payload. nil means JSON, or the
	// payload as it is for []byte and string records.
	Decode Decoder[T]
	// Watermarks, if set, takes event time from the record and makes
	// watermarks per partition. At most one of Watermarks and MessageTime.
	Watermarks dataflow.WatermarkStrategy[T]
	// MessageTime, if set, takes event time from the message.
	MessageTime *MessageTime
	// OnDecodeError is the policy for messages that cannot be decoded.
	OnDecodeError DecodePolicy
	// DecodeFailures, if set, counts the messages skipped or dead-lettered.
	DecodeFailures *Counter

	// PullBatch is how many messages each partition asks the server for at
	// a time (and at most holds in memory). Default 2048.
	PullBatch int
	// PollBatch is how many records one Poll emits at most. Default 1024.
	PollBatch int
	// PollWait is how long Poll waits for a message before it reports that
	// nothing is available. Default 5 ms.
	PollWait time.Duration
	// RecoveryTimeout bounds how long the source tries to get its consumers
	// back after the connection to the server was lost (a restart, a network
	// failure) before the job fails. Default 1 minute.
	RecoveryTimeout time.Duration
	// Heartbeat is the idle heartbeat the server sends on a waiting pull
	// request; after three missed, the consumer is recreated. Default 2 s.
	Heartbeat time.Duration
}

// Defaults of SourceConfig.
const (
	DefaultPullBatch       = 2048
	DefaultPollBatch       = 1024
	DefaultPollWait        = 5 * time.Millisecond
	DefaultRecoveryTimeout = time.Minute
	DefaultHeartbeat       = 2 * time.Second
)

func (c SourceConfig[T]) withDefaults() SourceConfig[T] {
	if c.PullBatch == 0 {
		c.PullBatch = DefaultPullBatch
	}
	if c.PollBatch == 0 {
		c.PollBatch = DefaultPollBatch
	}
	if c.PollWait == 0 {
		c.PollWait = DefaultPollWait
	}
	if c.RecoveryTimeout == 0 {
		c.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Decode == nil {
		c.Decode = defaultDecoder[T]()
	}
	return c
}

// Validate checks the configuration without connecting.
func (c SourceConfig[T]) Validate() error {
	if c.Connect == nil {
		if err := c.Conn.Validate(); err != nil {
			return err
		}
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". \t\r\n*>/\\") {
		return fmt.Errorf("%w: stream name %q is empty or has one of . * > / \\ or white space", ErrConfig, c.Stream)
	}
	for i, p := range c.Partitions {
		if err := validFilter(p); err != nil {
			return fmt.Errorf("%w: stream %s partition %d: %v", ErrConfig, c.Stream, i, err)
		}
		for _, q := range c.Partitions[:i] {
			if subjectsIntersect(p, q) {
				return fmt.Errorf("%w: stream %s: partitions %q and %q overlap: a message would be read twice", ErrConfig, c.Stream, q, p)
			}
		}
	}
	if c.Start.kind == startSeq && c.Start.seq == 0 {
		return fmt.Errorf("%w: stream %s: start sequence must be at least 1", ErrConfig, c.Stream)
	}
	if err := c.Watermarks.Validate(); err != nil {
		return fmt.Errorf("stream %s: %w", c.Stream, err)
	}
	if mt := c.MessageTime; mt != nil {
		if !c.Watermarks.IsZero() {
			return fmt.Errorf("%w: stream %s: set Watermarks or MessageTime, not both", ErrConfig, c.Stream)
		}
		if mt.MaxOutOfOrderness < 0 || mt.Idleness < 0 {
			return fmt.Errorf("%w: stream %s: negative out-of-orderness or idleness in MessageTime", ErrConfig, c.Stream)
		}
	}
	if c.OnDecodeError.kind == decodeDeadLetter {
		if err := validFilter(c.OnDecodeError.subject); err != nil || strings.ContainsAny(c.OnDecodeError.subject, "*>") {
			return fmt.Errorf("%w: stream %s: dead-letter subject %q is not a literal subject", ErrConfig, c.Stream, c.OnDecodeError.subject)
		}
		// Explicit filters only: the whole-stream partition reads the
		// stream's subjects, which Open checks against the dead-letter
		// subject (it usually belongs to another stream).
		for _, p := range c.Partitions {
			if subjectsIntersect(p, c.OnDecodeError.subject) {
				return fmt.Errorf("%w: stream %s: dead-letter subject %q is read by partition %q", ErrConfig, c.Stream, c.OnDecodeError.subject, p)
			}
		}
	}
	if c.PullBatch < 0 || c.PollBatch < 0 || c.PollWait < 0 || c.RecoveryTimeout < 0 || c.Heartbeat < 0 {
		return fmt.Errorf("%w: stream %s: negative batch size or duration", ErrConfig, c.Stream)
	}
	return nil
}

// wholeStream names the partition of a source without Partitions.
const wholeStream = ">"

func (c SourceConfig[T]) partitions() []string {
	if len(c.Partitions) == 0 {
		return []string{wholeStream}
	}
	return c.Partitions
}
