// Package checkpoint is Sluice's fault tolerance below the runtime: where
// checkpoints are kept, how their files and manifests are written and
// checked, how often checkpoints are taken, and how a failed job restarts.
//
// # Checkpoints and manifests
//
// A checkpoint is a set of files, written concurrently by the job's tasks
// through Storage.Create, plus a Manifest listing every file with its size
// and CRC32C (Castagnoli) checksum. A checkpoint exists once its manifest is
// committed; the coordinator (coordinator.go) commits it after every task
// acknowledged and only then tells sinks to commit. Checkpoints of kind
// KindCheckpoint may be incremental: a later manifest references files
// written for earlier checkpoints (a keyed-state base and its deltas).
// Savepoints (KindSavepoint) are self-contained: every file lies in the
// savepoint's own directory.
//
// # Storage
//
// Storage is the interface; LocalStorage keeps checkpoints in a local
// directory, and an object store can implement the same interface (package
// checkpointtest holds the conformance suite every implementation passes).
// LocalStorage's layout under its root directory:
//
//	chk-<id>/<name>           files written for checkpoint <id>; <name> may
//	                          contain directories (op/3/keyed)
//	manifests/chk-<id>.json   the manifest of completed checkpoint <id>
//	manifests/.chk-<id>.json.tmp   a manifest being written
//
// FileRef.Path is relative to the root ("chk-7/op/3/keyed"), so a manifest
// stays valid if the directory is moved. A manifest is stored as a JSON
// envelope {"crc32c": N, "manifest": {...}}, N being the CRC32C of the
// manifest's bytes (MarshalManifest, UnmarshalManifest).
//
// Guarantees of LocalStorage:
//
//   - Files: a Writer buffers (256 KiB) and computes size and CRC32C as the
//     bytes come in; Commit flushes, fsyncs and closes the file and returns
//     its FileRef. A failed write (a full disk: ENOSPC) is returned by Write
//     and Commit, naming the file; Commit then removes the file. Abort
//     removes it too.
//   - Manifests: Commit refuses an invalid manifest (ValidateManifest), an
//     id already committed and a manifest referencing a file that is missing
//     or of another size. It fsyncs the directories that received files,
//     writes the manifest to a temporary file, fsyncs it, renames it into
//     place and fsyncs the manifests directory: a crash at any point leaves
//     either the previous checkpoints or the new one complete, never a
//     manifest without its files (tested by crashing at every file system
//     operation with package checkpoint/faultfs).
//   - Reading: Open returns a reader that checks size and CRC32C while it is
//     read and fails with an error wrapping ErrCorrupt, naming the file, the
//     checkpoint and the expected and actual values. A missing file also
//     wraps ErrCorrupt. Verify reads every file of a manifest.
//   - Latest returns the highest completed checkpoint. If its manifest is
//     unreadable or corrupt, Latest fails (ErrCorrupt) and never falls back
//     to an older checkpoint: sinks may have committed output of the newer
//     one. With no manifest it fails with ErrNoCheckpoint.
//   - Discard(id) removes the files of a checkpoint that did not complete,
//     keeping any a completed manifest references. Prune(keep) keeps the
//     newest keep manifests, removes the older ones, and then every file no
//     kept manifest references in checkpoint directories up to the newest
//     kept id, and leftover temporary files. Directories of higher ids
//     belong to checkpoints in progress and are left alone. Both refuse to
//     remove anything while a manifest they need cannot be read.
//   - Errors: NewLocalStorage creates the directory and writes a probe file,
//     failing with an error naming the directory if it cannot (permissions,
//     a file in the way). OpenLocalStorage opens a checkpoint or savepoint
//     directory read-only for a restore and fails if it does not exist
//     (fs.ErrNotExist) or holds no manifest (ErrNoCheckpoint).
//
// Concurrency: every Storage method may be called from several goroutines.
// LocalStorage writes files for many tasks and checkpoints in parallel;
// Commit, Discard and Prune are serialised with each other; files being
// written are never removed by Discard or Prune. One process writes to a
// storage directory at a time. A Writer is used by one goroutine.
//
// LocalStorage reaches the disk through FS (OSFS by default), so tests can
// inject errors and crashes with package checkpoint/faultfs.
//
// # Configuration and restarts
//
// Config sets periodic checkpointing: Interval (0 disables it), Timeout
// (DefaultTimeout, 10 minutes), MinPause, TolerableFailures (0: the first
// failed checkpoint fails the job) and Retain (DefaultRetain, 3). Zero
// fields take the defaults (WithDefaults); Validate reports invalid ones.
//
// A RestartStrategy decides whether and after how long a failed job
// restarts from its latest completed checkpoint: NoRestart, FixedDelay,
// ExponentialBackoff, optionally WithJitter (off by default, so restarts
// are deterministic). The count of consecutive failures is reset after a
// stable run: RestartTracker does that bookkeeping.
package checkpoint
