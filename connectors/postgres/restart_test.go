package postgres

import (
	"context"
	"os"
	oexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// pgCluster is the local cluster the restart test restarts ("version name").
func pgCluster() []string {
	if c := os.Getenv("SLUICE_TEST_PG_CLUSTER"); c != "" {
		return strings.Fields(c)
	}
	return []string{"15", "main"}
}

func pgCtl(action string, extra ...string) *oexec.Cmd {
	args := append([]string{"--skip-systemctl-redirect"}, pgCluster()...)
	args = append(args, action)
	return oexec.Command("pg_ctlcluster", append(args, extra...)...)
}

// TestExactlyOnceCommitSurvivesServerRestart restarts the Postgres server in
// the middle of a commit transaction (rows copied, COMMIT not sent): the
// commit is retried until the server is back, and every row is there once.
func TestExactlyOnceCommitSurvivesServerRestart(t *testing.T) {
	dsn, conn := testDB(t)
	if _, err := oexec.LookPath("pg_ctlcluster"); err != nil {
		t.Skip("needs pg_ctlcluster to restart the local server:", err)
	}
	t.Cleanup(func() {
		// Whatever happened, leave the server running.
		if pgCtl("status").Run() != nil {
			out, err := pgCtl("start").CombinedOutput()
			if err != nil {
				t.Errorf("start Postgres again: %v: %s", err, out)
			}
		}
	})
	exec(t, conn, eventsTable)
	op := openOp(t, "pg", Config[event]{ConnString: dsn, Table: "events", Mode: ExactlyOnce}, subtask(0, 1, nil))
	sess := sessionOf(op)
	restarted := false
	var took time.Duration
	sess.hook = func(ctx context.Context, step string, c *pgx.Conn) error {
		if step != "before-commit" || restarted {
			return nil
		}
		restarted = true
		start := time.Now()
		out, err := pgCtl("restart", "-m", "fast").CombinedOutput()
		require.NoError(t, err, "restart: %s", out)
		took = time.Since(start)
		return nil
	}
	process(t, op, eventsOf(0, 2000)...)
	snapshot(t, op, 1)
	notify(t, op, 1)
	require.True(t, restarted)
	require.GreaterOrEqual(t, sess.retries, 1)
	t.Logf("server restart took %v; the commit was retried %d time(s)", took, sess.retries)

	// The test's own connection died with the server.
	check, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer check.Close(context.Background())
	require.Equal(t, int64(2000), queryInt(t, check, "SELECT count(*) FROM events"))
	process(t, op, eventsOf(2000, 10)...)
	snapshot(t, op, 2)
	notify(t, op, 2)
	require.Equal(t, int64(2010), queryInt(t, check, "SELECT count(DISTINCT id) FROM events"))
}
