package clickstream_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/internal/testlock"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// The Postgres tests of another package restart the server: take turns.
func TestMain(m *testing.M) { testlock.Main(m, testlock.Postgres) }

// startServer starts an embedded server for t on a random port.
func startServer(t testing.TB) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return srv
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// testGenerator is a small, fast configuration: cfg.Count events over
// six minutes of event time.
func testGenerator(count int64) clickstream.GeneratorConfig {
	g := clickstream.DefaultGeneratorConfig()
	g.Count = count
	g.Span = 6 * time.Minute
	g.Videos, g.Users, g.Sessions = 300, 5000, 400
	g.LateFraction = 0.02
	g.MalformedFraction = 0.005
	g.Seed = 7
	return g
}

// publish makes the streams and publishes g's events.
func publish(t testing.TB, nc *nats.Conn, g clickstream.GeneratorConfig) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, clickstream.EnsureStream(ctx, nc, g.StreamConfig()))
	n, err := clickstream.Generate(ctx, nc, g)
	require.NoError(t, err)
	require.Equal(t, g.Count, n)
}

// streamMsg is a message as stored.
type streamMsg struct {
	Subject string
	Seq     uint64
	Data    []byte
	Header  nats.Header
}

// readStream returns every message of stream, in stream order.
func readStream(t testing.TB, nc *nats.Conn, stream string) []streamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := njs.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	total := int(info.State.Msgs)
	out := make([]streamMsg, 0, total)
	if total == 0 {
		return out
	}
	cons, err := s.OrderedConsumer(ctx, njs.OrderedConsumerConfig{})
	require.NoError(t, err)
	for len(out) < total {
		batch, err := cons.Fetch(min(4096, total-len(out)), njs.FetchMaxWait(10*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			md, err := m.Metadata()
			require.NoError(t, err)
			out = append(out, streamMsg{Subject: m.Subject(), Seq: md.Sequence.Stream, Data: m.Data(), Header: m.Headers()})
		}
		require.NoError(t, batch.Error())
	}
	return out
}

// results are every output of the job.
type results struct {
	Views     []clickstream.VideoViews
	Top       []clickstream.TopVideo
	Watch     []clickstream.WatchTime
	Countries []clickstream.CountryViews
	Errors    []clickstream.PlaybackErrors
	Late      []clickstream.LateEvent
}

// reference computes the job's results from the stream's messages in plain
// Go: events in stream order per partition, the partition's watermark as the
// largest event time so far minus the out-of-orderness minus 1ns, an event
// late when its window's end plus the lateness, minus 1ns, is not after it.
func reference(msgs []streamMsg, window, outOfOrder, lateness time.Duration, top int) (r results, malformed int) {
	r, malformed = compute(msgs, window, outOfOrder, lateness, top)
	r.sort()
	return r, malformed
}

// compute is reference without putting the results in canonical order.
func compute(msgs []streamMsg, window, outOfOrder, lateness time.Duration, top int) (r results, malformed int) {
	type vw struct {
		key   string
		start int64
	}
	views, countries, errs := map[vw]int64{}, map[vw]int64{}, map[vw]int64{}
	type acc struct{ sum, n int64 }
	watch := map[vw]acc{}
	maxTs := map[string]int64{}
	size := int64(window)
	for _, m := range msgs {
		e, err := clickstream.ParseEvent(m.Data)
		if err != nil {
			malformed++
			continue
		}
		ts := e.Time.UnixNano()
		start := ts - ts%size
		mx, seen := maxTs[m.Subject]
		if seen && ts <= mx {
			wm := mx - int64(outOfOrder) - 1
			if start+size-1+int64(lateness) <= wm {
				e.Partition, e.Sequence = m.Subject, m.Seq
				r.Late = append(r.Late, clickstream.LateEvent{
					Sequence: m.Seq, Partition: m.Subject, EventID: e.EventID, UserID: e.UserID, SessionID: e.SessionID,
					VideoID: e.VideoID, Country: e.Country, Device: e.Device, Type: string(e.Type), WatchMS: e.WatchMillis,
					ErrorCode: e.ErrorCode, EventTime: e.Time.UTC(), Watermark: time.Unix(0, wm).UTC(),
					WindowEnd: time.Unix(0, start+size).UTC(), Reason: "lateness",
				})
				continue
			}
		} else {
			maxTs[m.Subject] = ts
		}
		switch e.Type {
		case clickstream.Play:
			views[vw{e.VideoID, start}]++
			countries[vw{e.Country, start}]++
		case clickstream.Stop:
			a := watch[vw{e.VideoID, start}]
			watch[vw{e.VideoID, start}] = acc{a.sum + e.WatchMillis, a.n + 1}
		case clickstream.Error:
			errs[vw{e.ErrorCode, start}]++
		}
	}
	win := func(start int64) (time.Time, time.Time) {
		return time.Unix(0, start).UTC(), time.Unix(0, start+size).UTC()
	}
	perWindow := map[int64][]clickstream.VideoViews{}
	for k, n := range views {
		s, e := win(k.start)
		v := clickstream.VideoViews{WindowStart: s, WindowEnd: e, VideoID: k.key, Views: n}
		r.Views = append(r.Views, v)
		perWindow[k.start] = append(perWindow[k.start], v)
	}
	for _, vs := range perWindow {
		slices.SortFunc(vs, func(a, b clickstream.VideoViews) int {
			return cmp.Or(cmp.Compare(b.Views, a.Views), cmp.Compare(a.VideoID, b.VideoID))
		})
		for i, v := range vs[:min(top, len(vs))] {
			r.Top = append(r.Top, clickstream.TopVideo{WindowStart: v.WindowStart, WindowEnd: v.WindowEnd, Rank: int64(i + 1), VideoID: v.VideoID, Views: v.Views})
		}
	}
	for k, a := range watch {
		s, e := win(k.start)
		r.Watch = append(r.Watch, clickstream.WatchTime{WindowStart: s, WindowEnd: e, VideoID: k.key, Sessions: a.n,
			TotalSeconds: float64(a.sum) / 1000, AvgSeconds: float64(a.sum) / float64(a.n) / 1000})
	}
	for k, n := range countries {
		s, e := win(k.start)
		r.Countries = append(r.Countries, clickstream.CountryViews{WindowStart: s, WindowEnd: e, Country: k.key, Views: n})
	}
	for k, n := range errs {
		s, e := win(k.start)
		r.Errors = append(r.Errors, clickstream.PlaybackErrors{WindowStart: s, WindowEnd: e, ErrorCode: k.key, Errors: n})
	}
	return r, malformed
}

// sort puts every result in a canonical order and times in UTC.
func (r *results) sort() {
	sortRows(r.Views)
	sortRows(r.Top)
	sortRows(r.Watch)
	sortRows(r.Countries)
	sortRows(r.Errors)
	sortRows(r.Late)
}

func sortRows[T any](rows []T) {
	type keyed struct {
		key string
		row T
	}
	ks := make([]keyed, len(rows))
	for i := range rows {
		utc(reflect.ValueOf(&rows[i]).Elem())
		ks[i] = keyed{canon(rows[i]), rows[i]}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range ks {
		rows[i] = ks[i].row
	}
}

// utc sets every time.Time field of the struct v to UTC.
func utc(v reflect.Value) {
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == reflect.TypeFor[time.Time]() {
			f.Set(reflect.ValueOf(f.Interface().(time.Time).UTC()))
		}
	}
}

func canon(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// readResults reads every result the job wrote under dir.
func readResults(t testing.TB, dir string, parquetFormat bool) results {
	t.Helper()
	r := results{
		Views:     readRows[clickstream.VideoViews](t, filepath.Join(dir, clickstream.ResultViews), parquetFormat, func(v clickstream.VideoViews) time.Time { return v.WindowEnd }),
		Top:       readRows[clickstream.TopVideo](t, filepath.Join(dir, clickstream.ResultTop), parquetFormat, func(v clickstream.TopVideo) time.Time { return v.WindowEnd }),
		Watch:     readRows[clickstream.WatchTime](t, filepath.Join(dir, clickstream.ResultWatchTime), parquetFormat, func(v clickstream.WatchTime) time.Time { return v.WindowEnd }),
		Countries: readRows[clickstream.CountryViews](t, filepath.Join(dir, clickstream.ResultCountries), parquetFormat, func(v clickstream.CountryViews) time.Time { return v.WindowEnd }),
		Errors:    readRows[clickstream.PlaybackErrors](t, filepath.Join(dir, clickstream.ResultErrors), parquetFormat, func(v clickstream.PlaybackErrors) time.Time { return v.WindowEnd }),
		// A late event carries its own event time.
		Late: readRows[clickstream.LateEvent](t, filepath.Join(dir, clickstream.ResultLate), parquetFormat, func(v clickstream.LateEvent) time.Time { return v.EventTime.Add(time.Nanosecond) }),
	}
	r.sort()
	return r
}

// readRows reads the final part files under dir and checks that each row
// is in the Hive partition of its event time (end(row) - 1ns).
func readRows[T any](t testing.TB, dir string, parquetFormat bool, end func(T) time.Time) []T {
	t.Helper()
	var rows []T
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			return fmt.Errorf("uncommitted part file %s", p)
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		var got []T
		if parquetFormat {
			require.True(t, strings.HasSuffix(p, ".parquet"), p)
			if got, err = parquet.ReadFile[T](p); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		} else {
			require.True(t, strings.HasSuffix(p, ".jsonl"), p)
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var v T
				if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				got = append(got, v)
			}
			if err := sc.Err(); err != nil {
				return err
			}
		}
		for _, v := range got {
			want := end(v).Add(-time.Nanosecond).UTC().Format(clickstream.HivePartitions)
			require.Equal(t, want, filepath.ToSlash(rel), "partition directory of %s", canon(v))
		}
		rows = append(rows, got...)
		return nil
	})
	require.NoError(t, err)
	return rows
}

// requireResults compares two sets of results, result by result.
func requireResults(t testing.TB, want, got results) {
	t.Helper()
	require.Equal(t, want.Views, got.Views, "views_per_video")
	require.Equal(t, want.Top, got.Top, "top_videos")
	require.Equal(t, want.Watch, got.Watch, "watch_time")
	require.Equal(t, want.Countries, got.Countries, "views_by_country")
	require.Equal(t, want.Errors, got.Errors, "errors_per_minute")
	require.Equal(t, want.Late, got.Late, "late_events")
}
