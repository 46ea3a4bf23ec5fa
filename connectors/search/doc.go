// Package search has Sluice's search index sinks: an embedded Bleve index
// (BleveSink) and OpenSearch or Elasticsearch through the Bulk API
// (BulkSink). Both are exactly-once through checkpoints
// (dataflow.TwoPhaseCommitSink) and give every record a deterministic
// document id, so that a replay overwrites documents with the same content
// instead of adding copies.
//
// # Documents and ids
//
// A record becomes a document by its JSON form: encoding/json by default
// (fields named by their `json` tags), or the Encode function of the
// config, which must return a JSON object. Its id comes from the ID function,
// which must be deterministic (a key, an event id, a key and a window
// start); without one the id is a hash of the document (SHA-256, 128 bits in
// hex), which makes identical records one document. A record that cannot be
// a document (a NaN, a JSON string instead of an object, an empty id) fails
// the job at once with ErrDocument, naming the sink, the index and the
// record's type, before anything of its epoch is written.
//
// # Epochs and commits
//
// The records a subtask receives between two checkpoint barriers, an epoch,
// are encoded and kept in memory: nothing is written to the index before the
// checkpoint completes. Within an epoch a repeated id keeps the last record
// (the one with the highest record version, for the bulk sink with
// BulkConfig.Version). At the barrier the epoch's documents go into the
// checkpoint, and when the checkpoint completes they are written. After a
// crash the job restarts from its last completed checkpoint and writes the
// epochs that checkpoint recorded; epochs after it were never written, and
// their records are replayed. An epoch's memory, and its copy in the
// checkpoint, is about the size of its JSON documents; MaxEpochBytes bounds it
// (ErrEpochTooLarge): the remedy is a shorter checkpoint interval.
//
// # Bleve
//
// Every subtask of a Bleve sink writes the one index at BleveConfig.Path. It
// is opened once per process and shared, with reference counting, by the
// sink's subtasks and by readers of the same process (OpenIndex, Search): a
// Bleve index admits one process at a time (another one waits LockTimeout and
// fails with ErrIndexLocked). One shared index, rather than one per subtask,
// keeps each id in one place whatever the parallelism, also after rescaling.
//
// A commit is one Bleve batch holding the epoch's documents and the
// subtask's commit marker, an internal key recording the last checkpoint
// committed; Bleve applies a batch atomically and makes it durable before
// returning. Readers therefore see whole epochs or nothing of them, and a
// commit run again after a restore finds its marker and does nothing. Each
// subtask commits on its own: an epoch is atomic per subtask, not across the
// subtasks of a checkpoint. On start, a subtask forgets the markers of
// checkpoints after the one restored from (all of them on a fresh start) for
// the old subtasks it owns, because their records are indexed again in
// epochs that may reuse those checkpoint ids. Markers are keyed by the job's
// and the sink's names: two jobs must not share both on one index.
// Documents are never deleted by the sink: a fresh start leaves earlier
// documents in place, and replayed records overwrite theirs.
//
// A failed write (a full disk) fails the commit with ErrIndex naming the
// index; the job restarts and commits the epoch again from its checkpoint.
// Search and OpenIndex query an index with Bleve's query string syntax;
// Index.Bleve gives the whole Bleve API for reading. Bleve starts analysis
// goroutines when its package is loaded, and they run for the life of the
// process (goleak users: ignore bleve_index_api.AnalysisWorker).
//
// # OpenSearch and Elasticsearch
//
// The bulk sink posts an epoch's documents to /_bulk as index actions with
// external versions, in requests of at most MaxBatchBytes:
//
//	{"index":{"_index":"views","_id":"v42","version":1767225600000000,"version_type":"external"}}
//	{"video":"v42","count":17}
//
// With external versioning the server keeps a document only if its version
// is higher than the stored one. The version is the record's, when
// BulkConfig.Version is set (a sequence number, an event time), and otherwise
// the epoch's: the time the epoch was prepared, in microseconds since the
// Unix epoch, above the previous epoch's of the subtask, recorded in the
// checkpoint so that a replay sends the same version. (Checkpoint ids are
// not used as versions: they start again at 1 when a job starts without its
// checkpoints, and every later write would be refused as older.) A commit
// sent again is harmless: each document either replaces an older version or
// is answered 409 version_conflict_engine_exception, which the sink counts as
// success, because the index already holds that version or a newer one. For
// the same reason a replay of an old epoch never overwrites newer data.
//
// The response's items are checked one by one. Items that failed with 429 or
// a 5xx status are sent again, alone, after a backoff (RetryPolicy); so are
// whole requests that failed to connect or were answered 429 or 5xx, each
// time on the next of BulkConfig.URLs. A request answered 413 is split in
// halves. Any other failed item (400 mapper_parsing_exception, say) is
// permanent: it fails the commit with ErrDocument naming the index, the _id,
// the error type and reason, unless BulkConfig.OnRejected takes it (to log it
// or keep it in a dead-letter store). Retries that run out fail with
// ErrUnavailable; requests refused as a whole (401, 403, 400) and a server
// certificate that does not verify fail at once with ErrRequest. Both name
// the sink, the index and the node. Timeout bounds each request. On start each
// subtask asks a node for its root, so that a wrong URL or bad credentials
// fail at once rather than at the first checkpoint.
//
// A failed commit fails the job, and the restarted job commits the same
// epoch again from its checkpoint: a document the server will never accept
// fails it again, until the mapping is mended or OnRejected drops it.
//
// OpenSearch has no multi-document transactions: an epoch becomes visible
// request by request, as the server applies and refreshes it. What the sink
// guarantees is that no record of an epoch is sent before its checkpoint
// completes, and that after it every record is in the index once, under its
// id.
//
// No OpenSearch server runs in this project's CI; the bulk sink is tested
// against the request and response formats of the OpenSearch Bulk API
// documentation (and the Elasticsearch one it shares), by an in-process HTTP
// server that implements them: NDJSON actions with external versions, items
// with per-document status and error type and reason, version conflicts,
// 429 and 5xx answers, 413 for large bodies, basic authentication.
//
// # Concurrency
//
// Each subtask of a sink is used from its own goroutine, with its own HTTP
// connections (bulk sink). The subtasks of a Bleve sink share one index,
// which is safe for concurrent batches and searches. Index is safe for
// concurrent use.
package search
