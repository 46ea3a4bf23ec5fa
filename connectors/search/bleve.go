package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/blevesearch/bleve/v2/mapping"

	"github.com/sluicedata/sluice/dataflow"
)

// BleveConfig configures a sink indexing records of type T into an embedded
// Bleve index.
type BleveConfig[T any] struct {
	// Path is the index directory, shared by every subtask of the sink. It is
	// created, with Mapping, if it does not exist or is empty.
	Path string
	// Mapping is the index mapping of a new index; nil means Bleve's default
	// (every field indexed and stored, types detected). An existing index
	// keeps the mapping it was created with.
	Mapping mapping.IndexMapping
	// ID returns a record's document id: deterministic, so that a replayed
	// record overwrites its document instead of adding another. It must be
	// non-empty valid UTF-8 of at most 512 bytes. nil means a hash (SHA-256,
	// 128 bits in hex) of the encoded record: identical records then become
	// one document.
	ID func(T) string
	// Encode returns a record's document, a JSON object. nil means
	// encoding/json (fields named by their `json` tags).
	Encode func(T) ([]byte, error)
	// MaxEpochBytes bounds the encoded documents a subtask holds for one
	// checkpoint epoch; more fails the job with ErrEpochTooLarge. Default
	// DefaultMaxEpochBytes; negative means no limit.
	MaxEpochBytes int
	// LockTimeout is how long opening the index waits for another process to
	// release it before failing with ErrIndexLocked. Default
	// DefaultLockTimeout.
	LockTimeout time.Duration
}

func (c BleveConfig[T]) withDefaults() BleveConfig[T] {
	if c.MaxEpochBytes == 0 {
		c.MaxEpochBytes = DefaultMaxEpochBytes
	} else if c.MaxEpochBytes < 0 {
		c.MaxEpochBytes = math.MaxInt
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = DefaultLockTimeout
	}
	return c
}

// Validate checks the settings.
func (c BleveConfig[T]) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (c BleveConfig[T]) validate() error {
	if c.Path == "" {
		return errors.New("Path is empty")
	}
	if c.LockTimeout < 0 {
		return fmt.Errorf("LockTimeout %v is negative", c.LockTimeout)
	}
	if c.Mapping != nil {
		if err := c.Mapping.Validate(); err != nil {
			return fmt.Errorf("Mapping: %w", err)
		}
	}
	return nil
}

// BleveSink ends in with an exactly-once sink named name indexing records
// into the Bleve index at cfg.Path (see the package documentation). A bad
// configuration is reported by the job's Validate, Plan and Run.
func BleveSink[T any](in dataflow.Stream[T], name string, cfg BleveConfig[T], opts ...dataflow.Option) {
	newOp, err := NewBleveSink(name, cfg)
	if err != nil {
		if job := in.Job(); job != nil {
			job.ReportError(name, err)
		}
		newOp = func() dataflow.Operator[T] { return nil } // never built: the job is invalid
	}
	dataflow.AddSink(in, name, newOp, opts...)
}

// NewBleveSink checks cfg and returns the factory of the sink's operator, one
// per subtask, for dataflow.AddSink. BleveSink is the usual way to add the
// sink; NewBleveSink serves custom wiring and tests that drive the operator
// by hand. The operator is a dataflow.TwoPhaseCommitSink: it implements
// dataflow.Snapshotter and dataflow.CheckpointListener.
func NewBleveSink[T any](name string, cfg BleveConfig[T]) (func() dataflow.Operator[T], error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: Bleve sink %q: %w", ErrConfig, name, err)
	}
	cfg = cfg.withDefaults()
	return func() dataflow.Operator[T] {
		c := &bleveCommitter[T]{name: name, cfg: cfg, enc: newEncoder(cfg.Encode, cfg.ID)}
		op := dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[T, *bleveEpoch] { return c })()
		return &checkpointOp[T]{Operator: op, setCheckpoint: func(id int64) { c.checkpoint = id }}
	}, nil
}

// checkpointOp is a two-phase commit sink told the id of the checkpoint
// each transaction is prepared for.
type checkpointOp[T any] struct {
	dataflow.Operator[T]
	setCheckpoint func(int64)
}

var (
	_ dataflow.Snapshotter        = (*checkpointOp[int])(nil)
	_ dataflow.CheckpointListener = (*checkpointOp[int])(nil)
)

func (o *checkpointOp[T]) SnapshotState(ctx context.Context, id int64) ([]byte, error) {
	o.setCheckpoint(id)
	return o.Operator.(dataflow.Snapshotter).SnapshotState(ctx, id)
}

func (o *checkpointOp[T]) NotifyCheckpointComplete(ctx context.Context, id int64) error {
	return o.Operator.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, id)
}

// bleveEpoch is a transaction of the Bleve sink: the documents of one
// checkpoint epoch of one subtask. Its exported fields are what checkpoints
// record, everything Commit needs after a restart.
type bleveEpoch struct {
	Job        string `msgpack:"job"`
	Sink       string `msgpack:"sink"`
	Subtask    int    `msgpack:"subtask"`
	Checkpoint int64  `msgpack:"checkpoint"`
	Docs       []Doc  `msgpack:"docs"`

	buf *epochDocs // while being written
}

// bleveCommitter is the Bleve sink's TwoPhaseCommitter. Like every
// TwoPhaseCommitter it is used from its subtask's goroutine only; the index
// it writes is shared with the other subtasks of the process.
type bleveCommitter[T any] struct {
	name string
	cfg  BleveConfig[T]
	enc  encoder[T]

	oc         *dataflow.OperatorContext
	ix         *sharedIndex
	checkpoint int64 // set before Prepare by checkpointOp
	lastDocs   int   // documents in the last epoch prepared
	restoredID int64
}

var (
	_ dataflow.TwoPhaseCommitter[int, *bleveEpoch] = (*bleveCommitter[int])(nil)
	_ dataflow.OrphanCleaner                       = (*bleveCommitter[int])(nil)
)

func (c *bleveCommitter[T]) errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: Bleve sink %q, index %s: "+format, append([]any{sentinel, c.name, c.cfg.Path}, args...)...)
}

func (c *bleveCommitter[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	c.oc = oc
	c.restoredID = math.MinInt64
	if oc.Restored != nil {
		c.restoredID = oc.Restored.CheckpointID
	}
	ix, err := acquire(c.cfg.Path, true, c.cfg.Mapping, c.cfg.LockTimeout)
	if err != nil {
		return fmt.Errorf("Bleve sink %q: %w", c.name, err)
	}
	c.ix = ix
	return nil
}

func (c *bleveCommitter[T]) Begin(context.Context) (*bleveEpoch, error) {
	return &bleveEpoch{Job: c.oc.Job, Sink: c.name, Subtask: c.oc.Subtask, buf: newEpochDocs(c.lastDocs)}, nil
}

func (c *bleveCommitter[T]) Write(_ context.Context, e *bleveEpoch, v T, _ dataflow.Timestamp) error {
	id, src, err := c.enc.doc(v)
	if err != nil {
		return c.errorf(ErrDocument, "%w", err)
	}
	e.buf.add(Doc{ID: id, Source: src}, false)
	if e.buf.bytes > c.cfg.MaxEpochBytes {
		return c.errorf(ErrEpochTooLarge, "subtask %d holds %d documents in %d bytes since the last checkpoint, more than %d: shorten the checkpoint interval or raise MaxEpochBytes",
			c.oc.Subtask, len(e.buf.docs), e.buf.bytes, c.cfg.MaxEpochBytes)
	}
	return nil
}

// Prepare hands the epoch's documents to the checkpoint: nothing is written
// to the index before the checkpoint completes.
func (c *bleveCommitter[T]) Prepare(_ context.Context, e *bleveEpoch) (*bleveEpoch, error) {
	e.Docs, e.buf = e.buf.docs, nil
	c.lastDocs = len(e.Docs)
	e.Checkpoint = c.checkpoint
	return e, nil
}

// Commit indexes the epoch's documents in one Bleve batch together with the
// subtask's commit marker; a marker at this checkpoint or later means the
// epoch was committed before, and Commit does nothing.
func (c *bleveCommitter[T]) Commit(ctx context.Context, e *bleveEpoch) error {
	if len(e.Docs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := c.ix.commitEpoch(markerKey(e.Job, e.Sink, e.Subtask), e.Checkpoint, e.Docs); err != nil {
		return fmt.Errorf("Bleve sink %q: commit %d documents of checkpoint %d (subtask %d): %w", c.name, len(e.Docs), e.Checkpoint, e.Subtask, err)
	}
	return nil
}

func (c *bleveCommitter[T]) Abort(_ context.Context, e *bleveEpoch) error {
	e.buf, e.Docs = nil, nil
	return nil
}

// Cleanup forgets the commit markers of checkpoints after the one restored
// from (all of them on a fresh start) of the old subtasks this subtask owns:
// no completed checkpoint recorded those epochs, their records are indexed
// again, in epochs that may reuse their checkpoint ids. An old subtask index
// is below the job's MaxParallelism, so the owned ones are Subtask,
// Subtask+Parallelism, ... up to it.
func (c *bleveCommitter[T]) Cleanup(context.Context) error {
	b := c.ix.idx.NewBatch()
	for old := c.oc.Subtask; old < max(c.oc.MaxParallelism, c.oc.Parallelism); old += max(c.oc.Parallelism, 1) {
		key := markerKey(c.oc.Job, c.name, old)
		last, ok, err := c.ix.marker(key)
		if err != nil {
			return fmt.Errorf("Bleve sink %q: %w", c.name, err)
		}
		if ok && last > c.restoredID {
			b.DeleteInternal(key)
		}
	}
	if b.Size() == 0 {
		return nil
	}
	if err := c.ix.idx.Batch(b); err != nil {
		return c.errorf(ErrIndex, "forget commit markers of earlier runs: %w", err)
	}
	return nil
}

func (c *bleveCommitter[T]) Close() error {
	if c.ix == nil {
		return nil
	}
	ix := c.ix
	c.ix = nil
	if err := ix.release(); err != nil {
		return fmt.Errorf("Bleve sink %q: %w", c.name, err)
	}
	return nil
}
