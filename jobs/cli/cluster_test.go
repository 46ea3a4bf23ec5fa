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
	"github.com/sluicedata/sluice/jobs/runner"
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
		{"serve", "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--checkpoint-dir", t.TempDir()},
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
	code, _, errOut = run("serve", "--node-id", "b", "--raft-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--node-timeout", "-1s")
	require.Equal(t, cli.ExitUsage, code)
	require.Equal(t, "jobrunner serve: --node-timeout -1s: want more than 0", lastLine(errOut))
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

// statusOf is `jobrunner status NAME --json` on url.
func statusOf(t *testing.T, url, name string) runner.Status {
	t.Helper()
	code, out, errOut := run("status", name, "--runner", url, "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var st runner.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

// Three serve nodes and a NATS server: a deployment through one node runs
// on the node the cluster picks, any node tells its status, and when that
// node stops another resumes it from its checkpoints.
func TestDeployOnAClusterRunsOnANodeAndMovesWhenItStops(t *testing.T) {
	srv := publish(t, 20000)
	dir := t.TempDir()
	urls := map[string]string{}
	stops := map[string]func(){}
	for i, id := range []string{"a", "b", "c"} {
		args := []string{"--node-id", id, "--raft-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id),
			"--slots", "2", "--nats", srv.URL()}
		if i > 0 {
			args = append(args, "--join", strings.TrimPrefix(urls["a"], "http://"))
		}
		urls[id], stops[id] = serveStoppable(t, args...)
	}
	require.Eventually(t, func() bool {
		code, out, _ := run("nodes", "--runner", urls["c"])
		return code == cli.ExitOK && strings.Count(out, " up ") == 3
	}, 20*time.Second, 20*time.Millisecond)

	code, out, errOut := run("deploy", "clickstream", "--runner", urls["b"], "--name", "cs", "--output", filepath.Join(dir, "out"),
		"--checkpoint-interval", "50ms", "--parallelism", "2")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `node:\s+a\n`, out, "a, b and c have 2 free slots each: the lowest id")
	require.Eventually(t, func() bool {
		st := statusOf(t, urls["c"], "cs")
		return st.State == runner.StateRunning && st.Node == "a" && st.CheckpointsCompleted > 0 && st.RecordsIn > 0
	}, 30*time.Second, 20*time.Millisecond)
	code, out, errOut = run("list", "--runner", urls["b"])
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `\ncs\s+clickstream\s+RUNNING\s`, out)
	code, out, errOut = run("nodes", "--runner", urls["b"])
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `\na\s+up\s+\*\s+2\s+2\s`, out, "a runs both subtasks")

	// a (the leader) stops: b or c takes the deployment over and resumes it.
	stops["a"]()
	var st runner.Status
	require.Eventually(t, func() bool {
		st = statusOf(t, urls["c"], "cs")
		return st.State == runner.StateRunning && st.Node != "a" && st.CheckpointsCompleted > 0
	}, 60*time.Second, 20*time.Millisecond, "%+v", st)
	code, out, errOut = run("status", "cs", "--runner", urls["b"])
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Regexp(t, `node:\s+`+st.Node+`\n`, out)

	// Its checkpoints are listed through any node.
	code, out, errOut = run("checkpoints", "cs", "--runner", urls["b"])
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "checkpoint")

	// Rescaled through either node, to 1 and back to 2, it runs on.
	for _, p := range []string{"1", "2"} {
		code, out, errOut = run("rescale", "cs", "--parallelism", p, "--runner", urls["b"])
		require.Equal(t, cli.ExitOK, code, errOut)
		require.Regexp(t, `node:\s+[bc]\n`, out)
		require.Eventually(t, func() bool {
			st = statusOf(t, urls["c"], "cs")
			return st.State == runner.StateRunning && fmt.Sprint(st.Spec.Parallelism) == p && st.CheckpointsCompleted > 0
		}, 30*time.Second, 20*time.Millisecond, "%+v", st)
	}
	code, _, errOut = run("rescale", "cs", "--parallelism", "3", "--runner", urls["c"])
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, "nothing stopped")

	// Canceled through either node, it ends; its checkpoints stay.
	code, out, errOut = run("cancel", "cs", "--runner", urls["b"])
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "CANCELED")
	require.Eventually(t, func() bool { return statusOf(t, urls["c"], "cs").State == runner.StateCanceled }, 10*time.Second, 10*time.Millisecond)
	code, _, errOut = run("stop", "cs", "--runner", urls["c"])
	require.Equal(t, cli.ExitFailed, code)
	require.Contains(t, errOut, "CANCELED and runs on no node")
}

func TestDeployOnAClusterThatHasNoNodeWithRoomSaysWhy(t *testing.T) {
	dir := t.TempDir()
	url := serveRunner(t, "--node-id", "a", "--raft-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "a"), "--slots", "2",
		"--nats", "nats://127.0.0.1:1")
	require.Eventually(t, func() bool {
		code, out, _ := run("nodes", "--runner", url)
		return code == cli.ExitOK && strings.Count(out, " up ") == 1
	}, 20*time.Second, 20*time.Millisecond)
	code, _, errOut := run("deploy", "clickstream", "--runner", url, "--parallelism", "3")
	require.Equal(t, cli.ExitFailed, code)
	require.Equal(t, `jobrunner deploy: cluster: not enough slots: deployment "clickstream" has parallelism 3, the cluster's up nodes have 2 slots (HTTP 409)`,
		lastLine(errOut))
	// It fits the node, but the NATS server of the checkpoints is not
	// there: the status names it.
	code, out, errOut := run("deploy", "clickstream", "--runner", url, "--parallelism", "2")
	require.Equal(t, cli.ExitOK, code, errOut)
	require.Contains(t, out, "node:             a")
	require.Eventually(t, func() bool {
		return strings.Contains(statusOf(t, url, "clickstream").Error, "cannot connect to nats://127.0.0.1:1")
	}, 20*time.Second, 20*time.Millisecond)
	code, out, _ = run("status", "clickstream", "--runner", url)
	require.Equal(t, cli.ExitOK, code)
	require.Regexp(t, `state:\s+STARTING\n`, out)
	require.Regexp(t, `error:\s+deployment "clickstream": checkpoint storage: jetstream: cannot connect to nats://127.0.0.1:1: `, out)
}
