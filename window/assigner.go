package window

import (
	"fmt"
	"math"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// Assigner puts a record into windows by its timestamp. The window operator
// calls AssignTo once per record on its own goroutine; the assigners of this
// package are immutable values, safe for concurrent use, and do not allocate
// when dst has room.
type Assigner interface {
	// AssignTo appends the windows of a record with timestamp ts to dst and
	// returns the extended slice. On error it returns dst unchanged: an
	// event-time assigner fails with ErrNoTimestamp for dataflow.NoTimestamp
	// and with ErrTimestampOutOfRange for dataflow.MaxWatermark, and any
	// assigner fails with its Validate error if it was built invalid.
	AssignTo(dst []Window, ts dataflow.Timestamp) ([]Window, error)
	// IsEventTime reports whether windows are in event time, so that
	// records need a timestamp and the watermark decides lateness.
	IsEventTime() bool
	// IsMerging reports whether windows of one key merge when they
	// intersect (sessions): the operator then keeps each key's windows in a
	// MergingSet and adds every assigned window to it.
	IsMerging() bool
	// Validate reports an assigner built with invalid arguments (an error
	// wrapping ErrInvalidWindow), so jobs fail at build time.
	Validate() error
}

var (
	_ Assigner = TumblingAssigner{}
	_ Assigner = SlidingAssigner{}
	_ Assigner = SessionAssigner{}
	_ Assigner = GlobalAssigner{}
)

// checkTimestamp rejects the timestamps no event-time window can hold.
func checkTimestamp(ts dataflow.Timestamp) error {
	switch ts {
	case dataflow.NoTimestamp:
		return ErrNoTimestamp
	case dataflow.MaxWatermark:
		return errMaxTimestamp
	}
	return nil
}

// distance is how far ts is past the start of its window of the given size
// whose starts are offset plus multiples of size: (ts-offset) mod size in
// [0, size), as Flink's TimeWindow.getWindowStartWithOffset computes it, but
// without overflow for any ts. offset must be in [0, size).
func distance(ts, offset, size dataflow.Timestamp) dataflow.Timestamp {
	r := ts % size
	if r < 0 {
		r += size
	}
	r -= offset
	if r < 0 {
		r += size
	}
	return r
}

// startOf is the start of the window of the given size and offset that holds
// ts (before clamping), for offsets in (-size, size) as in Flink. Used by tests.
func startOf(ts, offset, size dataflow.Timestamp) dataflow.Timestamp {
	return ts - distance(ts, normalize(offset, size), size)
}

// span is the window [ts-d, ts-d+size) for 0 <= d < size, clamped to the
// int64 range.
func span(ts, d, size dataflow.Timestamp) Window {
	w := Window{Start: dataflow.MinWatermark, End: dataflow.MaxWatermark}
	if ts >= math.MinInt64+d {
		w.Start = ts - d
	}
	if rest := size - d; ts <= math.MaxInt64-rest {
		w.End = ts + rest
	}
	return w
}

// normalize returns offset mod size in [0, size); size must be positive.
func normalize(offset, size dataflow.Timestamp) dataflow.Timestamp {
	offset %= size
	if offset < 0 {
		offset += size
	}
	return offset
}

// TumblingAssigner puts each record into exactly one window of a fixed size;
// the windows do not overlap. Make one with Tumbling.
type TumblingAssigner struct {
	size, offset dataflow.Timestamp
}

// Tumbling assigns fixed-size, non-overlapping event-time windows
// [k*size, (k+1)*size) (shifted by WithOffset). A record at timestamp 0
// (1970-01-01T00:00:00Z) is an ordinary record in window [0, size); negative
// timestamps (before 1970) are windowed the same way, rounding down. size must
// be positive.
func Tumbling(size time.Duration) TumblingAssigner {
	return TumblingAssigner{size: dataflow.Timestamp(size)}
}

// WithOffset shifts the window starts by offset: windows start at offset plus
// multiples of size. For example Tumbling(24*time.Hour).WithOffset(-8*time.Hour)
// gives calendar days in UTC+8. Any offset is accepted and taken modulo size
// (so -8h and 16h give the same daily windows), like Flink's offsets in
// (-size, size).
func (a TumblingAssigner) WithOffset(offset time.Duration) TumblingAssigner {
	a.offset = dataflow.Timestamp(offset)
	if a.size > 0 {
		a.offset = normalize(a.offset, a.size)
	}
	return a
}

// Size is the window size.
func (a TumblingAssigner) Size() time.Duration { return time.Duration(a.size) }

// Offset is the offset normalized into [0, size).
func (a TumblingAssigner) Offset() time.Duration { return time.Duration(a.offset) }

// AssignTo appends the one window that holds ts.
func (a TumblingAssigner) AssignTo(dst []Window, ts dataflow.Timestamp) ([]Window, error) {
	if a.size <= 0 {
		return dst, a.Validate()
	}
	if err := checkTimestamp(ts); err != nil {
		return dst, err
	}
	return append(dst, span(ts, distance(ts, a.offset, a.size), a.size)), nil
}

// IsEventTime is true.
func (TumblingAssigner) IsEventTime() bool { return true }

// IsMerging is false.
func (TumblingAssigner) IsMerging() bool { return false }

// Validate reports a size that is not positive.
func (a TumblingAssigner) Validate() error {
	if a.size <= 0 {
		return fmt.Errorf("%w: tumbling window size %v must be positive", ErrInvalidWindow, time.Duration(a.size))
	}
	return nil
}

func (a TumblingAssigner) String() string {
	return fmt.Sprintf("tumbling(%v, offset %v)", time.Duration(a.size), time.Duration(a.offset))
}

// SlidingAssigner puts each record into the overlapping windows of a fixed
// size that start every slide. Make one with Sliding.
type SlidingAssigner struct {
	size, slide, offset dataflow.Timestamp
}

// MaxSlidingWindows bounds size/slide of a sliding assigner: every record is
// added to that many windows, so a larger ratio (say a day sliding by a
// millisecond) is almost surely a mistake, and would exhaust memory.
const MaxSlidingWindows = 100_000

// Sliding assigns event-time windows of the given size that start every
// slide: [k*slide, k*slide+size). A record belongs to size/slide windows when
// slide divides size, else to that number rounded up or down. Requires
// 0 < slide <= size and size/slide <= MaxSlidingWindows; slide == size is
// the same as Tumbling(size).
func Sliding(size, slide time.Duration) SlidingAssigner {
	return SlidingAssigner{size: dataflow.Timestamp(size), slide: dataflow.Timestamp(slide)}
}

// WithOffset shifts the window starts by offset: windows start at offset plus
// multiples of slide. Any offset is accepted and taken modulo slide.
func (a SlidingAssigner) WithOffset(offset time.Duration) SlidingAssigner {
	a.offset = dataflow.Timestamp(offset)
	if a.slide > 0 {
		a.offset = normalize(a.offset, a.slide)
	}
	return a
}

// Size is the window size.
func (a SlidingAssigner) Size() time.Duration { return time.Duration(a.size) }

// Slide is the distance between the starts of consecutive windows.
func (a SlidingAssigner) Slide() time.Duration { return time.Duration(a.slide) }

// Offset is the offset normalized into [0, slide).
func (a SlidingAssigner) Offset() time.Duration { return time.Duration(a.offset) }

// AssignTo appends the windows that hold ts, latest start first (as Flink's
// SlidingEventTimeWindows does).
func (a SlidingAssigner) AssignTo(dst []Window, ts dataflow.Timestamp) ([]Window, error) {
	if a.size <= 0 || a.slide <= 0 || a.slide > a.size || a.size/a.slide > MaxSlidingWindows {
		return dst, a.Validate()
	}
	if err := checkTimestamp(ts); err != nil {
		return dst, err
	}
	// d is how far ts is past a window's start; the windows holding ts are
	// those with d < size. Compare before adding so d never overflows.
	for d := distance(ts, a.offset, a.slide); ; d += a.slide {
		dst = append(dst, span(ts, d, a.size))
		if d >= a.size-a.slide {
			return dst, nil
		}
	}
}

// IsEventTime is true.
func (SlidingAssigner) IsEventTime() bool { return true }

// IsMerging is false.
func (SlidingAssigner) IsMerging() bool { return false }

// Validate reports a size or slide that is not positive, or a slide larger
// than the size (which would leave gaps that belong to no window), or more
// than MaxSlidingWindows windows per record.
func (a SlidingAssigner) Validate() error {
	switch {
	case a.size <= 0:
		return fmt.Errorf("%w: sliding window size %v must be positive", ErrInvalidWindow, time.Duration(a.size))
	case a.slide <= 0:
		return fmt.Errorf("%w: sliding window slide %v must be positive", ErrInvalidWindow, time.Duration(a.slide))
	case a.slide > a.size:
		return fmt.Errorf("%w: sliding window slide %v is larger than its size %v", ErrInvalidWindow, time.Duration(a.slide), time.Duration(a.size))
	case a.size/a.slide > MaxSlidingWindows:
		return fmt.Errorf("%w: sliding window size %v with slide %v puts each record into more than %d windows", ErrInvalidWindow, time.Duration(a.size), time.Duration(a.slide), MaxSlidingWindows)
	}
	return nil
}

func (a SlidingAssigner) String() string {
	return fmt.Sprintf("sliding(%v every %v, offset %v)", time.Duration(a.size), time.Duration(a.slide), time.Duration(a.offset))
}

// SessionAssigner gives each record the window [ts, ts+gap); the windows of
// one key that intersect merge into sessions. Make one with Session.
type SessionAssigner struct {
	gap dataflow.Timestamp
}

// Session assigns event-time session windows: a key's session lasts while its
// records are at most gap apart and ends gap after its last record. AssignTo
// only returns the record's own window [ts, ts+gap); merging is done by a
// MergingSet. Two records exactly gap apart are in the same session (their
// windows touch; see Window.Intersects). gap must be positive.
func Session(gap time.Duration) SessionAssigner {
	return SessionAssigner{gap: dataflow.Timestamp(gap)}
}

// Gap is the session gap.
func (a SessionAssigner) Gap() time.Duration { return time.Duration(a.gap) }

// AssignTo appends [ts, ts+gap), its end clamped at dataflow.MaxWatermark.
func (a SessionAssigner) AssignTo(dst []Window, ts dataflow.Timestamp) ([]Window, error) {
	if a.gap <= 0 {
		return dst, a.Validate()
	}
	if err := checkTimestamp(ts); err != nil {
		return dst, err
	}
	return append(dst, span(ts, 0, a.gap)), nil
}

// IsEventTime is true.
func (SessionAssigner) IsEventTime() bool { return true }

// IsMerging is true.
func (SessionAssigner) IsMerging() bool { return true }

// Validate reports a gap that is not positive.
func (a SessionAssigner) Validate() error {
	if a.gap <= 0 {
		return fmt.Errorf("%w: session gap %v must be positive", ErrInvalidWindow, time.Duration(a.gap))
	}
	return nil
}

func (a SessionAssigner) String() string { return fmt.Sprintf("session(gap %v)", time.Duration(a.gap)) }

// GlobalWindow is the one window of the global assigner, spanning all time:
// [MinWatermark, MaxWatermark). Its MaxTimestamp is MaxWatermark-1, so an
// event-time trigger fires it only at end of input.
var GlobalWindow = Window{Start: dataflow.MinWatermark, End: dataflow.MaxWatermark}

// GlobalAssigner puts every record into GlobalWindow. Make one with Global.
type GlobalAssigner struct{}

// Global assigns every record of a key to the same window, GlobalWindow,
// whatever its timestamp, including records without one. It is not an
// event-time assigner: a trigger (count, processing time, custom) decides
// when the window fires.
func Global() GlobalAssigner { return GlobalAssigner{} }

// AssignTo appends GlobalWindow; it never fails.
func (GlobalAssigner) AssignTo(dst []Window, _ dataflow.Timestamp) ([]Window, error) {
	return append(dst, GlobalWindow), nil
}

// IsEventTime is false: the timestamp is not used.
func (GlobalAssigner) IsEventTime() bool { return false }

// IsMerging is false.
func (GlobalAssigner) IsMerging() bool { return false }

// Validate returns nil.
func (GlobalAssigner) Validate() error { return nil }

func (GlobalAssigner) String() string { return "global" }
