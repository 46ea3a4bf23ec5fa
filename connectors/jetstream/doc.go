// Package jetstream reads NATS JetStream streams into Sluice jobs and
// publishes results to them, exactly once.
//
// # Source
//
// Source reads one stream. Its Partitions are subject filters of the stream
// (views.0 ... views.7, or views.eu.>), one partition each; with none, the
// whole stream is one partition. Partition p is read by subtask
// p % parallelism, in stream order, with its own watermark (see
// dataflow.WatermarkStrategy: the watermark of a subtask is the minimum over
// its partitions that are not idle). Filters must not overlap.
//
// Offsets. A partition's offset is the stream sequence of the last record
// it emitted. Offsets are the source's checkpointed state
// (dataflow.Snapshotter), never consumer acks: each partition is read by an
// ephemeral, in-memory pull consumer with AckNone that starts at the sequence
// after the offset, and that the source may drop and recreate at any time (a
// reconnect, a server restart, lost deliveries) without losing or repeating a
// record. A restored job goes on from the checkpoint; every old subtask's
// offsets are offered to every new subtask, which takes the partitions it is
// now assigned, so the job can restore at another parallelism. A partition
// that had no message yet is checkpointed at its start position (for
// Earliest and Time, where the server started its consumer), so messages
// removed before it read them are reported after a restore, not skipped.
// Partitions added to the configuration since the checkpoint start as
// configured; partitions removed from it are dropped.
//
// Start positions, for a job that is not restored: Earliest (offset zero, the
// default), Sequence(n), Time(t) and Latest (after the last message when the
// source opens). Bounded reads each partition up to its last message at Open
// (the last message matching its filter), then ends the input: a backfill
// that finishes even while publishers go on.
//
// Throughput. Messages are pulled in batches (PullBatch per partition,
// re-requested when half have arrived) over core NATS, with no ack per
// message; all partitions of a subtask deliver to one channel, which Poll
// drains without blocking, up to PollBatch records per call, waiting at most
// PollWait when nothing is there. Poll returns at once when its context is
// cancelled.
//
// Decoding. Decode turns a payload into a record: JSON by default (raw for
// []byte and string records), Msgpack, or a function of the payload and the
// message's metadata (Msg). Event time comes from the record (Watermarks), a
// header or the stream's timestamp (MessageTime). A message that does not
// decode fails the job (Fail, the default; the error names stream, subject
// and sequence), or is skipped and counted (Skip), or is published to a
// dead-letter subject with headers naming its origin (DeadLetter). Dead
// letters carry the Nats-Msg-Id "<stream>:<sequence>", so the dead letters of
// messages read again after a restore are dropped as duplicates by the
// dead-letter stream within its duplicate window.
//
// Errors name the stream (and the server URL, partition, subject or sequence
// where they apply) and wrap a sentinel for errors.Is: ErrConnect for an
// unreachable server or refused credentials, ErrStreamNotFound,
// ErrNoSubjectMatch when a partition's filter intersects none of the stream's
// configured subjects (so that no message could ever match it; streams
// without configured subjects, such as mirrors, are not checked),
// ErrStartPosition for a start sequence beyond the end of the stream (or
// removed from it) or a checkpointed offset beyond its end,
// ErrStreamDeleted when the stream is deleted (or deleted and recreated)
// while it is read or since the checkpoint a job restores from (the
// checkpoint records when the stream was created, so a stream of the same
// name created again is not taken for the old one, whatever its sequences),
// and ErrPurged.
//
// Purges. With a subject filter, gaps between the sequences a partition sees
// are normal: they are other subjects' messages. A partition reports
// ErrPurged when its consumer's first delivery (after Open, a restore or any
// re-creation) comes after the expected next sequence while the stream now
// starts after that sequence: messages it had still to read were purged or
// expired. A whole-stream partition checks every gap, and a restored one
// also checks at Open that the stream still holds the message after its
// position (or that nothing was stored after it). A purge that happens while
// a filtered partition is read is seen when its consumer is next recreated.
// One case cannot be told apart: a filtered partition whose unread messages
// were all removed, and that gets no message after them, looks like one that
// had none (the removed messages' subjects are not known), so a bounded
// restore of it ends without an error.
//
// Concurrency. The runtime calls a source subtask's methods from that
// subtask's goroutine; a Counter may be read from anywhere while the job runs.
//
// # Sink
//
// Sink publishes records to subjects given by a function of the record,
// exactly once, through dataflow.TwoPhaseCommitSink: the records of a
// checkpoint interval are kept in a transaction (Txn, in memory, at most
// MaxTxnBytes of payload), recorded in the checkpoint when it is taken, and
// published when the checkpoint completes, with PublishAsync and one
// Nats-Msg-Id per record, "<job>/<sink>/<subtask>/<run>-<n>/<index>"; the
// commit waits for every ack. If the job fails after publishing a
// transaction but before that was recorded, the restored job publishes it
// again with the same ids and the stream drops the duplicates. A job started
// fresh rather than restored (a replay from offset zero, say) is a new run:
// its ids are new, and what it publishes again is not deduplicated.
//
// Deduplication holds within the target stream's duplicate window
// (StreamConfig.Duplicates, 2 minutes by default): a transaction published
// again later than that after its first publication is duplicated. Set the
// window longer than the time a failed job may take to restart and restore
// (restart delay plus recovery), and keep checkpoints small enough that a
// transaction fits in memory and in the checkpoint.
//
// # Checkpoint storage
//
// CheckpointStorage is a checkpoint.Storage in a JetStream object store
// bucket, so that every node connected to the NATS system can restore any
// subtask's checkpoint. NewCheckpointStorage creates the bucket if needed
// (Replicas 3 on a NATS cluster, so that checkpoints survive the loss of a
// server) and probes that it can write to it; OpenCheckpointStorage opens
// an existing bucket read-only, to restore from. The objects are named as
// checkpoint.LocalStorage names its files: chk-<id>/<name> for the files
// of checkpoint id and manifests/chk-<id>.json for its manifest, in the
// same envelope (checkpoint.MarshalManifest).
//
// Atomic objects. An object store object is chunk messages on
// $O.<bucket>.C.<nuid> (a subject new for each version) followed by one
// metadata message on $O.<bucket>.M.<name in base64url> (ADR-20); readers
// find an object only through that metadata message, and one message is
// stored entirely or not at all. The object store's own Put publishes the
// metadata right after the last chunk without waiting for the chunks' acks
// (nats.go v1.55 jetstream/object.go), so a chunk the server refuses (a
// full bucket) or drops (a stream leader change) can leave a visible object
// without it. CheckpointStorage therefore writes objects itself, in the same
// layout, and publishes the metadata only once the server acknowledged
// every chunk: an object, and so a manifest, is visible only once complete.
// Any object store client (the nats CLI, another language) reads them.
//
// Checks. Open checks size and CRC32C as it reads (and the object store its
// SHA-256 digest) and fails wrapping checkpoint.ErrCorrupt; an object
// whose chunks are gone fails Open at once. Latest never returns an older
// checkpoint when the newest manifest is missing its chunks or corrupt.
// Errors name the object, the bucket and the server.
//
// Removal. Discard and Prune delete objects and then purge the delete
// marker the object store leaves, since every checkpoint's files have new
// names and markers would pile up without end. List, Commit, Discard and
// Prune read the metadata of every object in the bucket: keep one bucket
// per job and prune it.
//
// Limits. One process writes to a bucket at a time, as with
// checkpoint.LocalStorage. A Writer keeps at most 32 chunks
// (4 MiB at the default chunk size) unacknowledged. Reading one file is
// bounded by the context's deadline or by ReadTimeout.
package jetstream
