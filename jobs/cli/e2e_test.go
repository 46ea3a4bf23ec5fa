package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/jobs/cli"
	"github.com/sluicedata/sluice/jobs/clickstream"
	"github.com/sluicedata/sluice/jobs/runner"
)

// publish starts an embedded NATS server and publishes n clickstream events.
func publish(t *testing.T, n int64) *embedded.Server {
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := clickstream.DefaultGeneratorConfig()
	g.Count, g.Seed, g.Span = n, 7, 10*time.Minute
	g.LateFraction, g.MalformedFraction = 0.02, 0.005
	sc := g.StreamConfig()
	sc.DeadLetterSubject = "clicks-dlq"
	require.NoError(t, clickstream.EnsureStream(ctx, nc, sc))
	published, err := clickstream.Generate(ctx, nc, g)
	require.NoError(t, err)
	require.Equal(t, n, published)
	return srv
}

// results reads every final result file under dir: result name -> sorted rows.
func results(t *testing.T, dir string) map[string][]string {
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		require.False(t, strings.HasPrefix(d.Name(), "."), "no in-progress or pending file stays: %s", path)
		rel, _ := filepath.Rel(dir, path)
		name := strings.Split(filepath.ToSlash(rel), "/")[0]
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out[name] = append(out[name], l)
			}
		}
		return nil
	})
	require.NoError(t, err)
	for _, rows := range out {
		slices.Sort(rows)
	}
	return out
}

// TestClickstreamEndToEnd drives the real job through the CLI against an
// embedded NATS server: deploy on a runner, stop it with a savepoint,
// restore from that at another parallelism and read to the end; then a
// replay from offset zero in the foreground must give the same results, row
// for row.
func TestClickstreamEndToEnd(t *testing.T) {
	const events = 30000
	srv := publish(t, events)
	dir := t.TempDir()
	url := serveRunner(t, "--checkpoint-dir", filepath.Join(dir, "checkpoints"), "--nats", srv.URL())
	live := filepath.Join(dir, "live")

	code, out, errOut := run("deploy", "clickstream", "--runner", url, "--name", "live", "--output", live,
		"--checkpoint-interval", "50ms", "--parallelism", "2")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "RUNNING")
	require.Eventually(t, func() bool {
		_, out, _ := run("status", "live", "--runner", url)
		return !strings.Contains(out, "records read:     0\n") && !strings.Contains(out, "last checkpoint:  -")
	}, 30*time.Second, 10*time.Millisecond)

	// The REST API and the metrics answer while it runs.
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	body := new(strings.Builder)
	_, err = io.Copy(body, resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, body.String(), `sluice_operator_records_out_total{deployment="live"`)
	require.Contains(t, body.String(), `sluice_checkpoints_completed_total{deployment="live",job="clickstream"}`)

	sp := filepath.Join(dir, "savepoint")
	code, out, errOut = run("stop", "live", "--runner", url, "--dir", sp)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "live stopped; savepoint")
	var liveSt runner.Status
	_, out, _ = run("status", "live", "--runner", url, "--json")
	require.NoError(t, json.Unmarshal([]byte(out), &liveSt), out)

	// Restored from the savepoint at another parallelism, it goes on into
	// the same output directory, bounded: it reads to the end of the stream
	// as it is now, fires every window and finishes.
	code, _, errOut = run("deploy", "clickstream", "--runner", url, "--name", "resumed", "--output", live,
		"--from-savepoint", sp, "--parallelism", "3", "--checkpoint-interval", "50ms", "--bounded")
	require.Equal(t, cli.ExitOK, code, errOut)
	var st runner.Status
	require.Eventually(t, func() bool {
		_, out, _ := run("status", "resumed", "--runner", url, "--json")
		require.NoError(t, json.Unmarshal([]byte(out), &st), out)
		require.NotEqual(t, runner.StateFailed, st.State, st.Error)
		return st.State == runner.StateFinished
	}, 60*time.Second, 20*time.Millisecond)
	// Between them the two runs read the whole stream: a fast machine may
	// have read all of it before the stop, and the restored run then only
	// fires the windows it restored.
	require.GreaterOrEqual(t, liveSt.RecordsIn+st.RecordsIn, int64(events*99/100), "live read %d, resumed %d", liveSt.RecordsIn, st.RecordsIn)

	// A replay from offset zero, bounded, in the foreground.
	replayed := filepath.Join(dir, "replay")
	code, _, errOut = run("replay", "clickstream", "--from-offset", "0", "--nats", srv.URL(), "--output", replayed)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, errOut, "replay: ")
	require.Contains(t, errOut, "of 30000 sequences (100%)")

	want, got := results(t, replayed), results(t, live)
	require.NotEmpty(t, want[clickstream.ResultViews])
	require.Equal(t, len(clickstream.Results), len(want), "every result has rows")
	for _, name := range clickstream.Results {
		require.Equal(t, want[name], got[name], "result %s: live (stopped, then restored) vs replay from zero", name)
	}
}

// The README's quickstart: one command starts an embedded NATS server, the
// generator and the job, and leaves result files.
func TestDemoWritesResultFiles(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	start := time.Now()
	code, _, errOut := run("run", "clickstream", "--demo", "--output", out, "--set", "demo-events=20000", "--set", "demo-rate=0")
	require.Equal(t, cli.ExitOK, code, errOut)
	took := time.Since(start)
	require.Less(t, took, time.Minute)
	t.Logf("demo with 20000 events took %v", took)
	require.Contains(t, errOut, `job "clickstream" finished`)
	// Each demo run writes to a directory of its own under --output.
	runs, err := filepath.Glob(filepath.Join(out, "run-*"))
	require.NoError(t, err)
	require.Len(t, runs, 1)
	rows := results(t, runs[0])
	for _, name := range []string{clickstream.ResultViews, clickstream.ResultTop} {
		require.NotEmpty(t, rows[name], "result %s", name)
	}
}

func TestGenerateThenReplay(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	code, out, errOut := run("generate", "clickstream", "--nats", srv.URL(), "-count", "3000", "-seed", "3")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "published 3000 records")

	dir := filepath.Join(t.TempDir(), "out")
	code, _, errOut = run("replay", "clickstream", "--from-offset", "0", "--nats", srv.URL(), "--output", dir)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, errOut, "3000 of 3000 sequences (100%)")
	require.NotEmpty(t, results(t, dir)[clickstream.ResultViews])

	code, _, errOut = run("generate", "viewcount")
	require.Equal(t, cli.ExitUsage, code)
	require.Contains(t, errOut, `job "viewcount" has no generator`)

	// An unreachable NATS server: one line, exit 1.
	code, _, errOut = run("run", "clickstream", "--nats", "nats://127.0.0.1:1", "--output", filepath.Join(t.TempDir(), "x"))
	require.Equal(t, cli.ExitFailed, code, errOut)
	require.Contains(t, errOut, "nats://127.0.0.1:1")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.True(t, strings.HasPrefix(lines[len(lines)-1], "jobrunner run: "), errOut)
}
