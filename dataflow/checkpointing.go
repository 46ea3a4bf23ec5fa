package dataflow

import "context"

// Snapshotter is implemented by sources, operators and sinks that keep state
// outside keyed state: a source's offsets, a sink's prepared transactions, an
// operator's in-memory buffer.
//
// SnapshotState is called from the subtask's goroutine when checkpoint
// checkpointID's barrier reaches the operator: every record before the barrier
// has been processed and none after it. In a chain, operators are snapshotted
// from the head to the tail, so records an operator emits from SnapshotState
// reach the operators after it before they are snapshotted (they precede the
// barrier). A keyed operator may also flush a cache into its keyed state here:
// the runtime captures keyed state and timers right after SnapshotState
// returns.
//
// The returned bytes are the subtask's state in that checkpoint (nil for
// none). They must not be changed afterwards. After a restart they come back
// through OperatorContext.Restored.
type Snapshotter interface {
	SnapshotState(ctx context.Context, checkpointID int64) ([]byte, error)
}

// CheckpointListener is implemented by operators and sinks that act when a
// checkpoint is complete: durable, with its manifest written. A two-phase sink
// commits here.
//
// NotifyCheckpointComplete is called from the subtask's goroutine. Notices can
// be late, skipped or merged: commit everything prepared up to checkpointID. A
// notice may repeat an id already handled, for example after a restore, and
// must then do nothing more. An error fails the job like an error in Process.
type CheckpointListener interface {
	NotifyCheckpointComplete(ctx context.Context, checkpointID int64) error
}

// CheckpointAbortListener is implemented by operators that want to know that
// a checkpoint they snapshotted for will never complete (it failed or timed
// out). What was prepared for it stays prepared and is committed with the next
// checkpoint that completes.
type CheckpointAbortListener interface {
	NotifyCheckpointAborted(ctx context.Context, checkpointID int64) error
}

// RestoredState is an operator's non-keyed state from the checkpoint or
// savepoint a job was restored from.
type RestoredState struct {
	// CheckpointID is the id of the checkpoint restored from. Ids of the new
	// run's checkpoints are greater.
	CheckpointID int64
	// Subtasks holds what SnapshotState returned in each subtask of the
	// previous run, indexed by that run's subtask (nil where it returned nil).
	// Every new subtask sees all of them, whatever the new parallelism, and
	// keeps what it owns: a source the partitions now assigned to it, a sink
	// the transactions of old subtasks i with i % Parallelism == Subtask.
	Subtasks [][]byte
}

// Owns reports whether the new subtask oc is responsible for what old subtask
// oldSubtask left behind: oldSubtask modulo the new parallelism. With an
// unchanged parallelism every subtask owns its own.
func (oc *OperatorContext) Owns(oldSubtask int) bool {
	return oldSubtask%oc.Parallelism == oc.Subtask
}
