// Package clickstream is a real example job for a video-streaming platform:
// it reads player events from a NATS JetStream stream and computes, per
// tumbling event-time window (one minute by default),
//
//   - views_per_video: the views (play events) of each video;
//   - top_videos: the N most viewed videos, ranked (ties by video id);
//   - watch_time: per video, the sessions that stopped, their total and
//     average watch time;
//   - views_by_country: the views per country;
//   - errors_per_minute: the playback errors per error code;
//
// plus late_events, the events that came too late to be counted. Each result
// goes to files under Config.OutputDir/<result>/dt=YYYY-MM-DD/hour=HH/ (JSON
// Lines or Parquet, committed with the job's checkpoints; see package
// connectors/file) and, when Config.Postgres is set, to the table
// <table-prefix><result> (created if missing, upserted by its key columns, or
// written exactly once per checkpoint with postgres-mode=exactly-once, which
// keeps its commit markers in <table-prefix>sink_commits).
// A fresh start (not restored from a checkpoint) refuses an output directory
// that already holds results (ErrOutputNotEmpty): readers would see two runs.
//
// It registers itself as "clickstream" in jobs.Default, with Demo, so that
//
//	go run ./cmd/jobrunner run clickstream --demo
//
// starts an embedded NATS server, publishes 200 000 generated events and
// runs the job on them, writing to a new directory run-<time> under the
// output directory (./sluice-demo-output if none is given).
//
// # Events and the stream
//
// Events are JSON objects (see Event and ParseEvent) on the subjects
// clicks.0 ... clicks.7 of the stream "clickstream", partitioned by a hash of
// the user, so a user's events are in one partition, in order. Generate
// publishes realistic ones: Zipf-distributed video popularity, playback
// sessions (play, pause, resume, seek, then stop with the watch time or
// error), countries and devices per user, event times out of order within a
// bound, a fraction late by up to minutes, and a few malformed payloads.
// EnsureStream makes the streams.
//
// # Time, lateness and determinism
//
// Event time is the event's ts. Each partition has its own watermark,
// bounded out-of-orderness (out-of-orderness, default 5s): the largest event
// time seen minus the bound. Windows fire once, with their final result, when
// the watermark (the minimum over partitions) passes their end plus the
// allowed lateness (lateness, default 30s); there are no early or updated
// results, so files hold each window's row once.
//
// Whether an event is late is decided per partition, in stream order, by
// the late-filter operator (keyed by partition, its state checkpointed with
// the source offsets): an event is late when its window's end plus the
// lateness is not after its partition's watermark at the event. Late events
// go to late_events with the watermark they missed; they are counted
// (Counters.Late) and in no result. Because lateness depends on each
// partition's own order and not on how fast partitions happen to be read,
// every result is a function of the stream's contents: a replay from offset
// zero (jobs.Config.Start earliest, Bounded) gives the live run's results,
// row for row.
//
// One thing breaks this: a partition idle for longer than idleness (default
// 30s) while others go on stops holding the watermark back (so that windows
// still fire), and when it has events again, those of windows that fired
// meanwhile are dropped by the windows. They too go to late_events, with
// reason "window-closed". A replay reads without such pauses and counts them,
// so set idleness longer than any pause of a partition that still has data to
// come, or 0 to never treat a partition as idle.
//
// # Malformed events
//
// An event that ParseEvent rejects (not JSON, missing event_id, user_id or
// video_id, unknown type, bad or implausible ts, negative watch time, an
// error without a code) is handled by the malformed parameter: dead-letter
// (the default: the payload is published to dead-letter-subject, by default
// clicks-dlq, with headers naming its stream, subject, sequence and error, so
// no data is lost), skip, or fail (the job fails naming the stream, subject
// and sequence). Dead-lettered and skipped events are counted
// (Counters.Malformed) and are in no result.
//
// # Parameters
//
// See Params: stream, subject-prefix, partitions, window, top,
// out-of-orderness, lateness, idleness, format (jsonl or parquet), malformed,
// dead-letter-subject, postgres-mode (upsert or exactly-once), table-prefix,
// and for Demo demo-events, demo-rate and seed. An unknown parameter or a bad
// value fails Build with an error naming it (ErrParam).
//
// # Concurrency
//
// Build, Demo and the generator functions may be called from any goroutine.
// Generate publishes from the calling goroutine; Demo runs it on a goroutine
// of its own until stop. Counters may be read while the job runs.
package clickstream
