package clickstream

import "time"

// The results of the job, one type per result. Each has a JSON (`json`),
// Parquet (`parquet`) and Postgres (`db`) mapping; the `db` key columns are
// the primary key of the Postgres table, so a replay upserts the same rows.
// Windows are [WindowStart, WindowEnd) in UTC.

// VideoViews is the number of views (Play events) of a video in a window.
type VideoViews struct {
	WindowStart time.Time `json:"window_start" parquet:"window_start,timestamp(millisecond)" db:"window_start,key"`
	WindowEnd   time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	VideoID     string    `json:"video_id" parquet:"video_id" db:"video_id,key"`
	Views       int64     `json:"views" parquet:"views" db:"views"`
}

// TopVideo is one place of a window's ranking of videos by views: Rank 1 is
// the most viewed. Equal view counts are ranked by video id, ascending.
type TopVideo struct {
	WindowStart time.Time `json:"window_start" parquet:"window_start,timestamp(millisecond)" db:"window_start,key"`
	WindowEnd   time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	Rank        int64     `json:"rank" parquet:"rank" db:"rank,key"`
	VideoID     string    `json:"video_id" parquet:"video_id" db:"video_id"`
	Views       int64     `json:"views" parquet:"views" db:"views"`
}

// WatchTime is the watch time of the sessions of a video that stopped in a
// window (Stop events): how many, in total and on average.
type WatchTime struct {
	WindowStart  time.Time `json:"window_start" parquet:"window_start,timestamp(millisecond)" db:"window_start,key"`
	WindowEnd    time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	VideoID      string    `json:"video_id" parquet:"video_id" db:"video_id,key"`
	Sessions     int64     `json:"sessions" parquet:"sessions" db:"sessions"`
	TotalSeconds float64   `json:"total_seconds" parquet:"total_seconds" db:"total_seconds"`
	AvgSeconds   float64   `json:"avg_seconds" parquet:"avg_seconds" db:"avg_seconds"`
}

// CountryViews is the number of views in a country in a window.
type CountryViews struct {
	WindowStart time.Time `json:"window_start" parquet:"window_start,timestamp(millisecond)" db:"window_start,key"`
	WindowEnd   time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	Country     string    `json:"country" parquet:"country" db:"country,key"`
	Views       int64     `json:"views" parquet:"views" db:"views"`
}

// PlaybackErrors is the number of playback errors with an error code in a
// window.
type PlaybackErrors struct {
	WindowStart time.Time `json:"window_start" parquet:"window_start,timestamp(millisecond)" db:"window_start,key"`
	WindowEnd   time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	ErrorCode   string    `json:"error_code" parquet:"error_code" db:"error_code,key"`
	Errors      int64     `json:"errors" parquet:"errors" db:"errors"`
}

// LateEvent is an event that came too late to be counted: its window had
// already been closed (see the package documentation), so it is in no result.
type LateEvent struct {
	// Sequence is the event's stream sequence, unique in the stream.
	Sequence  uint64    `json:"sequence" parquet:"sequence" db:"sequence,key"`
	Partition string    `json:"partition" parquet:"partition" db:"partition"`
	EventID   string    `json:"event_id" parquet:"event_id" db:"event_id"`
	UserID    string    `json:"user_id" parquet:"user_id" db:"user_id"`
	SessionID string    `json:"session_id" parquet:"session_id" db:"session_id"`
	VideoID   string    `json:"video_id" parquet:"video_id" db:"video_id"`
	Country   string    `json:"country" parquet:"country" db:"country"`
	Device    string    `json:"device" parquet:"device" db:"device"`
	Type      string    `json:"type" parquet:"type" db:"type"`
	WatchMS   int64     `json:"watch_ms" parquet:"watch_ms" db:"watch_ms"`
	ErrorCode string    `json:"error_code" parquet:"error_code" db:"error_code"`
	EventTime time.Time `json:"event_time" parquet:"event_time,timestamp(millisecond)" db:"event_time"`
	// Watermark is the event time up to which the event's partition was
	// complete when the event arrived, and WindowEnd the end of the window it
	// belonged to. For reason "lateness", WindowEnd plus the allowed lateness
	// was not after Watermark; for "window-closed" it was (the event was on
	// time in its partition), but the job's watermark was past it.
	Watermark time.Time `json:"watermark" parquet:"watermark,timestamp(nanosecond)" db:"watermark"`
	WindowEnd time.Time `json:"window_end" parquet:"window_end,timestamp(millisecond)" db:"window_end"`
	// Reason is "lateness" for events later than the allowed lateness in their
	// partition, or "window-closed" for events whose partition had been idle
	// while the job's watermark moved past their window (see Params: idleness).
	Reason string `json:"reason" parquet:"reason" db:"reason"`
}

func lateEvent(e Event, watermark, windowEnd time.Time, reason string) LateEvent {
	return LateEvent{
		Sequence: e.Sequence, Partition: e.Partition, EventID: e.EventID, UserID: e.UserID,
		SessionID: e.SessionID, VideoID: e.VideoID, Country: e.Country, Device: e.Device,
		Type: string(e.Type), WatchMS: e.WatchMillis, ErrorCode: e.ErrorCode, EventTime: e.Time.UTC(),
		Watermark: watermark.UTC(), WindowEnd: windowEnd.UTC(), Reason: reason,
	}
}
