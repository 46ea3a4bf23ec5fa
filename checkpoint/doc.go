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
// # Coordinator
//
// A Coordinator drives the checkpoints of one run of a job (package dataflow
// makes one per run and implements Runtime). Config.Interval after the start
// of the previous checkpoint, and at least Config.MinPause after its end, it
// triggers checkpoint n: the tasks that start with a source record their
// position and send barrier n downstream; a task with several inputs aligns
// the barrier (it holds back the inputs that delivered it until all did),
// captures its state synchronously, forwards the barrier, and writes the
// state to Storage on another goroutine while processing goes on; it then
// calls Ack with the files it wrote, or Decline with the error. Once every
// task has acknowledged, the coordinator assembles the Manifest (a keyed-state
// delta extends the subtask's chain of the latest completed checkpoint),
// commits it to Storage, and only then calls Runtime.Complete, on which
// two-phase sinks commit. Completed checkpoints beyond Config.Retain are
// pruned.
//
// One checkpoint is in flight at a time. A checkpoint that a task declines (a
// snapshot failed, or a file could not be written: a full disk, a directory
// that is not writable), whose manifest cannot be committed, or that is not
// complete after Config.Timeout, is aborted: the tasks are told
// (Runtime.Abort), its files are discarded, the previous completed checkpoint
// stays the latest, intact, and the next checkpoint is a full base. More than
// Config.TolerableFailures consecutive failures (0 by default, as in Flink)
// make Run return the error, which fails the job: its restart strategy then
// restarts it from the latest completed checkpoint, or the job ends with the
// error, which names the checkpoint and, for a file, its path.
//
// Savepoints (Savepoint, StopWithSavepoint) wait for the checkpoint in flight
// and are always full; a failed savepoint fails its request, not the job.
// Once every task has finished its input (bounded sources), the coordinator
// takes the final checkpoint, so that sinks commit the end of the output, and
// Run returns when it is complete; if it fails, Run fails (ErrFinalFailed).
// Checkpoint ids increase across runs: they continue after the checkpoint
// restored from and after every id in Storage.
//
// When a run starts, NewCoordinator probes a Storage that implements Prober
// (LocalStorage does): a directory that is missing and cannot be created, or
// that is not writable, fails the job at once, naming the directory, before
// any record is processed. Stats reports the completed and failed
// checkpoints, the last one's duration and size, and the last failure.
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
