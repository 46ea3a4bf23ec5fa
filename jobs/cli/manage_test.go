package cli_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listening = regexp.MustCompile(`REST API and /metrics on (http://\S+)`)

// serveRunner starts `jobrunner serve` on a random port and returns its URL.
func serveRunner(t *testing.T, args ...string) string {
	url, _ := serveStoppable(t, args...)
	return url
}

// serveStoppable is serveRunner with a function that stops the runner
// (canceling its jobs) and waits until serve returned.
func serveStoppable(t *testing.T, args ...string) (string, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, jobs.Default, append([]string{"serve", "--http", "127.0.0.1:0"}, args...), &out, &errb)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.Equal(t, cli.ExitOK, <-done, errb.String())
		})
	}
	t.Cleanup(stop)
	var url string
	require.Eventually(t, func() bool {
		m := listening.FindStringSubmatch(errb.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, 10*time.Second, 5*time.Millisecond, "serve did not start: %s", errb.String())
	return url, stop
}

func TestManageAJobThroughARunner(t *testing.T) {
	dir := t.TempDir()
	url := serveRunner(t, "--checkpoint-dir", filepath.Join(dir, "checkpoints"))

	code, out, errOut := run("deploy", "viewcount", "--runner", url, "--name", "views", "--set", "events=100000000",
		"--set", "rate=20000", "--checkpoint-interval", "20ms")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "state:            RUNNING")

	// status shows records read once the job is under way.
	require.Eventually(t, func() bool {
		code, out, _ := run("status", "views", "--runner", url)
		return code == cli.ExitOK && !strings.Contains(out, "records read:     0\n") && strings.Contains(out, "checkpoints:      ") &&
			!strings.Contains(out, "last checkpoint:  -")
	}, 20*time.Second, 10*time.Millisecond)

	code, out, errOut = run("list", "--runner", url)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `(?m)^views\s+viewcount\s+RUNNING`, out)

	code, out, errOut = run("checkpoints", "views", "--runner", url)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `(?m)^\d+\s+checkpoint\s`, out)

	spDir := filepath.Join(dir, "sp")
	code, out, errOut = run("savepoint", "views", "--runner", url, "--dir", spDir)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "in "+spDir)

	stopDir := filepath.Join(dir, "stopped")
	code, out, errOut = run("stop", "views", "--runner", url, "--dir", stopDir)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "views stopped; savepoint")

	code, out, _ = run("status", "views", "--runner", url, "--json")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, `"state": "STOPPED"`)

	// Restore from the savepoint under another name, then cancel it.
	code, _, errOut = run("deploy", "viewcount", "--runner", url, "--name", "views2", "--set", "events=100000000",
		"--set", "rate=20000", "--from-savepoint", stopDir)
	require.Equal(t, cli.ExitOK, code, errOut)
	code, out, errOut = run("cancel", "views2", "--runner", url)
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "CANCELED")

	// Errors from the runner come back as one line.
	code, _, errOut = run("status", "ghost", "--runner", url)
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, `no such deployment "ghost"`)
	require.Equal(t, 1, strings.Count(errOut, "\n"))
	code, _, errOut = run("stop", "views", "--runner", url)
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, `deployment "views" is STOPPED`)
	code, _, errOut = run("deploy", "viewcount", "--runner", url, "--from-savepoint", filepath.Join(dir, "missing"))
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, filepath.Join(dir, "missing"))
}

func TestRunnerVerbErrors(t *testing.T) {
	// Nothing listens on a port we just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	code, _, errOut := run("list", "--runner", dead)
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, "runner at "+dead+" unreachable")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)

	// A second runner on a busy port.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	code, _, errOut = run("serve", "--http", busy.Addr().String())
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, "--http "+busy.Addr().String())
	require.Contains(t, errOut, "address already in use")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)

	cases := []struct {
		args []string
		says string
	}{
		{[]string{"status"}, "needs one deployment name"},
		{[]string{"status", "a", "b"}, "needs one deployment name"},
		{[]string{"list", "x"}, "takes no arguments"},
		{[]string{"stop", "x", "--drain", "--dir", "d"}, "drop --dir"},
		{[]string{"list", "--runner", "http://"}, "want a URL"},
		{[]string{"replay", "viewcount"}, "replay needs --from-offset"},
		{[]string{"replay", "viewcount", "--from-offset", "-3"}, "--from-offset -3"},
		{[]string{"run", "viewcount", "--checkpoint-interval", "often"}, `--checkpoint-interval "often"`},
		{[]string{"run", "viewcount", "--start", "yesterday"}, `start "yesterday"`},
		{[]string{"run", "viewcount", "--demo"}, `job "viewcount" has no --demo`},
		{[]string{"run", "viewcount", "--config", "/no/such/file.json"}, "--config"},
		{[]string{"deploy", "viewcount", "--runner"}, "--runner needs a URL"},
	}
	for _, c := range cases {
		code, _, errOut := run(c.args...)
		require.Equal(t, cli.ExitUsage, code, "%q: %s", c.args, errOut)
		require.Contains(t, errOut, c.says, "%q", c.args)
		require.Equal(t, 1, strings.Count(errOut, "\n"), "one line for %q: %q", c.args, errOut)
	}
}
