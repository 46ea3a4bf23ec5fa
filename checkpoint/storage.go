package checkpoint

import (
	"context"
	"errors"
	"io"
	"time"
)

// Kind says what took a snapshot: the periodic checkpointing, or a user
// asking for a savepoint.
type Kind string

const (
	// KindCheckpoint is a periodic checkpoint: it may be incremental and share
	// files with earlier checkpoints of the same storage.
	KindCheckpoint Kind = "checkpoint"
	// KindSavepoint is self-contained: every file it references is full and
	// lies in its own directory.
	KindSavepoint Kind = "savepoint"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Manifest describes one completed checkpoint: every file it references, with
// its size and checksum. A checkpoint exists once its manifest is written; the
// storage writes it atomically, after every file it references.
type Manifest struct {
	Version int   `json:"version"`
	Kind    Kind  `json:"kind"`
	ID      int64 `json:"id"`
	// Job is the job's name.
	Job string `json:"job"`
	// Final marks the checkpoint taken at end of input: every source had
	// ended and every operator had finished.
	Final   bool      `json:"final,omitempty"`
	Created time.Time `json:"created"`
	// MaxParallelism is the job's number of key groups.
	MaxParallelism int `json:"max_parallelism"`
	// Operators are sorted by name.
	Operators []OperatorState `json:"operators"`
}

// OperatorState is one operator's state in a checkpoint, by its stable name.
type OperatorState struct {
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	// Subtasks has Parallelism entries, by subtask index.
	Subtasks []SubtaskState `json:"subtasks"`
}

// SubtaskState is the state of one subtask of one operator.
type SubtaskState struct {
	// Keyed is the keyed state of a keyed operator: a full snapshot followed by
	// the deltas taken after it, in order (package state's format).
	Keyed []FileRef `json:"keyed,omitempty"`
	// Timers holds the subtask's timers (keyed operators with timers).
	Timers *FileRef `json:"timers,omitempty"`
	// Operator holds what the operator's SnapshotState returned, if anything.
	Operator *FileRef `json:"operator,omitempty"`
}

// Files lists every file the manifest references.
func (m *Manifest) Files() []FileRef {
	var fs []FileRef
	for _, o := range m.Operators {
		for _, s := range o.Subtasks {
			fs = append(fs, s.Keyed...)
			if s.Timers != nil {
				fs = append(fs, *s.Timers)
			}
			if s.Operator != nil {
				fs = append(fs, *s.Operator)
			}
		}
	}
	return fs
}

// Operator returns the state of the operator named name, if any.
func (m *Manifest) Operator(name string) (*OperatorState, bool) {
	for i := range m.Operators {
		if m.Operators[i].Name == name {
			return &m.Operators[i], true
		}
	}
	return nil, false
}

// FileRef names a file of a checkpoint and how to check it.
type FileRef struct {
	// Path is relative to the storage's root, with forward slashes.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
}

// Storage keeps checkpoints. Its methods may be called from several
// goroutines at once (tasks write their files concurrently).
type Storage interface {
	// Create starts a new file for checkpoint checkpointID. name is unique
	// within the checkpoint (the runtime names files by operator, subtask and
	// content). The file becomes part of a checkpoint when a committed
	// manifest references the FileRef its Writer's Commit returned.
	Create(ctx context.Context, checkpointID int64, name string) (Writer, error)
	// Open reads a file. The reader checks size and checksum as it goes and
	// fails with an error wrapping ErrCorrupt when either does not match.
	Open(ctx context.Context, ref FileRef) (io.ReadCloser, error)
	// Commit writes m atomically (a temporary file, fsync, rename, fsync of the
	// directory): from then on m is a completed checkpoint. Every file m
	// references must have been committed.
	Commit(ctx context.Context, m *Manifest) error
	// Latest returns the completed checkpoint with the highest id, or an error
	// wrapping ErrNoCheckpoint if there is none. If that manifest cannot be
	// read or is corrupt it fails (wrapping ErrCorrupt): it never falls back to
	// an older checkpoint, whose output may already have been superseded.
	Latest(ctx context.Context) (*Manifest, error)
	// Load returns the completed checkpoint id.
	Load(ctx context.Context, id int64) (*Manifest, error)
	// List returns the ids of completed checkpoints, in increasing order.
	List(ctx context.Context) ([]int64, error)
	// Verify checks that every file m references exists with its size and
	// checksum.
	Verify(ctx context.Context, m *Manifest) error
	// Discard removes the files written for a checkpoint that did not
	// complete. Files referenced by a completed manifest are kept.
	Discard(ctx context.Context, checkpointID int64) error
	// Prune keeps the keep most recent completed checkpoints and removes
	// older manifests and every file no kept manifest references.
	Prune(ctx context.Context, keep int) error
	// Location describes the storage for messages (a directory, a URL).
	Location() string
}

// Prober is an optional interface of a Storage: Probe checks that the storage
// can take a checkpoint now, for example that a directory is writable, and
// fails with an error naming the storage otherwise. The coordinator probes a
// job's checkpoint storage when a run starts, so that the job fails at once
// rather than at its first checkpoint, after it processed records.
type Prober interface {
	Probe(ctx context.Context) error
}

// Writer is a file being written into a Storage.
type Writer interface {
	io.Writer
	// Commit flushes and syncs the file and returns its reference.
	Commit() (FileRef, error)
	// Abort closes and removes the file. It is safe after Commit (no-op).
	Abort() error
}

var (
	// ErrNoCheckpoint: the storage holds no completed checkpoint.
	ErrNoCheckpoint = errors.New("checkpoint: no completed checkpoint")
	// ErrCorrupt: a manifest or file does not match its checksum or size, or
	// is missing.
	ErrCorrupt = errors.New("checkpoint: corrupt checkpoint")
)
