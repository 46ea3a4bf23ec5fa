// Package file is an exactly-once file sink: JSON Lines, CSV or Parquet part
// files, optionally compressed (gzip, zstd; Parquet compresses its pages),
// optionally in directories partitioned by event time, committed with the
// job's checkpoints.
//
//	file.Sink(counts, "counts-files", file.Config[Count]{
//		Dir:              "/data/counts",
//		Format:           file.Parquet,
//		Compression:      file.Zstd,
//		PartitionPattern: "dt=2006-01-02/hour=15",
//	})
//
// # File lifecycle
//
// Each subtask writes its own part files. A part file is created when the
// first record for it arrives, under a hidden in-progress name:
//
//	.part-<subtask>-<run>-<seq>.jsonl.inprogress
//
// (run is random per start of the subtask, seq counts the subtask's parts).
// At each checkpoint barrier every open part file is finished, synced and
// renamed to its hidden pending name ".part-...jsonl.pending"; these are the
// transaction recorded in the checkpoint. A part file is also closed and made
// pending when it grows past Config.MaxPartSize or is older than
// Config.MaxPartAge; it is then committed with the next checkpoint. When the
// checkpoint completes, each pending file is renamed to its final name
//
//	part-<subtask>-<checkpoint>-<n>.jsonl[.gz|.zst]
//
// where n numbers the files of that subtask's transaction. Final names are
// deterministic: the same input, checkpointed at the same records, gives the
// same names; and a restored run's checkpoint ids are greater than the one it
// restored from, so a restart never reuses a final name. A final file is never
// replaced: commit hard-links the pending file to its final name (falling
// back to a rename where the file system has no hard links) and fails with
// ErrFileExists if another file holds that name. A fresh start, whose
// checkpoint ids begin again, therefore needs a Dir without the final files
// of an earlier fresh start (a new Dir, or a subdirectory per run); the
// clash is found when the checkpoint is prepared, before anything is
// recorded. Files are synced before they are renamed, and directories after.
//
// # Readers
//
// Readers must ignore files whose names start with "." or "_", as Hadoop,
// Hive, Spark and Athena do: those are part files still being written or
// waiting for their checkpoint. Their names also end in ".inprogress" or
// ".pending", so a glob on the format's extension (DuckDB's
// read_parquet('dir/**/*.parquet')) never matches them either. Every other
// file is complete and final: it appeared by an atomic rename after it was
// synced, and is never changed again. For the same reason partition
// directories may not start with "." or "_".
//
// # Exactly once and failures
//
// Records written after the last completed checkpoint live only in hidden
// files. After a crash the job restarts from the latest completed checkpoint:
// the sink renames the pending files that checkpoint recorded (commit is
// idempotent: a pending file already renamed is skipped, and a recorded file
// found under neither name fails with ErrLostFile, since data is lost), then
// deletes every in-progress and pending file under Dir left by the earlier
// subtasks it now owns (old subtask i belongs to new subtask i modulo the
// parallelism, so rescaling works too). The source replays the records after
// the checkpoint, and they are written again into new files. So each record
// is in exactly one final file.
//
// Dir belongs to one sink: two sinks sharing a directory would delete each
// other's hidden files on start. Restoring an older savepoint into a Dir that
// holds the output of later checkpoints fails with ErrFileExists when names
// clash, and leaves later output in place otherwise; start such a backfill in
// a fresh directory.
//
// # Formats
//
// JSON Lines uses encoding/json, one object per line. CSV writes a header in
// every part file and maps struct fields by `csv` tags, or uses
// CSVConfig.Row; see CSVConfig. Parquet uses github.com/parquet-go/parquet-go's
// generic writer, with the schema of T from its `parquet` tags; a part file is
// one Parquet file, in row groups of about 64 MiB (see ParquetOptions).
//
// # Partitions
//
// PartitionPattern is a time layout evaluated on the event time in UTC, so
// "dt=2006-01-02/hour=15" puts a record of 13:04 on 22 November 2026 into
// dt=2026-11-22/hour=13/ (Hive style, so DuckDB's read_parquet(...,
// hive_partitioning = true) and Athena see dt and hour as columns). A
// Partition function may compute the directory instead. Records without an
// event time (dataflow.NoTimestamp) go to DefaultPartition, by default
// dt=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__ for a
// Hive-style pattern (read back as NULL) and no_timestamp otherwise. A
// subtask keeps one part file open per partition it is writing to.
//
// # Errors
//
// A directory that cannot be created or written, or a full disk, fails the
// job with an error naming the sink and the path (the underlying error, such
// as syscall.ENOSPC, is wrapped). A record that cannot be encoded fails the
// job with ErrEncode, naming the sink and the record's type. A configuration
// that cannot work (no Dir, CSV of a non-struct without a Row function, a
// Parquet schema parquet-go rejects, a partition pattern without a time
// field) is reported when the job is built, with ErrConfig.
//
// # Concurrency
//
// The runtime calls each subtask's operator from that subtask's goroutine;
// subtasks share nothing but Dir, where each creates and renames only files
// of its own subtask index.
package file
