package clickstream_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/clickstream"
)

func TestParseEvent(t *testing.T) {
	e, err := clickstream.ParseEvent([]byte(`{"event_id":"e1","user_id":"u1","session_id":"s1","video_id":"v1",
		"country":"BR","device":"web","type":"stop","watch_seconds":754.2,"ts":"2026-01-01T00:00:01.250Z"}`))
	require.NoError(t, err)
	require.Equal(t, clickstream.Event{EventID: "e1", UserID: "u1", SessionID: "s1", VideoID: "v1", Country: "BR",
		Device: "web", Type: clickstream.Stop, WatchMillis: 754_200, Time: time.Date(2026, 1, 1, 0, 0, 1, 250e6, time.UTC)}, e)

	// Unix milliseconds, another zone, no country or device.
	e, err = clickstream.ParseEvent([]byte(`{"event_id":"e2","user_id":"u1","video_id":"v1","type":"play","ts":1767225601250}`))
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 1, 250e6, time.UTC), e.Time)
	require.Equal(t, clickstream.Unknown, e.Country)
	require.Equal(t, clickstream.Unknown, e.Device)
	e, err = clickstream.ParseEvent([]byte(`{"event_id":"e3","user_id":"u1","video_id":"v1","type":"error","error_code":"CDN_5XX","ts":"2026-01-01T02:00:01+02:00"}`))
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), e.Time)
	require.Equal(t, "CDN_5XX", e.ErrorCode)

	for _, tc := range []struct{ payload, want string }{
		{`<html>502</html>`, "not a JSON event object"},
		{`{"event_id":"e1","user_id":"u1","vid`, "not a JSON event object"},
		{`[1,2]`, "not a JSON event object"},
		{`{"user_id":"u1","video_id":"v1","type":"play","ts":1767225601250}`, "event_id missing"},
		{`{"event_id":"e1","video_id":"v1","type":"play","ts":1767225601250}`, "event e1: user_id missing"},
		{`{"event_id":"e1","user_id":"u1","type":"play","ts":1767225601250}`, "event e1: video_id missing"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","ts":1767225601250}`, "event e1: type missing"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"teleport","ts":1767225601250}`, `unknown type "teleport"`},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"play"}`, "ts: missing"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"play","ts":null}`, "ts: missing"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"play","ts":"yesterday"}`, `ts: "yesterday" is not an RFC 3339 time`},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"play","ts":1.5e12}`, "neither an RFC 3339 string nor an integer"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"play","ts":0}`, "1970-01-01T00:00:00Z is outside the years 2000 to 2099"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"stop","watch_seconds":-1,"ts":1767225601250}`, "watch_seconds -1 out of range"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"stop","watch_seconds":1e9,"ts":1767225601250}`, "out of range"},
		{`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"error","ts":1767225601250}`, "error event without error_code"},
	} {
		_, err := clickstream.ParseEvent([]byte(tc.payload))
		require.ErrorIs(t, err, clickstream.ErrMalformed, tc.payload)
		require.ErrorContains(t, err, tc.want, tc.payload)
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	e := clickstream.Event{EventID: "e1", UserID: "u1", SessionID: "s1", VideoID: "v1", Country: "JP", Device: "ios",
		Type: clickstream.Stop, WatchMillis: 1234, Time: time.Date(2026, 3, 4, 5, 6, 7, 891e6, time.UTC)}
	for _, tf := range []clickstream.TimeFormat{clickstream.RFC3339Millis, clickstream.UnixMillis} {
		b, err := clickstream.AppendJSON(nil, e, tf)
		require.NoError(t, err)
		got, err := clickstream.ParseEvent(b)
		require.NoError(t, err, string(b))
		require.Equal(t, e, got)
	}
}

// Whatever the payload, ParseEvent does not panic, and what it accepts
// encodes and decodes again to the same event (to the millisecond).
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"event_id":"e1","user_id":"u1","video_id":"v1","type":"stop","watch_seconds":754.2,"ts":"2026-01-01T00:00:01.250Z"}`))
	f.Add([]byte(`{"event_id":"e2","user_id":"u1","video_id":"v1","type":"play","ts":1767225601250}`))
	f.Add([]byte(`{"event_id":"e3","user_id":"u1","video_id":"v1","type":"error","error_code":"X","ts":"2026-01-01T02:00:01.123456789+02:00"}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := clickstream.ParseEvent(data)
		if err != nil {
			require.ErrorIs(t, err, clickstream.ErrMalformed)
			return
		}
		b, err := clickstream.AppendJSON(nil, e, clickstream.RFC3339Millis)
		require.NoError(t, err)
		again, err := clickstream.ParseEvent(b)
		require.NoError(t, err, string(b))
		e.Time = e.Time.Truncate(time.Millisecond)
		require.Equal(t, e, again)
	})
}
