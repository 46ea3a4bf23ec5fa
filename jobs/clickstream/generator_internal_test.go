package clickstream

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The simulation is deterministic, and its events are as configured:
// fractions of malformed and late events, on-time events within the
// out-of-order bound, a user's events on one partition.
func TestSimulation(t *testing.T) {
	cfg := DefaultGeneratorConfig()
	cfg.Count = 50_000
	cfg.LateFraction, cfg.MalformedFraction = 0.02, 0.01
	a, b := newSimulation(cfg), newSimulation(cfg)
	other := cfg
	other.Seed = 2
	c := newSimulation(other)

	var malformed, late, differ int
	types := map[EventType]int{}
	partitionOf := map[string]string{}
	countries := map[string]bool{}
	startMs, spanMs := cfg.Start.UnixMilli(), cfg.Span.Milliseconds()
	for i := range cfg.Count {
		subA, payA := a.next()
		subB, payB := b.next()
		require.Equal(t, subA, subB)
		require.Equal(t, payA, payB)
		if _, payC := c.next(); !bytes.Equal(payA, payC) {
			differ++
		}
		e, err := ParseEvent(payA)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed))
			malformed++
			continue
		}
		types[e.Type]++
		countries[e.Country] = true
		if p, ok := partitionOf[e.UserID]; ok {
			require.Equal(t, p, subA, "user %s on two partitions", e.UserID)
		}
		partitionOf[e.UserID] = subA
		due := startMs + int64(float64(spanMs)*float64(i)/float64(cfg.Count))
		ms := e.Time.UnixMilli()
		require.LessOrEqual(t, ms, due)
		if due-ms > cfg.OutOfOrder.Milliseconds() {
			late++
			require.LessOrEqual(t, due-ms, cfg.MaxLateness.Milliseconds())
		}
		if e.Type == Stop {
			require.Positive(t, e.WatchMillis)
		}
		if e.Type == Error {
			require.NotEmpty(t, e.ErrorCode)
		}
	}
	near := func(got int, fraction float64) {
		t.Helper()
		want := fraction * float64(cfg.Count)
		require.Less(t, math.Abs(float64(got)-want), 4*math.Sqrt(want)+1, "got %d, want about %.0f", got, want)
	}
	near(malformed, cfg.MalformedFraction)
	near(late, cfg.LateFraction)
	require.Greater(t, differ, int(cfg.Count)*9/10, "another seed makes other events")
	require.Greater(t, len(countries), 10)
	for _, typ := range []EventType{Play, Pause, Resume, Seek, Stop, Error} {
		require.Positive(t, types[typ], typ)
	}
	// Every session begins with a play and ends with a stop or an error.
	// (The sessions still running at the end have not ended yet.)
	require.InDelta(t, types[Play], types[Stop]+types[Error], float64(cfg.Sessions))
}

// Popular videos are much more popular than the rest.
func TestSimulationZipf(t *testing.T) {
	cfg := DefaultGeneratorConfig()
	cfg.Count, cfg.MalformedFraction = 20_000, 0
	g := newSimulation(cfg)
	plays := map[string]int{}
	for range cfg.Count {
		_, p := g.next()
		if e, err := ParseEvent(p); err == nil && e.Type == Play {
			plays[e.VideoID]++
		}
	}
	require.Greater(t, plays[videoID(0)], 20*max(1, plays[videoID(cfg.Videos/2)]))
}

func TestGeneratorConfigValidate(t *testing.T) {
	require.NoError(t, DefaultGeneratorConfig().Validate())
	require.NoError(t, GeneratorConfig{}.Validate(), "zero fields take defaults")
	bad := DefaultGeneratorConfig()
	bad.Partitions, bad.LateFraction, bad.MalformedFraction, bad.Start = 5000, 0.9, 0.2, time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	err := bad.Validate()
	require.ErrorIs(t, err, ErrGenerator)
	require.ErrorContains(t, err, "partitions 5000")
	require.ErrorContains(t, err, "sum <= 1")
	require.ErrorContains(t, err, "years 2000 to 2099")
}

func TestSubjectMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"clicks.*", "clicks.0", true},
		{"clicks.>", "clicks.0", true},
		{"clicks.>", "clicks.0.x", true},
		{"clicks.*", "clicks.0.x", false},
		{"clicks.*", "clicks", false},
		{"clicks.>", "clicks", false},
		{"clicks.0", "clicks.0", true},
		{"views.*", "clicks.0", false},
		{">", "clicks.0", true},
	} {
		require.Equal(t, tc.want, subjectMatches(tc.pattern, tc.subject), "%s ~ %s", tc.pattern, tc.subject)
	}
}

func TestTopViews(t *testing.T) {
	agg := topViews{n: 3}
	acc := agg.CreateAccumulator()
	for _, v := range []VideoViews{{VideoID: "d", Views: 1}, {VideoID: "b", Views: 5}, {VideoID: "a", Views: 5}, {VideoID: "c", Views: 7}, {VideoID: "e", Views: 2}} {
		acc = agg.Add(acc, v)
	}
	require.Equal(t, []VideoCount{{"c", 7}, {"a", 5}, {"b", 5}}, agg.Result(acc))
	other := agg.Add(agg.CreateAccumulator(), VideoViews{VideoID: "z", Views: 6})
	require.Equal(t, []VideoCount{{"c", 7}, {"z", 6}, {"a", 5}}, agg.Result(agg.Merge(acc, other)))
	require.ErrorIs(t, topViews{}.Validate(), ErrParam)
}
