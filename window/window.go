package window

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// Errors. Build-time errors wrap ErrInvalidWindow or ErrInvalidAggregation;
// AssignTo's per-record errors wrap ErrNoTimestamp or ErrTimestampOutOfRange.
// Test with errors.Is.
var (
	// ErrInvalidWindow is wrapped by the errors of an assigner or allowed
	// lateness built with invalid arguments.
	ErrInvalidWindow = errors.New("window: invalid window configuration")
	// ErrInvalidAggregation is wrapped by the Validate errors of the ready
	// aggregations (a nil function, a non-positive n).
	ErrInvalidAggregation = errors.New("window: invalid aggregation")
	// ErrNoTimestamp is returned by an event-time assigner for a record
	// without event time (dataflow.NoTimestamp).
	ErrNoTimestamp = errors.New("window: record has no timestamp")
	// ErrTimestampOutOfRange is wrapped by the error an event-time assigner
	// returns for a timestamp no window can hold: dataflow.MaxWatermark, the
	// largest int64, which no half-open window [Start, End) can contain.
	ErrTimestampOutOfRange = errors.New("window: timestamp out of range")
	// ErrInvalidSessions is wrapped by the error of NewMergingSet and
	// MergingSet.Reset for a saved form that is not sorted, disjoint sessions.
	ErrInvalidSessions = errors.New("window: invalid saved sessions")
)

// errMaxTimestamp is prebuilt so AssignTo does not allocate on this path either.
var errMaxTimestamp = fmt.Errorf("%w: %d (MaxWatermark) is after every window", ErrTimestampOutOfRange, int64(dataflow.MaxWatermark))

// Window is the half-open event-time interval [Start, End). Windows are plain
// data (two int64 fields), usable as map keys and encodable by the state codec.
//
// Windows near the ends of the int64 range are clamped rather than wrapped
// around: a window that would start before math.MinInt64 starts at
// dataflow.MinWatermark and one that would end after math.MaxInt64 ends at
// dataflow.MaxWatermark. Clamped windows still contain the timestamps assigned
// to them, and every record in the same unclamped window gets the same
// clamped window.
type Window struct {
	Start dataflow.Timestamp
	End   dataflow.Timestamp
}

// MaxTimestamp is the last timestamp in the window, End-1: an event-time
// trigger fires the window when the watermark reaches it.
func (w Window) MaxTimestamp() dataflow.Timestamp { return w.End - 1 }

// Contains reports whether Start <= ts < End.
func (w Window) Contains(ts dataflow.Timestamp) bool { return w.Start <= ts && ts < w.End }

// Intersects reports whether w and o overlap or touch (one ends where the
// other starts). Touching counts, as in Flink's TimeWindow.intersects, so
// session windows [0, 10) and [10, 20) (two records exactly one gap apart)
// merge into one session.
func (w Window) Intersects(o Window) bool { return w.Start <= o.End && o.Start <= w.End }

// Cover is the smallest window that contains both w and o.
func (w Window) Cover(o Window) Window {
	return Window{Start: min(w.Start, o.Start), End: max(w.End, o.End)}
}

// Duration is End-Start, saturating at the largest time.Duration (the
// global window is longer than any Duration).
func (w Window) Duration() time.Duration {
	if w.Start < 0 && w.End > w.Start+math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(w.End - w.Start)
}

// CleanupTime is the watermark at and after which the window is late under
// allowedLateness: MaxTimestamp()+allowedLateness, saturating at
// dataflow.MaxWatermark. A record whose window has CleanupTime <= the current
// watermark is late beyond allowed lateness, and the window's state can be
// dropped once the watermark reaches it. allowedLateness must be >= 0 (see
// ValidateLateness).
func (w Window) CleanupTime(allowedLateness time.Duration) dataflow.Timestamp {
	m := w.MaxTimestamp()
	if allowedLateness > 0 && m > dataflow.MaxWatermark-dataflow.Timestamp(allowedLateness) {
		return dataflow.MaxWatermark
	}
	return m + dataflow.Timestamp(allowedLateness)
}

// String formats the window as [start, end) in RFC 3339 UTC, with -inf and
// +inf for the ends of the time range.
func (w Window) String() string {
	return "[" + formatTs(w.Start) + ", " + formatTs(w.End) + ")"
}

func formatTs(ts dataflow.Timestamp) string {
	switch ts {
	case dataflow.MinWatermark:
		return "-inf"
	case dataflow.MaxWatermark:
		return "+inf"
	}
	return ts.Time().Format(time.RFC3339Nano)
}

// ValidateLateness checks an allowed lateness: it must not be negative. Zero
// means a window's state is dropped as soon as it fires.
func ValidateLateness(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: allowed lateness %v is negative", ErrInvalidWindow, d)
	}
	return nil
}
