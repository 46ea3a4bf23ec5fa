package clickstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
)

// ErrMalformed is wrapped by every error of ParseEvent: the payload is not an
// event the job can count.
var ErrMalformed = errors.New("clickstream: malformed event")

// EventType is what a player reported.
type EventType string

// The event types a player sends. A view is a Play: the start of a playback
// session. Stop ends a session and carries the seconds watched; Error ends it
// with an error code.
const (
	Play   EventType = "play"
	Pause  EventType = "pause"
	Resume EventType = "resume"
	Seek   EventType = "seek"
	Stop   EventType = "stop"
	Error  EventType = "error"
)

// Unknown is the country or device of an event that did not report one.
const Unknown = "unknown"

// Event is one player event, as the job sees it after decoding.
//
// On the wire (see ParseEvent and AppendJSON) an event is a JSON object:
//
//	{"event_id":"e1-42","user_id":"u-000017","session_id":"s1-9","video_id":"v-00003",
//	 "country":"BR","device":"android","type":"stop","watch_seconds":754.2,
//	 "ts":1767225600123}
//
// ts is the event time, either an RFC 3339 string or an integer of Unix
// milliseconds (web and TV players send the former, mobile apps the latter).
type Event struct {
	EventID   string
	UserID    string
	SessionID string
	VideoID   string
	// Country is an ISO 3166 code, or Unknown.
	Country string
	// Device is web, ios, android, tv, or Unknown.
	Device string
	Type   EventType
	// WatchMillis is the watch time a Stop reports, in milliseconds
	// (watch_seconds on the wire, rounded to the millisecond so that sums are
	// exact and do not depend on the order of addition).
	WatchMillis int64
	// ErrorCode is set on Error events.
	ErrorCode string
	// Time is the event time.
	Time time.Time

	// Partition and Sequence say where the job read the event: the subject
	// filter of its source partition and its stream sequence. They are not
	// part of the payload.
	Partition string
	Sequence  uint64

	// partitionWatermark is the watermark of the event's partition when the
	// late filter let it through, for the report of an event that the windows
	// dropped nonetheless.
	partitionWatermark dataflow.Timestamp
}

// wireEvent is the JSON form of an event. TS is kept raw because it is
// either a string or a number.
type wireEvent struct {
	EventID      string          `json:"event_id"`
	UserID       string          `json:"user_id"`
	SessionID    string          `json:"session_id,omitempty"`
	VideoID      string          `json:"video_id"`
	Country      string          `json:"country,omitempty"`
	Device       string          `json:"device,omitempty"`
	Type         EventType       `json:"type"`
	WatchSeconds *float64        `json:"watch_seconds,omitempty"`
	ErrorCode    string          `json:"error_code,omitempty"`
	TS           json.RawMessage `json:"ts"`
}

// Sane bounds of event time and watch time: a clock set to 1970 or a player
// reporting a week of watching for one session are bugs, not data.
var (
	minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

const maxWatchSeconds = 7 * 24 * 3600

// ParseEvent decodes and checks one payload. A payload is malformed (the
// error wraps ErrMalformed and says which field is wrong) when it is not a
// JSON object, lacks event_id, user_id or video_id, has an unknown type, lacks
// ts or has one that does not parse or lies outside the years 2000 to 2100,
// has a negative, non-finite or week-long watch_seconds, or is an error event
// without error_code. A missing country or device is not an error: it
// becomes Unknown.
func ParseEvent(data []byte) (Event, error) {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return Event{}, fmt.Errorf("%w: not a JSON event object: %v", ErrMalformed, err)
	}
	switch {
	case w.EventID == "":
		return Event{}, fmt.Errorf("%w: event_id missing", ErrMalformed)
	case w.UserID == "":
		return Event{}, fmt.Errorf("%w: event %s: user_id missing", ErrMalformed, w.EventID)
	case w.VideoID == "":
		return Event{}, fmt.Errorf("%w: event %s: video_id missing", ErrMalformed, w.EventID)
	}
	switch w.Type {
	case Play, Pause, Resume, Seek, Stop, Error:
	case "":
		return Event{}, fmt.Errorf("%w: event %s: type missing", ErrMalformed, w.EventID)
	default:
		return Event{}, fmt.Errorf("%w: event %s: unknown type %q (want play, pause, resume, seek, stop or error)", ErrMalformed, w.EventID, w.Type)
	}
	t, err := parseEventTime(w.TS)
	if err != nil {
		return Event{}, fmt.Errorf("%w: event %s: ts: %v", ErrMalformed, w.EventID, err)
	}
	e := Event{
		EventID: w.EventID, UserID: w.UserID, SessionID: w.SessionID, VideoID: w.VideoID,
		Country: w.Country, Device: w.Device, Type: w.Type, ErrorCode: w.ErrorCode, Time: t,
	}
	if e.Country == "" {
		e.Country = Unknown
	}
	if e.Device == "" {
		e.Device = Unknown
	}
	if w.WatchSeconds != nil {
		s := *w.WatchSeconds
		if math.IsNaN(s) || s < 0 || s > maxWatchSeconds {
			return Event{}, fmt.Errorf("%w: event %s: watch_seconds %v out of range [0, %d]", ErrMalformed, w.EventID, s, maxWatchSeconds)
		}
		e.WatchMillis = int64(math.Round(s * 1000))
	}
	if e.Type == Error && e.ErrorCode == "" {
		return Event{}, fmt.Errorf("%w: event %s: error event without error_code", ErrMalformed, w.EventID)
	}
	return e, nil
}

// parseEventTime reads an RFC 3339 string or an integer of Unix milliseconds.
func parseEventTime(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return time.Time{}, errors.New("missing")
	}
	var t time.Time
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, err
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
		}
	} else {
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s is neither an RFC 3339 string nor an integer of Unix milliseconds", raw)
		}
		t = time.UnixMilli(ms)
	}
	if t.Before(minEventTime) || !t.Before(maxEventTime) {
		return time.Time{}, fmt.Errorf("%s is outside the years 2000 to 2099", t.UTC().Format(time.RFC3339))
	}
	return t.UTC(), nil
}

// TimeFormat says how AppendJSON writes an event's time.
type TimeFormat uint8

const (
	// RFC3339Millis writes "2026-01-01T00:00:00.123Z".
	RFC3339Millis TimeFormat = iota
	// UnixMillis writes an integer of Unix milliseconds.
	UnixMillis
)

// AppendJSON appends the wire form of e (without Partition and Sequence)
// to buf. Event time is written to the millisecond, watch time to the
// millisecond as watch_seconds (only for a non-zero WatchMillis or a Stop).
func AppendJSON(buf []byte, e Event, tf TimeFormat) ([]byte, error) {
	w := wireEvent{
		EventID: e.EventID, UserID: e.UserID, SessionID: e.SessionID, VideoID: e.VideoID,
		Country: e.Country, Device: e.Device, Type: e.Type, ErrorCode: e.ErrorCode,
	}
	if e.WatchMillis != 0 || e.Type == Stop {
		s := float64(e.WatchMillis) / 1000
		w.WatchSeconds = &s
	}
	if tf == UnixMillis {
		w.TS = strconv.AppendInt(nil, e.Time.UnixMilli(), 10)
	} else {
		w.TS = strconv.AppendQuote(nil, e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	b, err := json.Marshal(w)
	if err != nil {
		return buf, fmt.Errorf("clickstream: encode event %s: %w", e.EventID, err)
	}
	return append(buf, b...), nil
}

// decodeEvent is the source's decoder: ParseEvent plus where the event was read.
func decodeEvent(data []byte, m *jetstream.Msg) (Event, error) {
	e, err := ParseEvent(data)
	if err != nil {
		return e, err
	}
	e.Partition, e.Sequence = m.Partition, m.Sequence
	return e, nil
}

func eventTime(e Event) time.Time { return e.Time }
