package clickstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/clickstream"
)

// testPostgres connects to database test on 127.0.0.1:5432 as user postgres,
// or else root.
func testPostgres(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var (
		dsn  string
		conn *pgx.Conn
		err  error
	)
	for _, user := range []string{"postgres", "root"} {
		dsn = "host=127.0.0.1 port=5432 user=" + user + " dbname=test sslmode=disable"
		if conn, err = pgx.Connect(ctx, dsn); err == nil {
			break
		}
	}
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Postgres database at %q (%v); set CI to make this fail", dsn, err)
		}
		t.Fatalf("CI is set but there is no Postgres database at %q: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return dsn, conn
}

func queryRows[T any](t *testing.T, conn *pgx.Conn, table string) []T {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT * FROM "+pgx.Identifier{table}.Sanitize())
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[T])
	require.NoError(t, err, table)
	sortRows(out)
	return out
}

// Results go to Postgres, exactly once per checkpoint, in fresh tables; a
// replay in upsert mode leaves the same rows.
func TestPostgres(t *testing.T) {
	dsn, conn := testPostgres(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "cs_" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		for _, r := range append(clickstream.Results, clickstream.MarkerTableSuffix) {
			_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{prefix + r}.Sanitize())
		}
	})

	srv := startServer(t)
	nc := connect(t, srv.URL())
	g := testGenerator(15_000)
	publish(t, nc, g)
	want, _ := reference(readStream(t, nc, g.Stream), time.Minute, clickstream.DefaultOutOfOrder, clickstream.DefaultLateness, clickstream.DefaultTop)
	// timestamptz keeps microseconds.
	for i := range want.Late {
		want.Late[i].Watermark = want.Late[i].Watermark.Truncate(time.Microsecond)
	}

	read := func() results {
		r := results{
			Views:     queryRows[clickstream.VideoViews](t, conn, prefix+clickstream.ResultViews),
			Top:       queryRows[clickstream.TopVideo](t, conn, prefix+clickstream.ResultTop),
			Watch:     queryRows[clickstream.WatchTime](t, conn, prefix+clickstream.ResultWatchTime),
			Countries: queryRows[clickstream.CountryViews](t, conn, prefix+clickstream.ResultCountries),
			Errors:    queryRows[clickstream.PlaybackErrors](t, conn, prefix+clickstream.ResultErrors),
			Late:      queryRows[clickstream.LateEvent](t, conn, prefix+clickstream.ResultLate),
		}
		r.sort()
		return r
	}
	for _, mode := range []string{"exactly-once", "upsert"} {
		job, err := clickstream.Build(jobs.Config{
			Job:      dataflow.Config{Parallelism: 2},
			Params:   map[string]string{"table-prefix": prefix, "postgres-mode": mode},
			NATS:     jetstream.ConnConfig{URL: srv.URL()},
			Bounded:  true,
			Postgres: dsn,
		})
		require.NoError(t, err)
		require.NoError(t, job.Run(context.Background()), mode)
		requireResults(t, want, read())
	}
	var markers int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{prefix + clickstream.MarkerTableSuffix}.Sanitize()).Scan(&markers))
	require.Positive(t, markers, "exactly-once mode committed no epoch under the job's marker table")
}
