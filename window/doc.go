// Package window holds event-time windowing for keyed streams. Its
// runtime-independent pieces, described here, are windows, assigners, session
// merging, build-time validation and ready aggregations: plain Go values that
// start no goroutines. The window operator runs them on a keyed stream, with
// keyed state and timers.
//
// # Windows
//
// A Window is the half-open interval [Start, End) of event time
// (dataflow.Timestamp, nanoseconds since the Unix epoch). Its MaxTimestamp,
// End-1, is the watermark at which an event-time trigger fires it, and
// CleanupTime adds the allowed lateness (saturating) to give the watermark at
// which it is dropped and later records are late. Windows are comparable plain
// data, usable as map keys and keyed-state keys.
//
// # Assigners
//
// An Assigner puts a record into windows by its timestamp. AssignTo appends to
// a caller's slice, so the operator assigns without allocating:
//
//   - Tumbling(size), optionally WithOffset: one window per record,
//     [offset+k*size, offset+(k+1)*size). Offsets are taken modulo size, so
//     Flink's negative time-zone offsets work (-8h equals 16h for days).
//   - Sliding(size, slide), optionally WithOffset: windows of size starting
//     every slide; a record is in size/slide of them when slide divides size.
//   - Session(gap): the record's own window [ts, ts+gap); a MergingSet merges
//     a key's windows into sessions.
//   - Global(): every record of a key in the one GlobalWindow, whatever its
//     timestamp. It is not event time; it fires only by a trigger or at end
//     of input.
//
// Window starts follow Flink exactly (TimeWindow.getWindowStartWithOffset):
// start = ts - ((ts-offset) mod size), rounding down for negative timestamps
// (before 1970), so -1 is in [-size, 0). A timestamp of 0 is an ordinary time,
// 1970-01-01T00:00:00Z, in window [0, size).
//
// Event-time assigners fail a record without a timestamp (dataflow.NoTimestamp)
// with ErrNoTimestamp; the operator fails the job and names the record. The
// only other timestamp they refuse is dataflow.MaxWatermark (math.MaxInt64),
// which no half-open window can contain (ErrTimestampOutOfRange). Any other
// timestamp, however far in the future or past, is windowed without
// overflow: a window that would end after math.MaxInt64 ends at
// dataflow.MaxWatermark, and one that would start before math.MinInt64 starts
// at dataflow.MinWatermark. Such windows still contain their records and fire
// at the latest at end of input, when the watermark is MaxWatermark.
//
// # Sessions
//
// A MergingSet keeps the session windows of one key, like Flink's
// MergingWindowSet. Adding a record's window merges it with every session it
// overlaps or touches (two records exactly one gap apart share a session),
// including two sessions bridged by a late record. The returned Merge tells
// the operator what changed: the resulting window, the windows that no longer
// exist (delete their timers), and the state to merge. Each session's state
// lives under a stable state window, one of its records' windows, so a growing
// session does not move its state. The set saves as a []SessionWindow for
// keyed state, and restores with NewMergingSet or Reset.
//
// # Validation
//
// Invalid arguments are reported by Validate, wrapping ErrInvalidWindow, so a
// job fails at build time: a size, slide or gap that is not positive, a slide
// larger than the size, more than MaxSlidingWindows windows per record, and
// (ValidateLateness) a negative allowed lateness. Offsets are never invalid.
// The aggregations' Validate methods report nil functions and TopN's n <= 0
// with ErrInvalidAggregation.
//
// # Aggregations
//
// Count, Sum, Min, Max, Avg, TopN and CountDistinct implement
// operators.AggregateFunction, for windows and the running
// operators.Aggregate alike. Their accumulators are plain data with exported
// fields, which the state codec saves, and their Merge is associative and
// commutative, as merging sessions requires. TopN and CountDistinct are exact:
// their accumulators hold every distinct key of a window.
//
// # Operators
//
// Aggregate folds each window incrementally with an AggregateFunction;
// Process keeps a window's records and hands them to a function when it
// fires. Both emit Result values carrying the key, the window (start and end)
// and the value, with the window's MaxTimestamp as event time. Window
// contents, trigger counters and sessions are keyed state; firing times are
// keyed timers.
//
// An Aggregate over tumbling or sliding windows with the default trigger,
// no allowed lateness and keys of integer or string type keeps no state
// and no timers per key. It buffers partial accumulators by key, and fires
// a window when the watermark passes its end, from the buffer and the
// window's runs. At each checkpoint, and in front of a store
// (state.NewBadger) also when the buffer holds as many keys as the
// backend's cache, it writes the buffer out as sorted runs per key group
// and window. Firing merges a window's runs (with the AggregateFunction's
// Merge) key group by key group; a window with no runs fires from the
// buffer alone, in one pass. A record then costs a buffer lookup and never
// a read of the store, and firing reads the window's runs in sequence. The
// keys of one window come out in an order of the layout's (the buffer's,
// or key groups then encodings), not sorted. Savepoints move between this
// layout and the per-key one (with a lateness, another trigger, or keys of
// other types) in both directions.
//
// A Trigger decides when a window fires: EventTimeTrigger (the default: when
// the watermark passes the window's end, and again for each record within
// AllowedLateness), ProcessingTimeTrigger, CountTrigger,
// ContinuousEventTimeTrigger (early results every interval), Purging (each
// firing drops the window's contents), and custom triggers through the
// Trigger interface. CountWindows is a global window with a purging count
// trigger. Records later than their windows' allowed lateness go to the
// LateOutput side output if one is set, and are counted either way
// (LateRecords).
//
// # Still to come
//
// Processing-time assigners, evictors, and triggers for merging windows other
// than the event- and processing-time ones (a trigger must implement
// MergingTrigger to be used with sessions).
package window
