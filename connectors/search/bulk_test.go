package search_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

// quiet drops the sink's retry warnings.
var quiet = slog.New(slog.DiscardHandler)

var fastRetry = search.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}

func bulkCfg(f *fakeOpenSearch) search.BulkConfig[event] {
	return search.BulkConfig[event]{URLs: []string{f.URL()}, Index: "events", ID: eventID, Retry: fastRetry, Logger: quiet}
}

func newBulkOp(t *testing.T, cfg search.BulkConfig[event]) sinkOp[event] {
	t.Helper()
	factory, err := search.NewBulkSink("es", cfg)
	require.NoError(t, err)
	return asSinkOp(t, factory)
}

func openBulkOp(t *testing.T, cfg search.BulkConfig[event], sub, par int, r *dataflow.RestoredState) sinkOp[event] {
	t.Helper()
	op := newBulkOp(t, cfg)
	require.NoError(t, op.Open(context.Background(), opCtx("es", sub, par, r)))
	return op
}

// bulkLines splits a bulk body into its action and source lines.
func bulkLines(t *testing.T, body string) (actions []map[string]map[string]any, sources []map[string]any) {
	t.Helper()
	require.True(t, strings.HasSuffix(body, "\n"), "a bulk body ends with a newline")
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	require.Equal(t, 0, len(lines)%2, "action and source lines alternate")
	for i := 0; i < len(lines); i += 2 {
		var a map[string]map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &a), lines[i])
		var s map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[i+1]), &s), lines[i+1])
		actions, sources = append(actions, a), append(sources, s)
	}
	return actions, sources
}

func TestBulkNothingSentBeforeCommitThenDocumentsWithExternalVersions(t *testing.T) {
	f := newFakeOpenSearch(t)
	op := openBulkOp(t, bulkCfg(f), 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()

	process(t, op, events(0, 10))
	snapshot(t, op, 1)
	requests, _ := f.stats()
	require.Zero(t, requests, "nothing is sent before the checkpoint completes")
	require.Empty(t, f.ids("events"))

	process(t, op, events(10, 12))
	complete(t, op, 1)
	require.Equal(t, idRange(0, 10), f.ids("events"))
	requests, _ = f.stats()
	require.Equal(t, 1, requests, "one bulk request for a small epoch")
	require.Equal(t, []string{"application/x-ndjson"}, f.contentTypes)

	actions, sources := bulkLines(t, f.lastBody())
	require.Len(t, actions, 10)
	version := actions[0]["index"]["version"].(float64)
	require.InDelta(t, float64(time.Now().UnixMicro()), version, float64(time.Minute.Microseconds()), "the epoch's version is its prepare time in µs")
	for i, a := range actions {
		require.Equal(t, map[string]any{"_index": "events", "_id": strconv.Itoa(i), "version": version, "version_type": "external"}, a["index"])
		require.Equal(t, map[string]any{"id": float64(i), "kind": kinds[i%4], "score": float64(i) / 4}, sources[i])
	}
	d, ok := f.doc("events", "3")
	require.True(t, ok)
	require.Equal(t, int64(version), d.Version)

	// The next epoch has a higher version and overwrites.
	process(t, op, []event{{ID: 3, Kind: "changed"}})
	snapshot(t, op, 2)
	complete(t, op, 2)
	d, _ = f.doc("events", "3")
	require.Equal(t, "changed", d.Source["kind"])
	require.Greater(t, d.Version, int64(version))
	require.Equal(t, idRange(0, 12), f.ids("events"))
}

// TestBulkReplayedCommitIsVersionConflicts: a checkpoint completes, its
// epoch is committed, and the job crashes before anything else; the restore
// commits the same epoch again: every document is a 409, which is success,
// and nothing changes.
func TestBulkReplayedCommitIsVersionConflicts(t *testing.T) {
	f := newFakeOpenSearch(t)
	cfg := bulkCfg(f)
	op := openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 20))
	state1 := snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	before, _ := f.doc("events", "7")

	for round := 1; round <= 2; round++ {
		re := openBulkOp(t, cfg, 0, 1, restored(1, state1))
		_, conflicts := f.stats()
		require.Equal(t, 20*round, conflicts, "each document answered 409 version_conflict_engine_exception")
		after, _ := f.doc("events", "7")
		require.Equal(t, before, after)
		require.Equal(t, idRange(0, 20), f.ids("events"))
		require.NoError(t, re.Close())
	}
}

// TestBulkOlderEpochNeverOverwritesNewer: restoring from an older savepoint
// commits an old epoch again after newer ones were written: the external
// versions keep the newer documents.
func TestBulkOlderEpochNeverOverwritesNewer(t *testing.T) {
	f := newFakeOpenSearch(t)
	cfg := bulkCfg(f)
	op := openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, []event{{ID: 1, Kind: "old"}})
	state1 := snapshot(t, op, 1) // notice lost: epoch 1 is only in the checkpoint
	process(t, op, []event{{ID: 1, Kind: "new"}})
	snapshot(t, op, 2)
	complete(t, op, 2) // commits epochs 1 and 2, in order
	require.NoError(t, op.Close())
	d, _ := f.doc("events", "1")
	require.Equal(t, "new", d.Source["kind"])

	re := openBulkOp(t, cfg, 0, 1, restored(1, state1))
	require.NoError(t, re.Close())
	d, _ = f.doc("events", "1")
	require.Equal(t, "new", d.Source["kind"], "the replayed older epoch lost to the newer version")
}

func TestBulkRetriesOnlyFailedItems(t *testing.T) {
	f := newFakeOpenSearch(t)
	f.set(func(f *fakeOpenSearch) {
		// Odd ids are refused twice with 429, 5 once with 503.
		f.itemFault = func(_, id string, attempt int) (int, string, string) {
			n, _ := strconv.Atoi(id)
			switch {
			case n%2 == 1 && attempt <= 2:
				return 429, "rejected_execution_exception", "rejected execution of coordinating operation"
			case n == 4 && attempt == 1:
				return 503, "unavailable_shards_exception", "primary shard is not active"
			}
			return 0, "", ""
		}
	})
	op := openBulkOp(t, bulkCfg(f), 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()
	process(t, op, events(0, 10))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, idRange(0, 10), f.ids("events"))
	require.Len(t, f.bodies, 3)
	idsOf := func(body string) []string {
		actions, _ := bulkLines(t, body)
		var ids []string
		for _, a := range actions {
			ids = append(ids, a["index"]["_id"].(string))
		}
		return ids
	}
	require.Equal(t, idRange(0, 10), sorted(idsOf(f.bodies[0])))
	require.Equal(t, []string{"1", "3", "4", "5", "7", "9"}, sorted(idsOf(f.bodies[1])), "only the failed items are sent again")
	require.Equal(t, []string{"1", "3", "5", "7", "9"}, sorted(idsOf(f.bodies[2])))
	for id, n := range f.received {
		want := 1
		switch {
		case id == "4":
			want = 2
		case must(strconv.Atoi(id))%2 == 1:
			want = 3
		}
		require.Equal(t, want, n, "_id %s", id)
	}
}

func TestBulkWholeRequestRetriedOn429And5xx(t *testing.T) {
	f := newFakeOpenSearch(t)
	f.set(func(f *fakeOpenSearch) {
		f.requestFault = func(n int) (int, string) {
			switch n {
			case 1:
				return 429, `{"error":{"type":"rejected_execution_exception","reason":"too many requests"},"status":429}`
			case 2:
				return 502, `<html>Bad Gateway</html>`
			}
			return 0, ""
		}
	})
	op := openBulkOp(t, bulkCfg(f), 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()
	process(t, op, events(0, 5))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, idRange(0, 5), f.ids("events"))
	requests, _ := f.stats()
	require.Equal(t, 3, requests)
}

func TestBulkRetriesRunOut(t *testing.T) {
	f := newFakeOpenSearch(t)
	f.set(func(f *fakeOpenSearch) {
		f.itemFault = func(_, id string, _ int) (int, string, string) {
			if id == "2" {
				return 429, "rejected_execution_exception", "rejected execution of primary operation"
			}
			return 0, "", ""
		}
	})
	op := openBulkOp(t, bulkCfg(f), 0, 1, nil)
	defer func() { require.NoError(t, op.Close()) }()
	process(t, op, events(0, 5))
	snapshot(t, op, 1)
	err := op.NotifyCheckpointComplete(context.Background(), 1)
	require.ErrorIs(t, err, search.ErrUnavailable)
	require.ErrorContains(t, err, `bulk sink "es", index "events": 1 of 5 documents still failing after 5 attempts`)
	require.ErrorContains(t, err, `_id "2": 429 rejected_execution_exception`)
	require.Len(t, f.ids("events"), 4)
}

func TestBulkMappingErrorIsPermanentAndNamed(t *testing.T) {
	type reading struct {
		ID    string `json:"id"`
		Count any    `json:"count"`
	}
	f := newFakeOpenSearch(t)
	f.set(func(f *fakeOpenSearch) { f.longFields["count"] = true })
	cfg := search.BulkConfig[reading]{URLs: []string{f.URL()}, Index: "readings", ID: func(r reading) string { return r.ID }, Retry: fastRetry, Logger: quiet}
	rs := []reading{{"a", 1}, {"b", "twelve"}, {"c", 3}}

	factory, err := search.NewBulkSink("es", cfg)
	require.NoError(t, err)
	op := asSinkOp(t, factory)
	require.NoError(t, op.Open(context.Background(), opCtx("es", 0, 1, nil)))
	process(t, op, rs)
	snapshot(t, op, 1)
	err = op.NotifyCheckpointComplete(context.Background(), 1)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `bulk sink "es", index "readings", _id "b": rejected with 400 mapper_parsing_exception: failed to parse field [count] of type [long]`)
	require.ErrorContains(t, err, `caused by illegal_argument_exception`)
	requests, _ := f.stats()
	require.Equal(t, 1, requests, "a mapping error is not retried")
	require.NoError(t, op.Close())

	// With OnRejected the document is handed over and the rest committed.
	f2 := newFakeOpenSearch(t)
	f2.set(func(f *fakeOpenSearch) { f.longFields["count"] = true })
	var rejected []search.Rejection
	cfg.URLs = []string{f2.URL()}
	cfg.OnRejected = func(_ context.Context, r search.Rejection) error {
		rejected = append(rejected, r)
		return nil
	}
	factory, err = search.NewBulkSink("es", cfg)
	require.NoError(t, err)
	op = asSinkOp(t, factory)
	require.NoError(t, op.Open(context.Background(), opCtx("es", 0, 1, nil)))
	process(t, op, rs)
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Equal(t, []string{"a", "c"}, f2.ids("readings"))
	require.Len(t, rejected, 1)
	r := rejected[0]
	require.Equal(t, "readings", r.Index)
	require.Equal(t, "b", r.ID)
	require.Equal(t, 400, r.Status)
	require.Equal(t, "mapper_parsing_exception", r.Type)
	require.Contains(t, r.Reason, "failed to parse field [count]")
	require.JSONEq(t, `{"id":"b","count":"twelve"}`, string(r.Source))
}

func TestBulkServerDown(t *testing.T) {
	// A port nothing listens on: a server that was started and stopped.
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	cfg := search.BulkConfig[event]{URLs: []string{url}, Index: "events", ID: eventID, Retry: fastRetry, Logger: quiet}
	op := newBulkOp(t, cfg)
	err := op.Open(context.Background(), opCtx("es", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrUnavailable)
	require.ErrorContains(t, err, `bulk sink "es", index "events": no node of [`+url+`] answered after 5 attempts`)
	var opErr *net.OpError
	require.True(t, errors.As(err, &opErr), "the cause is the connection error: %v", err)
	require.NoError(t, op.Close())

	// A server that goes down after the start fails the commit the same way.
	f := newFakeOpenSearch(t)
	op = openBulkOp(t, bulkCfg(f), 0, 1, nil)
	process(t, op, events(0, 3))
	snapshot(t, op, 1)
	f.srv.Close()
	err = op.NotifyCheckpointComplete(context.Background(), 1)
	require.ErrorIs(t, err, search.ErrUnavailable)
	require.ErrorContains(t, err, `bulk sink "es", index "events": 3 of 3 documents still failing after 5 attempts`)
	require.ErrorContains(t, err, "connection refused")
	require.NoError(t, op.Close())
}

func TestBulkFailsOverToTheNextNode(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	f := newFakeOpenSearch(t)
	cfg := bulkCfg(f)
	cfg.URLs = []string{downURL, f.URL()}
	op := openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 3))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Equal(t, idRange(0, 3), f.ids("events"))
}

func TestBulkAuthentication(t *testing.T) {
	f := newFakeOpenSearch(t)
	f.set(func(f *fakeOpenSearch) { f.user, f.password = "writer", "secret" })
	cfg := bulkCfg(f)
	cfg.Username, cfg.Password = "writer", "wrong"
	op := newBulkOp(t, cfg)
	err := op.Open(context.Background(), opCtx("es", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrRequest)
	require.ErrorContains(t, err, `bulk sink "es", index "events": GET `+f.URL()+`/: 401 unauthorized: security_exception: Unauthorized`)
	require.NoError(t, op.Close())

	cfg.Password = "secret"
	op = openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 2))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Equal(t, idRange(0, 2), f.ids("events"))

	// An API key is sent as "Authorization: ApiKey ...", other headers as given.
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	keyed := search.BulkConfig[event]{URLs: []string{srv.URL}, Index: "events", APIKey: "a2V5OnNlY3JldA==", Header: http.Header{"X-Tenant": {"blue"}}}
	op = newBulkOp(t, keyed)
	require.NoError(t, op.Open(context.Background(), opCtx("es", 0, 1, nil)))
	require.NoError(t, op.Close())
	require.Equal(t, "ApiKey a2V5OnNlY3JldA==", got.Get("Authorization"))
	require.Equal(t, "blue", got.Get("X-Tenant"))
}

func TestBulkSplitsRequestsByMaxBatchBytesAnd413(t *testing.T) {
	f := newFakeOpenSearch(t)
	cfg := bulkCfg(f)
	cfg.MaxBatchBytes = 2000
	op := openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 100))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.Equal(t, idRange(0, 100), f.ids("events"))
	for _, b := range f.bodies {
		require.LessOrEqual(t, len(b), 2000)
	}
	requests, _ := f.stats()
	require.Greater(t, requests, 5)

	// The node accepts less than MaxBatchBytes: 413 splits the request.
	f.set(func(f *fakeOpenSearch) { f.maxContentLength = 700; f.bulkRequests = 0; f.bodies = nil })
	process(t, op, events(100, 120))
	snapshot(t, op, 2)
	complete(t, op, 2)
	require.Equal(t, idRange(0, 120), f.ids("events"))
	require.NoError(t, op.Close())

	// A single document larger than the node accepts is rejected.
	f.set(func(f *fakeOpenSearch) { f.maxContentLength = 50 })
	op = openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(200, 201))
	snapshot(t, op, 1)
	err := op.NotifyCheckpointComplete(context.Background(), 1)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `index "events", _id "200": rejected with 413 request_entity_too_large`)
	require.NoError(t, op.Close())
}

func TestBulkRecordVersionsAndIndexFunc(t *testing.T) {
	type count struct {
		Video string `json:"video"`
		Day   string `json:"day"`
		N     int64  `json:"n"`
	}
	f := newFakeOpenSearch(t)
	cfg := search.BulkConfig[count]{
		URLs:      []string{f.URL()},
		IndexFunc: func(c count) string { return "views-" + c.Day },
		ID:        func(c count) string { return c.Video },
		Version:   func(c count) int64 { return c.N }, // counts only grow
		Retry:     fastRetry,
		Logger:    quiet,
	}
	factory, err := search.NewBulkSink("counts", cfg)
	require.NoError(t, err)
	op := asSinkOp(t, factory)
	require.NoError(t, op.Open(context.Background(), opCtx("counts", 0, 1, nil)))
	process(t, op, []count{{"v1", "2026-01-01", 3}, {"v1", "2026-01-01", 5}, {"v1", "2026-01-01", 4}, {"v2", "2026-01-02", 1}})
	snapshot(t, op, 1)
	complete(t, op, 1)
	d, _ := f.doc("views-2026-01-01", "v1")
	require.Equal(t, int64(5), d.Version, "within an epoch the highest version wins")
	require.Equal(t, 5.0, d.Source["n"])
	require.Equal(t, []string{"v2"}, f.ids("views-2026-01-02"))

	// A later epoch with a lower record version does not overwrite.
	process(t, op, []count{{"v1", "2026-01-01", 2}})
	snapshot(t, op, 2)
	complete(t, op, 2)
	d, _ = f.doc("views-2026-01-01", "v1")
	require.Equal(t, 5.0, d.Source["n"])

	// An index name OpenSearch would refuse fails at once.
	err = op.Process(count{"v3", "2026/01/03", 1}, 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `bulk sink "counts", index "views-2026/01/03": IndexFunc: index name "views-2026/01/03" contains "/"`)
	err = op.Process(count{"v3", "2026-01-03", 0}, 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `_id "v3": Version returned 0`)
	require.NoError(t, op.Close())
}

func TestBulkBadRecordsAndConfig(t *testing.T) {
	f := newFakeOpenSearch(t)
	cfg := bulkCfg(f)
	cfg.MaxEpochBytes = 1000
	op := openBulkOp(t, cfg, 0, 1, nil)
	err := op.Process(event{ID: 1, Score: -1 / zero()}, 0)
	require.ErrorIs(t, err, search.ErrDocument)
	require.ErrorContains(t, err, `bulk sink "es", index "events": encode record of type search_test.event as JSON`)
	for i := int64(0); err == nil || errors.Is(err, search.ErrDocument); i++ {
		err = op.Process(eventOf(i), 0)
	}
	require.ErrorIs(t, err, search.ErrEpochTooLarge)
	require.ErrorContains(t, err, `bulk sink "es", index "events"`)
	require.NoError(t, op.Close())

	for _, tc := range []struct {
		cfg  search.BulkConfig[event]
		want string
	}{
		{search.BulkConfig[event]{Index: "x"}, "no URLs"},
		{search.BulkConfig[event]{URLs: []string{"localhost:9200"}, Index: "x"}, `URL "localhost:9200": want http://host:port`},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}}, "set Index or IndexFunc"},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}, Index: "Events"}, `index name "Events" is not lowercase`},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}, Index: "_x"}, `index name "_x" starts with "_"`},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}, Index: "x", Username: "u", APIKey: "k"}, "set Username and Password or APIKey, not both"},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}, Index: "x", Refresh: "yes"}, `Refresh "yes"`},
		{search.BulkConfig[event]{URLs: []string{"http://h:9200"}, Index: "x", Retry: search.RetryPolicy{MaxAttempts: -1}}, "retry policy {MaxAttempts:-1 InitialBackoff:100ms MaxBackoff:5s}: attempts must be at least 1"},
	} {
		require.ErrorIs(t, tc.cfg.Validate(), search.ErrConfig)
		require.ErrorContains(t, tc.cfg.Validate(), tc.want)
		_, err := search.NewBulkSink("es", tc.cfg)
		require.ErrorContains(t, err, `bulk sink "es": `+tc.want)
	}
}

func zero() float64 { return 0 }

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestBulkTLSAndTimeout(t *testing.T) {
	// HTTPS with the server's certificate as the root.
	f := newFakeOpenSearch(t)
	tlsSrv := httptest.NewUnstartedServer(f.srv.Config.Handler)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())
	cfg := bulkCfg(f)
	cfg.URLs = []string{tlsSrv.URL}
	cfg.TLS = &tls.Config{RootCAs: pool}
	op := openBulkOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 3))
	snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.Equal(t, idRange(0, 3), f.ids("events"))

	// Without the root the certificate is refused at once, not retried.
	cfg.TLS = nil
	op = newBulkOp(t, cfg)
	err := op.Open(context.Background(), opCtx("es", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrRequest)
	require.ErrorContains(t, err, `bulk sink "es", index "events": Get "`+tlsSrv.URL+`/": tls: failed to verify certificate`)
	require.ErrorContains(t, err, "set BulkConfig.TLS")
	require.NoError(t, op.Close())

	// A node that does not answer within Timeout is given up on.
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	slow := search.BulkConfig[event]{URLs: []string{hung.URL}, Index: "events", Timeout: 20 * time.Millisecond,
		Retry: search.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}, Logger: quiet}
	op = newBulkOp(t, slow)
	err = op.Open(context.Background(), opCtx("es", 0, 1, nil))
	require.ErrorIs(t, err, search.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, `bulk sink "es", index "events": no node of [`+hung.URL+`] answered after 2 attempts`)
	require.NoError(t, op.Close())
}
