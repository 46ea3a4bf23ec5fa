// Package postgres is Sluice's Postgres sink: records of a struct type become
// rows of a table, written with COPY (pgx, binary format).
//
// # Modes
//
// Append copies rows in batches of Config.BatchSize, and whatever it holds
// when a checkpoint barrier arrives or the input ends: at least once (after a
// failure, the rows written since the last completed checkpoint are written
// again). Upsert inserts or updates by the key columns: each batch is copied
// into a temporary stage table and merged in one statement, MERGE on
// Postgres 15 and later (INSERT ... ON CONFLICT (key) DO UPDATE before, and
// for a batch whose MERGE lost a race with a concurrent insert of one of its
// keys). That is many times faster than row-by-row inserts. A key seen twice
// in a batch keeps its last row. Replays overwrite rows with the same values,
// so keyed results (an aggregate per key and window) end up exactly once.
// Append and Upsert need no checkpoints.
//
// ExactlyOnce makes every record visible exactly once, through checkpoints
// (dataflow.TwoPhaseCommitSink). The records between two checkpoint barriers,
// an epoch, are encoded into a buffer; at the barrier the epoch is prepared
// (its encoded rows go into the checkpoint) and when the checkpoint completes
// it is committed in one Postgres transaction:
//
//	BEGIN;
//	INSERT INTO sluice_sink_commits (job, sink, subtask, checkpoint_id) ... ON CONFLICT DO NOTHING;
//	-- no row inserted: this epoch was committed before; stop.
//	COPY the rows (or COPY into the stage and upsert, when there are key columns);
//	COMMIT;
//
// Readers at READ COMMITTED or stronger see whole epochs or nothing. After a
// crash the job restarts from its last completed checkpoint and commits the
// epochs that checkpoint recorded; one that was already committed (the crash
// came after COMMIT but before the notice reached the sink) finds its marker
// and writes nothing. Transient errors (a dropped connection, a server
// restarting, a serialization failure) are retried on a new connection under
// Config.Retry; the marker makes a retry after a COMMIT whose answer was lost
// harmless. The marker names the subtask that prepared the epoch, so after
// rescaling each old subtask's epochs are committed under their own markers.
// On start, a subtask deletes the markers of epochs after the checkpoint it
// restored from (all of them on a fresh start) for the old subtasks it owns:
// nothing recorded them, their records are written again, and checkpoint ids
// may be reused. Markers are keyed by the job's and the sink's names: two
// jobs must not share both. The marker table keeps one row per subtask and
// checkpoint that wrote rows; delete old rows with, for example, DELETE FROM
// sluice_sink_commits WHERE committed_at < now() - interval '7 days' (a
// restore commits again only the epochs of its checkpoint, which are recent).
//
// Why not PREPARE TRANSACTION: Postgres's own two-phase commit would hold a
// prepared transaction open across the checkpoint, but it needs
// max_prepared_transactions > 0 (0 by default, and often not settable on
// managed services), keeps locks and holds back VACUUM while it waits, and
// leaves orphans to clean up by hand after a crash. Keeping the epoch in the
// checkpoint needs nothing from the server but one table, and a replayed
// commit is an ordinary idempotent transaction.
//
// Memory: an epoch stays in memory until its checkpoint completes, and its
// checkpoint holds a copy. Both are about the size of the encoded rows (the
// values plus 4 bytes per field), times the number of epochs waiting to
// commit (one, unless checkpoints overlap or commits fall behind). Bound it
// with the checkpoint interval: rows per second times the interval. An epoch
// that does not fit in memory needs a shorter interval, or Upsert or Append.
//
// # Mapping
//
// Exported fields map to columns: the `db` tag names the column (`db:"qty"`),
// `db:"-"` skips the field, `db:"id,key"` marks a key column (or name them in
// Config.Key); untagged fields map to their name in snake_case; embedded
// structs are flattened. Columns of the table that no field names take their
// default. Values are checked as they are encoded: an integer out of its
// column's range, a string longer than a varchar(n), invalid UTF-8 fail at
// once with an error naming the sink, table, column and field (ErrInvalidValue);
// what only the server can check (numeric precision, constraints) fails the
// write with the column or constraint Postgres names. A field whose Go type a
// column cannot take fails at start (ErrColumn), and so does a missing table
// without CreateTable (ErrTableNotFound) or an unreachable database
// (ErrConnect, naming host, port, database and user). With CreateTable the
// table is created from the fields as ColumnType says, with a primary key on
// the key columns (CreateTableSQL shows the statement).
//
// In ExactlyOnce a value the server rejects at commit fails the job, and the
// restarted job fails on the same epoch again: the checkpoint holds it, as in
// any two-phase sink. Mend the table (widen the column, drop the constraint)
// so that the commit can succeed.
//
// # Concurrency
//
// Each subtask has its own connection and is used from its own goroutine.
// Subtasks commit independently: an epoch is atomic per subtask, not across
// the subtasks of a checkpoint.
package postgres
