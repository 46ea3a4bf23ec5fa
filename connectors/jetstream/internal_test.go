package jetstream

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

func TestSubjectsIntersect(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"views.1", "views.1", true},
		{"views.1", "views.2", false},
		{"views.*", "views.2", true},
		{"views.>", "views.2.x", true},
		{"views.>", "views", false},
		{"views.*", "views.2.x", false},
		{"*.2", "views.*", true},
		{">", "a.b.c", true},
		{"a.*.c", "a.b.>", true},
		{"a.*.c", "a.b.d", false},
		{"a.b", "a.b.c", false},
	} {
		require.Equal(t, c.want, subjectsIntersect(c.a, c.b), "%s ~ %s", c.a, c.b)
		require.Equal(t, c.want, subjectsIntersect(c.b, c.a), "%s ~ %s", c.b, c.a)
	}
}

func TestValidFilter(t *testing.T) {
	for _, ok := range []string{"a", "a.b", "a.*", "a.>", "*", ">", "a.*.c"} {
		require.NoError(t, validFilter(ok), ok)
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.>.b", "a b", "a.b*", "a.>x"} {
		require.Error(t, validFilter(bad), bad)
	}
}

func TestParseAck(t *testing.T) {
	a, ok := parseAck("$JS.ACK.VIEWS.cons.1.1234.17.1767225600000000000.5")
	require.True(t, ok)
	require.Equal(t, ackInfo{sseq: 1234, dseq: 17, pending: 5, ts: 1767225600000000000}, a)
	a, ok = parseAck("$JS.ACK.dom.ACCHASH.VIEWS.cons.2.99.3.1767225600000000001.0.r4nd0m")
	require.True(t, ok)
	require.Equal(t, ackInfo{sseq: 99, dseq: 3, pending: 0, ts: 1767225600000000001}, a)
	a, ok = parseAck("$JS.ACK.dom.ACCHASH.VIEWS.cons.2.99.3.1767225600000000001.0")
	require.True(t, ok)
	require.Equal(t, uint64(99), a.sseq)
	for _, bad := range []string{"", "_INBOX.abc", "$JS.ACK.VIEWS.cons.1.x.17.1.5", "$JS.ACK.a.b.c", "$JS.NAK.VIEWS.cons.1.1.1.1.1"} {
		_, ok := parseAck(bad)
		require.False(t, ok, bad)
	}
}

func TestHeaderTime(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 500_000_000, time.UTC)
	got, err := headerTime("1777636800500")
	require.NoError(t, err)
	require.True(t, at.Equal(got))
	got, err = headerTime("2026-05-01T14:00:00.5+02:00")
	require.NoError(t, err)
	require.True(t, at.Equal(got))
	_, err = headerTime("yesterday")
	require.ErrorContains(t, err, `"yesterday" is neither RFC 3339 nor Unix milliseconds`)
	_, err = headerTime("")
	require.ErrorContains(t, err, "missing")
}

func TestDefaultCodecs(t *testing.T) {
	b, err := defaultDecoder[[]byte]()([]byte("x"), nil)
	require.NoError(t, err)
	require.Equal(t, []byte("x"), b)
	s, err := defaultDecoder[string]()([]byte("y"), nil)
	require.NoError(t, err)
	require.Equal(t, "y", s)
	type v struct{ A int }
	d, err := defaultDecoder[v]()([]byte(`{"A":3}`), nil)
	require.NoError(t, err)
	require.Equal(t, v{3}, d)
	e, err := defaultEncoder[v]()(v{4})
	require.NoError(t, err)
	require.JSONEq(t, `{"A":4}`, string(e))
	e, err = defaultEncoder[string]()("z")
	require.NoError(t, err)
	require.Equal(t, "z", string(e))
	m, err := EncodeMsgpack[v]()(v{5})
	require.NoError(t, err)
	d, err = Msgpack[v]()(m, nil)
	require.NoError(t, err)
	require.Equal(t, v{5}, d)
}

func TestSourceConfigValidate(t *testing.T) {
	base := SourceConfig[int]{Conn: ConnConfig{URL: "nats://x"}, Stream: "S"}
	require.NoError(t, base.Validate())
	for name, change := range map[string]func(*SourceConfig[int]){
		"no url":       func(c *SourceConfig[int]) { c.Conn.URL = "" },
		"bad stream":   func(c *SourceConfig[int]) { c.Stream = "a.b" },
		"overlap":      func(c *SourceConfig[int]) { c.Partitions = []string{"v.*", "v.1"} },
		"bad filter":   func(c *SourceConfig[int]) { c.Partitions = []string{"v..1"} },
		"seq 0":        func(c *SourceConfig[int]) { c.Start = Sequence(0) },
		"both times":   func(c *SourceConfig[int]) { c.MessageTime = &MessageTime{}; c.Watermarks = fakeWatermarks() },
		"dlq wildcard": func(c *SourceConfig[int]) { c.OnDecodeError = DeadLetter("dlq.*") },
		"negative":     func(c *SourceConfig[int]) { c.PullBatch = -1 },
	} {
		c := base
		change(&c)
		require.ErrorIs(t, c.Validate(), ErrConfig, name)
	}
}

func fakeWatermarks() dataflow.WatermarkStrategy[int] {
	return dataflow.Monotonic(func(int) time.Time { return time.Time{} })
}
