package dataflow

import (
	"math"
	"strconv"
	"time"
)

// Timestamp is an event time or watermark in nanoseconds since the Unix epoch.
type Timestamp int64

const (
	// NoTimestamp marks a record that has no event time.
	NoTimestamp Timestamp = math.MinInt64
	// MinWatermark is the watermark before any event time is known.
	MinWatermark Timestamp = math.MinInt64
	// MaxWatermark is the watermark at end of input: every event-time window and timer fires.
	MaxWatermark Timestamp = math.MaxInt64
)

// TimestampOf converts a time to a Timestamp.
func TimestampOf(t time.Time) Timestamp { return Timestamp(t.UnixNano()) }

// Time converts ts to a time.Time in UTC.
func (ts Timestamp) Time() time.Time { return time.Unix(0, int64(ts)).UTC() }

func (ts Timestamp) String() string {
	switch ts {
	case NoTimestamp:
		return "none"
	case MaxWatermark:
		return "+inf"
	}
	return ts.Time().Format(time.RFC3339Nano) + " (" + strconv.FormatInt(int64(ts), 10) + ")"
}
