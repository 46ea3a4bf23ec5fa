package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/cli"
)

func TestServeNodesFormAClusterAndNodesListsThem(t *testing.T) {
	dir := t.TempDir()
	first := serveRunner(t, "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "a"), "--slots", "2")
	join := strings.TrimPrefix(first, "http://")
	second := serveRunner(t, "--node-id", "b", "--raft-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "b"),
		"--slots", "3", "--join", join)

	// Both answer for the whole cluster once b has registered.
	for _, url := range []string{first, second} {
		var out string
		require.Eventually(t, func() bool {
			code, o, _ := run("nodes", "--runner", url)
			out = o
			return code == cli.ExitOK && strings.Count(o, " up ") == 2
		}, 20*time.Second, 20*time.Millisecond, "nodes on %s: %s", url, out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 3, out)
		require.Regexp(t, `^NODE\s+STATE\s+LEADER\s+SLOTS\s+USED\s+RAFT\s+API`, lines[0])
		require.Regexp(t, `^a\s+up\s+\*\s+2\s+0\s+127\.0\.0\.1:\d+\s+`+join, lines[1], "a started the cluster: it leads")
		require.Regexp(t, `^b\s+up\s+3\s+0\s+`, lines[2])
	}
	code, out, _ := run("nodes", "--runner", second, "--json")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, `"leader":true`)
	require.Contains(t, out, `"slots":3`)
}

func TestServeRefusesHalfAClusterConfig(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--raft-addr", "127.0.0.1:0"},
		{"serve", "--join", "127.0.0.1:1"},
		{"serve", "--node-id", "a", "--raft-addr", "127.0.0.1:0"},
		{"serve", "--node-id", "a", "--data-dir", t.TempDir()},
		{"serve", "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--slots", "0"},
	} {
		code, _, errOut := run(args...)
		require.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
		require.Contains(t, errOut, "jobrunner serve: ")
	}
}

func TestNodesOnARunnerThatIsNotAClusterNode(t *testing.T) {
	url := serveRunner(t)
	code, _, errOut := run("nodes", "--runner", url)
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, "not a cluster node")
}
