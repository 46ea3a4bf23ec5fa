package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/runner"
)

// The soak test runs the cluster as real processes: jobrunner (with the
// tests' jobs, package soaknode) started three times on loopback with
// random ports, against a NATS server of the test. It kills nodes with
// SIGKILL, the node running the deployment and the leader in turn,
// restarts each killed node, and checks on the exactly-once JetStream sink
// that no record is lost or written twice.
//
// By default it kills 2 workers and 2 leaders; with SLUICE_SOAK set, 10 of
// each, as the cluster issue asks.

// soakNodeTimeout is the nodes' --node-timeout: how long a dead node goes
// unnoticed.
const soakNodeTimeout = time.Second

// procNode is one `jobrunner serve --node-id` process.
type procNode struct {
	id, raftAddr, httpAddr, dir, join, natsURL, bin string
	logPath                                         string
	cmd                                             *exec.Cmd
	exited                                          chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// buildSoakNode builds the node program once per test.
func buildSoakNode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jobrunner")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/soaknode").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// start starts the process and waits until its API answers. A restart
// uses the same addresses and data directory, without --join: the node
// rejoins from its raft state.
func (p *procNode) start(t *testing.T) {
	t.Helper()
	args := []string{"serve", "--node-id", p.id, "--raft-addr", p.raftAddr, "--data-dir", p.dir,
		"--http", p.httpAddr, "--nats", p.natsURL, "--slots", "2", "--node-timeout", soakNodeTimeout.String()}
	if p.join != "" && p.cmd == nil {
		args = append(args, "--join", p.join)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	fmt.Fprintf(logf, "--- %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	logf.Close()
	p.cmd = cmd
	exited := make(chan struct{})
	p.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	require.Eventually(t, func() bool {
		var ns []NodeStatus
		return !p.alive() || p.get("/v1/nodes", &ns) == http.StatusOK && len(ns) > 0
	}, 60*time.Second, 20*time.Millisecond, "node %s answers", p.id)
	require.True(t, p.alive(), "node %s exited at start:\n%s", p.id, p.logTail())
}

// kill9 kills the process with SIGKILL and waits until it is gone.
func (p *procNode) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
}

func (p *procNode) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// get calls the node's REST API; 0 means it did not answer.
func (p *procNode) get(path string, out any) int {
	if p == nil {
		return 0
	}
	resp, err := apiClient.Get("http://" + p.httpAddr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	if out != nil && resp.StatusCode == http.StatusOK && json.Unmarshal(b, out) != nil {
		return 0
	}
	return resp.StatusCode
}

func (p *procNode) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	var lines []string
	for l := range strings.Lines(string(b)) {
		// Raft's failed dials to a dead peer say nothing new.
		if !strings.Contains(l, "failed to heartbeat") && !strings.Contains(l, "failed to appendEntries") {
			lines = append(lines, strings.TrimRight(l, "\n"))
		}
	}
	return strings.Join(lines[max(0, len(lines)-80):], "\n")
}

// soakCluster is the node processes.
type soakCluster struct {
	t     *testing.T
	nodes []*procNode
}

func startSoakCluster(t *testing.T, natsURL string, n int) *soakCluster {
	t.Helper()
	bin := buildSoakNode(t)
	base := t.TempDir()
	c := &soakCluster{t: t}
	for i := range n {
		p := &procNode{id: fmt.Sprintf("n%d", i+1), raftAddr: freeAddr(t), httpAddr: freeAddr(t),
			dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), natsURL: natsURL, bin: bin,
			logPath: filepath.Join(base, fmt.Sprintf("n%d.log", i+1))}
		if i > 0 {
			p.join = c.nodes[0].httpAddr
		}
		p.start(t)
		c.nodes = append(c.nodes, p)
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			if p.alive() {
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() {
				t.Logf("log of %s:\n%s", p.id, p.logTail())
			}
		}
	})
	c.waitAllUp()
	return c
}

// any returns a live node other than not, nil if none (whose get answers
// 0). It is called from require.Eventually's goroutine, so it does not fail
// the test itself.
func (c *soakCluster) any(not string) *procNode {
	for _, p := range c.nodes {
		if p.id != not && p.alive() {
			return p
		}
	}
	return nil
}

func (c *soakCluster) node(id string) *procNode {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}

// leader is the id of the leader as a live node sees it, "" if none.
func (c *soakCluster) leader() string {
	var ns []NodeStatus
	if c.any("").get("/v1/nodes", &ns) != http.StatusOK {
		return ""
	}
	for _, s := range ns {
		if s.Leader {
			return s.ID
		}
	}
	return ""
}

// waitAllUp waits until a leader sees every node up.
func (c *soakCluster) waitAllUp() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		var ns []NodeStatus
		if c.any("").get("/v1/nodes", &ns) != http.StatusOK || len(ns) != len(c.nodes) {
			return false
		}
		leader := false
		for _, s := range ns {
			if !s.Up {
				return false
			}
			leader = leader || s.Leader
		}
		return leader
	}, 60*time.Second, 20*time.Millisecond, "every node up, with a leader")
}

// status is the deployment's status as a live node other than not says.
func (c *soakCluster) status(name, not string) (runner.Status, bool) {
	var st runner.Status
	ok := c.any(not).get("/v1/jobs/"+name, &st) == http.StatusOK
	return st, ok
}

// checkpointID is the latest checkpoint of name the cluster recorded.
func (c *soakCluster) checkpointID(name string) int64 {
	var s State
	if c.any("").get(pathState, &s) != http.StatusOK {
		return 0
	}
	return s.Checkpoints[name].ID
}

func TestSoakKill9NodesAndLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak test builds and runs node processes")
	}
	workerKills, leaderKills := 2, 2
	if os.Getenv("SLUICE_SOAK") != "" {
		workerKills, leaderKills = 10, 10
	}
	f := startNATS(t)
	c := startSoakCluster(t, f.srv.URL(), 3)
	f.publish(200)
	body, err := json.Marshal(runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "100ms"})
	require.NoError(t, err)
	resp, err := apiClient.Post("http://"+c.nodes[0].httpAddr+"/v1/jobs", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", b)
	require.Eventually(t, func() bool { return f.outCount() > 0 }, 60*time.Second, 10*time.Millisecond)

	done := map[string]int{}
	var failovers []time.Duration
	for round := 0; done["worker"] < workerKills || done["leader"] < leaderKills; round++ {
		require.Less(t, round, 4*(workerKills+leaderKills), "kills done: %v", done)
		leader := c.leader()
		require.NotEmpty(t, leader, "a leader")
		st, ok := c.status("cp", "")
		require.True(t, ok)
		require.Equal(t, runner.StateRunning, st.State, st.Error)
		// A leader in even rounds and a worker (a node that does not
		// lead, the one running cp if it does not lead) in odd ones, until
		// each kind has its count.
		kind, victim := "leader", leader
		if done["leader"] >= leaderKills || (round%2 == 1 && done["worker"] < workerKills) {
			kind, victim = "worker", st.Node
			if victim == leader {
				victim = c.any(leader).id
			}
		}
		ranIt := victim == st.Node
		before := c.checkpointID("cp")
		outAtKill := f.outCount()
		c.node(victim).kill9(t)
		killed := time.Now()
		done[kind]++
		f.publish(100)
		// The job goes on, on a live node, and writes new output.
		require.Eventually(t, func() bool {
			st, ok := c.status("cp", victim)
			return ok && st.State == runner.StateRunning && st.Node != victim && f.outCount() > outAtKill
		}, 60*time.Second, 5*time.Millisecond, "round %d: cp runs on after %s %s was killed", round, kind, victim)
		if ranIt {
			failovers = append(failovers, time.Since(killed))
		}
		t.Logf("round %d: killed %s %s (ran cp: %v); new output after %v", round, kind, victim, ranIt,
			time.Since(killed).Round(time.Millisecond))
		c.node(victim).start(t)
		c.waitAllUp()
		require.GreaterOrEqual(t, c.checkpointID("cp"), before, "the checkpoint recorded never goes back")
	}
	require.Equal(t, workerKills, done["worker"], "worker kills")
	require.Equal(t, leaderKills, done["leader"], "leader kills")

	f.publish(100)
	want := f.published[0] + f.published[1]
	if !assert.Eventually(t, func() bool { return f.outCount() >= want }, 60*time.Second, 10*time.Millisecond) {
		st, _ := c.status("cp", "")
		t.Fatalf("OUT holds %d of %d records; cp: %+v", f.outCount(), want, st)
	}
	// Two more checkpoints complete: whatever a killed node left prepared
	// is committed by now, once.
	last := c.checkpointID("cp")
	require.Eventually(t, func() bool { return c.checkpointID("cp") >= last+2 }, 60*time.Second, 10*time.Millisecond)
	f.checkExactlyOnce()
	t.Logf("%d worker and %d leader kills; %d records, each once; failover of the node running cp, kill to first new output: %s",
		done["worker"], done["leader"], want, durations(failovers))
}

// durations says min/median/max of ds.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(ds))
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v, median %v, max %v over %d", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}
