package dataflow

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TwoPhaseCommitter is the contract of an exactly-once sink, in the manner of
// Flink's TwoPhaseCommitSinkFunction. Records go into a transaction; at each
// checkpoint barrier the transaction is prepared (made durable but invisible)
// and recorded in the checkpoint, and a new one begins; when the checkpoint
// completes, every transaction prepared up to it is committed. After a crash
// the job restarts from the latest completed checkpoint and commits what that
// checkpoint recorded as prepared, so nothing is lost, and what was written
// after it is discarded and written again, so nothing is duplicated.
//
// TwoPhaseCommitSink turns a TwoPhaseCommitter into a sink operator. All
// methods are called from the subtask's goroutine.
//
// Txn is recorded in checkpoints with msgpack: its exported fields must say
// everything Commit needs (a file name, a transaction id); unexported fields
// (an open file) are not recorded and are zero in a restored Txn.
type TwoPhaseCommitter[T, Txn any] interface {
	// Open prepares the subtask. oc.Restored tells whether the job was restored.
	Open(ctx context.Context, oc *OperatorContext) error
	// Begin starts a transaction.
	Begin(ctx context.Context) (Txn, error)
	// Write adds a record to txn, invisibly to readers.
	Write(ctx context.Context, txn Txn, v T, ts Timestamp) error
	// Prepare makes txn durable and ready to commit, still invisible, and
	// returns it as it is to be recorded in the checkpoint.
	Prepare(ctx context.Context, txn Txn) (Txn, error)
	// Commit makes a prepared transaction visible. It must be idempotent: after
	// a crash it can run again for a transaction already committed, and must
	// then succeed without doing anything.
	Commit(ctx context.Context, txn Txn) error
	// Abort discards a transaction that was not prepared.
	Abort(ctx context.Context, txn Txn) error
	// Close releases resources. It does not commit or abort prepared
	// transactions: they belong to checkpoints.
	Close() error
}

// OrphanCleaner is an optional interface of a TwoPhaseCommitter: Cleanup is
// called once after Open and after the restored transactions were committed,
// to discard what earlier runs left behind that no completed checkpoint
// recorded (transactions begun or prepared after the checkpoint restored
// from), for the old subtasks this subtask owns (OperatorContext.Owns).
type OrphanCleaner interface {
	Cleanup(ctx context.Context) error
}

// TwoPhaseCommitSink returns a sink operator factory for AddSink that drives
// committers made by newCommitter, one per subtask. At end of input the last
// transaction is prepared and committed with the job's final checkpoint.
func TwoPhaseCommitSink[T, Txn any](newCommitter func() TwoPhaseCommitter[T, Txn]) func() Operator[T] {
	return func() Operator[T] {
		c := newCommitter()
		if c == nil {
			return nil
		}
		return &twoPhaseSink[T, Txn]{c: c}
	}
}

// pendingTxn is a prepared transaction and the checkpoint it belongs to.
type pendingTxn[Txn any] struct {
	Checkpoint int64 `msgpack:"c"`
	Txn        Txn   `msgpack:"t"`
}

type twoPhaseSink[T, Txn any] struct {
	c       TwoPhaseCommitter[T, Txn]
	m       *opMetrics
	ctx     context.Context
	cur     Txn
	open    bool // cur is begun and not yet prepared
	pending []pendingTxn[Txn]
}

func (s *twoPhaseSink[T, Txn]) Open(ctx context.Context, oc *OperatorContext) error {
	s.ctx, s.m = ctx, oc.m
	if err := s.c.Open(ctx, oc); err != nil {
		return err
	}
	if r := oc.Restored; r != nil {
		var restored []pendingTxn[Txn]
		for old, b := range r.Subtasks {
			if len(b) == 0 || !oc.Owns(old) {
				continue
			}
			var ps []pendingTxn[Txn]
			if err := msgpack.Unmarshal(b, &ps); err != nil {
				return fmt.Errorf("restore prepared transactions of old subtask %d (checkpoint %d): %w", old, r.CheckpointID, err)
			}
			restored = append(restored, ps...)
		}
		// Everything recorded was prepared at or before the checkpoint restored
		// from, which completed: commit it all, oldest first.
		slices.SortStableFunc(restored, func(a, b pendingTxn[Txn]) int { return cmpInt64(a.Checkpoint, b.Checkpoint) })
		for _, p := range restored {
			if err := s.commit(ctx, p.Txn); err != nil {
				return fmt.Errorf("commit transaction of checkpoint %d on restore: %w", p.Checkpoint, err)
			}
		}
	}
	if cl, ok := s.c.(OrphanCleaner); ok {
		if err := cl.Cleanup(ctx); err != nil {
			return fmt.Errorf("clean up after earlier runs: %w", err)
		}
	}
	return s.begin()
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *twoPhaseSink[T, Txn]) begin() error {
	txn, err := s.c.Begin(s.ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	s.cur, s.open = txn, true
	return nil
}

func (s *twoPhaseSink[T, Txn]) Process(v T, ts Timestamp) error {
	return s.c.Write(s.ctx, s.cur, v, ts)
}

func (s *twoPhaseSink[T, Txn]) ProcessWatermark(Timestamp) error { return nil }
func (s *twoPhaseSink[T, Txn]) Finish(context.Context) error     { return nil }

// SnapshotState prepares the current transaction, records it with those still
// waiting for their checkpoint to complete, and begins the next one.
func (s *twoPhaseSink[T, Txn]) SnapshotState(ctx context.Context, id int64) ([]byte, error) {
	if s.open {
		txn, err := s.c.Prepare(ctx, s.cur)
		if err != nil {
			return nil, fmt.Errorf("prepare transaction for checkpoint %d: %w", id, err)
		}
		s.open = false
		s.pending = append(s.pending, pendingTxn[Txn]{Checkpoint: id, Txn: txn})
	}
	b, err := msgpack.Marshal(s.pending)
	if err != nil {
		return nil, fmt.Errorf("record prepared transactions: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	return b, nil
}

// NotifyCheckpointComplete commits every transaction prepared up to id.
func (s *twoPhaseSink[T, Txn]) NotifyCheckpointComplete(ctx context.Context, id int64) error {
	n := 0
	for _, p := range s.pending {
		if p.Checkpoint > id {
			break
		}
		if err := s.commit(ctx, p.Txn); err != nil {
			return fmt.Errorf("commit transaction of checkpoint %d: %w", p.Checkpoint, err)
		}
		n++
	}
	s.pending = s.pending[n:]
	return nil
}

func (s *twoPhaseSink[T, Txn]) commit(ctx context.Context, txn Txn) error {
	start := time.Now()
	err := s.c.Commit(ctx, txn)
	if err == nil {
		s.m.observeCommit(time.Since(start))
	}
	return err
}

// Close aborts the transaction being written, if any; prepared ones stay for
// the checkpoint that recorded them.
func (s *twoPhaseSink[T, Txn]) Close() error {
	var err error
	if s.open {
		s.open = false
		ctx := s.ctx
		if ctx == nil || ctx.Err() != nil {
			ctx = context.Background()
		}
		err = s.c.Abort(ctx, s.cur)
	}
	if cerr := s.c.Close(); err == nil {
		err = cerr
	}
	return err
}
