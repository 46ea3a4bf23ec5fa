package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/testlock"
)

// The Postgres tests of another package restart the server: take turns.
func TestMain(m *testing.M) { testlock.Main(m, testlock.Postgres) }

// adminConnString reaches the test server's maintenance database.
func adminConnString() string {
	if s := os.Getenv("SLUICE_TEST_POSTGRES"); s != "" {
		return s
	}
	return "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable"
}

// testDB creates a fresh database for t and returns its connection string
// and a connection to it. Without a server the test is skipped, unless CI is
// set: then it fails.
func testDB(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminConnString())
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Postgres server (%v); set CI to make this fail", err)
		}
		t.Fatalf("no Postgres server: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sluice_test_" + hex.EncodeToString(b)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))
	cfg, err := pgx.ParseConfig(adminConnString())
	require.NoError(t, err)
	cfg.Database = name
	connString := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, name)
	conn, err := pgx.Connect(ctx, connString)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
		admin, err := pgx.Connect(ctx, adminConnString())
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return connString, conn
}

func exec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql, args...)
	require.NoError(t, err, sql)
}

func queryInt(t testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, conn.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// subtask describes subtask i of p of job "job".
func subtask(i, p int, restored *dataflow.RestoredState) *dataflow.OperatorContext {
	return &dataflow.OperatorContext{Job: "job", Operator: "sink", Subtask: i, Parallelism: p, MaxParallelism: 128, Restored: restored}
}

// openOp makes and opens one subtask of a sink, closed at cleanup.
func openOp[T any](t testing.TB, name string, cfg Config[T], oc *dataflow.OperatorContext) dataflow.Operator[T] {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	newOp, err := newOperator(name, cfg)
	require.NoError(t, err)
	op := newOp()
	require.NoError(t, op.Open(context.Background(), oc))
	t.Cleanup(func() { _ = op.Close() })
	return op
}

func process[T any](t testing.TB, op dataflow.Operator[T], vs ...T) {
	t.Helper()
	for _, v := range vs {
		require.NoError(t, op.Process(v, dataflow.NoTimestamp))
	}
}

func snapshot[T any](t testing.TB, op dataflow.Operator[T], id int64) []byte {
	t.Helper()
	b, err := op.(dataflow.Snapshotter).SnapshotState(context.Background(), id)
	require.NoError(t, err)
	return b
}

func notify[T any](t testing.TB, op dataflow.Operator[T], id int64) {
	t.Helper()
	require.NoError(t, op.(dataflow.CheckpointListener).NotifyCheckpointComplete(context.Background(), id))
}

func sessionOf[T any](op dataflow.Operator[T]) *session {
	switch o := op.(type) {
	case *exactlyOnceOp[T]:
		return o.c.w.sess
	case *batchOp[T]:
		return o.w.sess
	}
	panic(fmt.Sprintf("unknown operator %T", op))
}

// killBackend terminates the server process of conn from admin and waits
// until it is gone.
func killBackend(t testing.TB, admin *pgx.Conn, conn *pgx.Conn) {
	t.Helper()
	pid := conn.PgConn().PID()
	var ok bool
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok))
	require.True(t, ok, "terminate backend %d", pid)
	require.Eventually(t, func() bool {
		return queryInt(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)) == 0
	}, 10*time.Second, 5*time.Millisecond)
}

func eventsOf(from, n int) []event {
	es := make([]event, n)
	for i := range es {
		id := int64(from + i)
		es[i] = event{ID: id, Name: fmt.Sprintf("e%d", id), Qty: int32(id % 100), At: time.Unix(1_700_000_000+id, 0).UTC()}
	}
	return es
}

// event is appended: no key, so duplicates would show.
type event struct {
	ID   int64
	Name string
	Qty  int32
	At   time.Time
}

// total is a keyed result, upserted by key.
type total struct {
	Key   string `db:"k,key"`
	Count int64
	Sum   float64
}

const eventsTable = `CREATE TABLE events (id bigint PRIMARY KEY, name text NOT NULL, qty integer NOT NULL, at timestamptz NOT NULL)`

// testLogger sends log lines to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
