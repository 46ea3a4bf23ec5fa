package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/dataflow"
)

// externalURL is the NATS server source tests also run against when it is
// reachable (nats-server 2.9 on CI). With CI set it must be reachable.
const externalURL = "nats://127.0.0.1:4222"

var (
	externalOnce sync.Once
	externalUp   bool
)

func externalReachable() bool {
	externalOnce.Do(func() {
		c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
		if err == nil {
			externalUp = true
			_ = c.Close()
		}
	})
	return externalUp
}

// fixture is one test's server, connection and stream. Subjects of the
// stream are "<prefix>.>", unique per test, so that tests can share the
// external server.
type fixture struct {
	t      *testing.T
	name   string // "embedded" or "external"
	url    string
	srv    *embedded.Server // nil on the external server
	nc     *nats.Conn
	js     njs.JetStream
	stream string
	prefix string
}

// newEmbedded starts an embedded server for t.
func newEmbedded(t testing.TB, cfg ...embedded.Config) *embedded.Server {
	t.Helper()
	c := embedded.Config{}
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.Dir = t.TempDir()
	if c.Logger == nil {
		l := &testServerLog{t: t}
		c.Logger = l
		t.Cleanup(l.stop) // after Shutdown: cleanups run last first
	}
	srv, err := embedded.Start(c)
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return srv
}

// testServerLog writes an embedded server's warnings and errors to the
// test's log, so that a failing test shows the server's side (a stream
// create failure gives its cause only there), until the test ends.
type testServerLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testServerLog) logf(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("nats-server %s: %s", level, fmt.Sprintf(format, v...))
	}
}

func (l *testServerLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

func (l *testServerLog) Noticef(string, ...any)         {}
func (l *testServerLog) Debugf(string, ...any)          {}
func (l *testServerLog) Tracef(string, ...any)          {}
func (l *testServerLog) Warnf(format string, v ...any)  { l.logf("WARN", format, v...) }
func (l *testServerLog) Errorf(format string, v ...any) { l.logf("ERROR", format, v...) }
func (l *testServerLog) Fatalf(format string, v ...any) { l.logf("FATAL", format, v...) }

// eachServer runs fn against an embedded server and, when reachable, the
// external server at 127.0.0.1:4222. With CI set, an unreachable external
// server fails the test.
func eachServer(t *testing.T, fn func(t *testing.T, f *fixture)) {
	eachURL(t, func(t *testing.T, url string, srv *embedded.Server) {
		name := "embedded"
		if srv == nil {
			name = "external"
		}
		fn(t, newFixture(t, name, url, srv))
	})
}

// eachURL runs fn as subtest "embedded" with an embedded server's URL and
// the server, and as subtest "external" with the external server's URL and
// a nil server, as eachServer does.
func eachURL(t *testing.T, fn func(t *testing.T, url string, srv *embedded.Server)) {
	t.Run("embedded", func(t *testing.T) {
		srv := newEmbedded(t)
		fn(t, srv.URL(), srv)
	})
	t.Run("external", func(t *testing.T) {
		if !externalReachable() {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI is set but no NATS server listens at %s", externalURL)
			}
			t.Skipf("no NATS server at %s (CI not set)", externalURL)
		}
		fn(t, externalURL, nil)
	})
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

func newFixture(t *testing.T, name, url string, srv *embedded.Server) *fixture {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	require.NoError(t, err)
	id := nonName.ReplaceAllString(t.Name(), "_")
	if len(id) > 40 {
		id = id[len(id)-40:]
	}
	inbox := nats.NewInbox() // ends in a random NUID
	id = strings.Trim(id, "_") + "_" + inbox[len(inbox)-6:]
	f := &fixture{t: t, name: name, url: url, srv: srv, nc: nc, js: js, stream: "T_" + id, prefix: "t_" + strings.ToLower(id)}
	f.createStream(f.stream, f.prefix+".>")
	return f
}

// createStream makes a file stream and deletes it when the test ends.
func (f *fixture) createStream(name string, subjects ...string) njs.Stream {
	f.t.Helper()
	s, err := f.js.CreateStream(context.Background(), njs.StreamConfig{Name: name, Subjects: subjects, Storage: njs.FileStorage})
	require.NoError(f.t, err)
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.js.DeleteStream(ctx, name); err != nil && !strings.Contains(err.Error(), "not found") {
			f.t.Errorf("delete stream %s: %v", name, err)
		}
	})
	return s
}

func (f *fixture) subj(s string) string { return f.prefix + "." + s }

// partitions returns the filters <prefix>.views.0 ... views.n-1.
func (f *fixture) partitions(n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = f.subj(fmt.Sprintf("views.%d", i))
	}
	return ps
}

func (f *fixture) conn() jetstream.ConnConfig {
	return jetstream.ConnConfig{URL: f.url, ReconnectWait: 50 * time.Millisecond}
}

// view is the test record.
type view struct {
	N     int       `json:"n"`
	Video string    `json:"video"`
	At    time.Time `json:"at"`
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mkView(n int) view {
	return view{N: n, Video: fmt.Sprintf("v%d", n%7), At: epoch.Add(time.Duration(n) * time.Second)}
}

// publishViews publishes views from..to-1 round robin over parts subjects
// views.0... (parts 0 means subject "views") and waits for every ack.
func (f *fixture) publishViews(from, to, parts int) {
	f.t.Helper()
	var futures []njs.PubAckFuture
	for n := from; n < to; n++ {
		b, err := json.Marshal(mkView(n))
		require.NoError(f.t, err)
		subj := f.subj("views")
		if parts > 0 {
			subj = f.subj(fmt.Sprintf("views.%d", n%parts))
		}
		fu, err := f.js.PublishAsync(subj, b)
		require.NoError(f.t, err)
		futures = append(futures, fu)
	}
	f.waitAcks(futures)
}

// publishRaw publishes payloads to subject and waits for the acks.
func (f *fixture) publishRaw(subject string, payloads ...string) {
	f.t.Helper()
	var futures []njs.PubAckFuture
	for _, p := range payloads {
		fu, err := f.js.PublishAsync(subject, []byte(p))
		require.NoError(f.t, err)
		futures = append(futures, fu)
	}
	f.waitAcks(futures)
}

func (f *fixture) waitAcks(futures []njs.PubAckFuture) {
	f.t.Helper()
	for _, fu := range futures {
		select {
		case <-fu.Ok():
		case err := <-fu.Err():
			f.t.Fatalf("publish to %s: %v", fu.Msg().Subject, err)
		case <-time.After(10 * time.Second):
			f.t.Fatalf("publish to %s: no ack", fu.Msg().Subject)
		}
	}
}

func (f *fixture) info() *njs.StreamInfo {
	f.t.Helper()
	s, err := f.js.Stream(context.Background(), f.stream)
	require.NoError(f.t, err)
	return s.CachedInfo()
}

// rec is what the test sources emit: the view and where it came from.
type rec struct {
	view
	Subject string
	Seq     uint64
	Part    string
}

// recDecoder decodes a view and notes its message's subject and sequence.
func recDecoder(data []byte, m *jetstream.Msg) (rec, error) {
	var v view
	if err := json.Unmarshal(data, &v); err != nil {
		return rec{}, err
	}
	return rec{view: v, Subject: m.Subject, Seq: m.Sequence, Part: m.Partition}, nil
}

// sourceConfig is a bounded source of recs on f's stream.
func (f *fixture) sourceConfig(parts int) jetstream.SourceConfig[rec] {
	cfg := jetstream.SourceConfig[rec]{Conn: f.conn(), Stream: f.stream, Bounded: true, Decode: recDecoder}
	if parts > 0 {
		cfg.Partitions = f.partitions(parts)
	}
	return cfg
}

// seqs returns the sorted sequences of rs.
func seqs(rs []rec) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	slices.Sort(out)
	return out
}

func upTo(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// collector is an Output for driving a source by hand.
type collector[T any] struct {
	vals []T
	ts   []dataflow.Timestamp
	wms  []dataflow.Timestamp
	idle int
}

func (c *collector[T]) Collect(v T, ts dataflow.Timestamp) {
	c.vals = append(c.vals, v)
	c.ts = append(c.ts, ts)
}
func (c *collector[T]) EmitWatermark(wm dataflow.Timestamp) { c.wms = append(c.wms, wm) }
func (c *collector[T]) MarkIdle()                           { c.idle++ }

// opened is a source subtask driven by hand.
type opened[T any] struct {
	src dataflow.Source[T]
	out collector[T]
	eoi bool
}

// openSource opens subtask of parallelism with restored state (nil for a
// fresh start).
func openSource[T any](t *testing.T, cfg jetstream.SourceConfig[T], subtask, parallelism int, restored *dataflow.RestoredState) *opened[T] {
	t.Helper()
	src, err := jetstream.NewSource(cfg)
	require.NoError(t, err)
	oc := &dataflow.OperatorContext{Job: "test", Operator: "src", Subtask: subtask, Parallelism: parallelism, MaxParallelism: 128, Restored: restored}
	require.NoError(t, src.Open(context.Background(), oc))
	o := &opened[T]{src: src}
	t.Cleanup(func() { _ = src.Close() })
	return o
}

// pollUntil polls until cond holds, end of input, or 20 s pass.
func (o *opened[T]) pollUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() && !o.eoi {
		require.True(t, time.Now().Before(deadline), "source did not get there within 20 s (%d records)", len(o.out.vals))
		st, err := o.src.Poll(context.Background(), &o.out)
		require.NoError(t, err)
		o.eoi = st == dataflow.EndOfInput
	}
}

// pollErr polls until Poll fails, and returns the error.
func (o *opened[T]) pollErr(t *testing.T) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := o.src.Poll(context.Background(), &o.out)
		if err != nil {
			return err
		}
		require.NotEqual(t, dataflow.EndOfInput, st, "source ended instead of failing")
	}
	t.Fatal("source did not fail within 30 s")
	return nil
}

func snapshot[T any](t *testing.T, o *opened[T]) []byte {
	t.Helper()
	b, err := o.src.(dataflow.Snapshotter).SnapshotState(context.Background(), 1)
	require.NoError(t, err)
	return b
}
