package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
	"github.com/sluicedata/sluice/jobs/cluster"
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

// runBounded is run for a serve expected to fail: should it run instead,
// it ends after 30 s and the test fails on its exit code.
func runBounded(args ...string) (code int, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = cli.Main(ctx, jobs.Default, args, &out, &errb)
	return code, errb.String()
}

// lastLine is the last line of out: the error serve exits with.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func TestServeReportsAnUnreachableJoinAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	cause := fmt.Sprintf(`call %[1]s: Post "http://%[1]s/v1/cluster/join": dial tcp %[1]s: connect: connection refused`, addr)
	for _, c := range []struct {
		flags  []string
		within string
	}{
		{nil, "5s"}, // the default
		{[]string{"--join-timeout", "200ms"}, "200ms"},
	} {
		args := append([]string{"serve", "--http", "127.0.0.1:0", "--node-id", "b", "--raft-addr", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--join", addr}, c.flags...)
		start := time.Now()
		code, errOut := runBounded(args...)
		require.Equal(t, cli.ExitFailed, code, errOut)
		require.Equal(t, `jobrunner serve: cluster: join address unreachable: node "b" could not join through `+addr+
			" within "+c.within+": "+cause, lastLine(errOut))
		require.Less(t, time.Since(start), 15*time.Second)
	}
	code, _, errOut := run("serve", "--node-id", "b", "--raft-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--join", addr, "--join-timeout", "0s")
	require.Equal(t, cli.ExitUsage, code)
	require.Equal(t, "jobrunner serve: --join-timeout 0s: want more than 0", lastLine(errOut))
}

func TestServeRefusesADataDirInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	url := serveRunner(t, "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", dir, "--slots", "1")
	// serve listens before its node starts: once nodes answers, it holds dir.
	require.Eventually(t, func() bool {
		code, _, _ := run("nodes", "--runner", url)
		return code == cli.ExitOK
	}, 20*time.Second, 20*time.Millisecond)
	code, errOut := runBounded("serve", "--http", "127.0.0.1:0", "--node-id", "a2", "--raft-addr", "127.0.0.1:0", "--data-dir", dir)
	require.Equal(t, cli.ExitFailed, code, errOut)
	require.Equal(t, fmt.Sprintf("jobrunner serve: cluster: data directory in use: %s is held by the node of process %d (lock %s)",
		dir, os.Getpid(), filepath.Join(dir, "LOCK")), lastLine(errOut))
}

func TestServeRefusesToJoinAnotherCluster(t *testing.T) {
	dir := t.TempDir()
	a := serveRunner(t, "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "a"), "--slots", "1")
	var idA string
	require.Eventually(t, func() bool {
		resp, err := http.Get(a + "/v1/cluster/state")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var s cluster.State
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
			return false
		}
		idA = s.ClusterID
		return idA != ""
	}, 20*time.Second, 20*time.Millisecond)

	// m's data directory belongs to a cluster of its own.
	dirM := filepath.Join(dir, "m")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := cluster.Start(ctx, cluster.Config{NodeID: "m", RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: dirM,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, m.Close())
	b, err := os.ReadFile(filepath.Join(dirM, "cluster-id"))
	require.NoError(t, err)
	idM := strings.TrimSpace(string(b))

	join := strings.TrimPrefix(a, "http://")
	code, errOut := runBounded("serve", "--http", "127.0.0.1:0", "--node-id", "m", "--raft-addr", "127.0.0.1:0",
		"--data-dir", dirM, "--join", join)
	require.Equal(t, cli.ExitFailed, code, errOut)
	require.Equal(t, fmt.Sprintf(`jobrunner serve: cluster: node of another cluster: node "m" has cluster id %s in its data directory, `+
		`this cluster's id is %s (joining through %s)`, idM, idA, join), lastLine(errOut))
}
