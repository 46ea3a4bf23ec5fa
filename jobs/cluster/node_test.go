package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/runner"
)

// testNode is a node and its API server.
type testNode struct {
	*Node
	cfg Config
	srv *http.Server
}

func (tn *testNode) kill(t *testing.T) {
	t.Helper()
	_ = tn.srv.Close()
	require.NoError(t, tn.Node.Close())
}

const testNodeTimeout = 500 * time.Millisecond

func startNode(t *testing.T, id, dir, join, api string, slots int) *testNode {
	t.Helper()
	cfg := testConfig(id, dir, join, slots)
	cfg.APIAddr = api
	tn, err := startNodeWith(t, cfg)
	require.NoError(t, err)
	return tn
}

// testConfig is the configuration of a test node, with short timeouts.
func testConfig(id, dir, join string, slots int) Config {
	return Config{NodeID: id, RaftAddr: "127.0.0.1:0", DataDir: dir, Slots: slots,
		Join: join, NodeTimeout: testNodeTimeout, HeartbeatTimeout: 200 * time.Millisecond,
		ElectionTimeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// startNodeWith starts a node of cfg and its API server (on cfg.APIAddr,
// or a free port if it is empty), and returns Start's error if it fails.
func startNodeWith(t *testing.T, cfg Config) (*testNode, error) {
	t.Helper()
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.APIAddr)
	require.NoError(t, err)
	cfg.APIAddr = ln.Addr().String()
	srv := &http.Server{}
	// Serve before Start: a joining node's registration may be forwarded
	// back to it while Start runs.
	node := &testNode{cfg: cfg, srv: srv}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	handler := &lateHandler{}
	srv.Handler = handler
	go func() { _ = srv.Serve(ln) }()
	n, err := Start(ctx, cfg)
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	handler.set(n.Handler())
	node.Node = n
	t.Cleanup(func() { _ = srv.Close(); _ = n.Close() })
	return node, nil
}

// lateHandler answers 503 until the node's handler is set.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	writeError(w, errRetry{errors.New("node starting")})
}

func startCluster(t *testing.T, n, slots int) []*testNode {
	t.Helper()
	base := t.TempDir()
	nodes := []*testNode{startNode(t, "n1", filepath.Join(base, "n1"), "", "", slots)}
	for i := 2; i <= n; i++ {
		id := "n" + string(rune('0'+i))
		nodes = append(nodes, startNode(t, id, filepath.Join(base, id), nodes[0].cfg.APIAddr, "", slots))
	}
	for _, tn := range nodes {
		waitFor(t, tn.Node, "all members up", func(s *State) bool { return upCount(s) == n })
	}
	return nodes
}

func upCount(s *State) int {
	k := 0
	for _, m := range s.Nodes {
		if m.Up {
			k++
		}
	}
	return k
}

// waitFor blocks until cond holds on node's state, failing after 20 s.
func waitFor(t *testing.T, n *Node, what string, cond func(*State) bool) *State {
	t.Helper()
	ch, stop := n.Watch()
	defer stop()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		if s := n.State(); cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("node %s: timed out waiting for %s; state: %+v", n.ID(), what, n.State())
		}
	}
}

func leaderOf(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	for _, tn := range nodes {
		if tn.IsLeader() {
			return tn
		}
	}
	t.Fatal("no leader")
	return nil
}

func assigned(name string, p int) func(*State) bool {
	return func(s *State) bool {
		a := s.Assignments[name]
		return len(a) == p && !slices.Contains(a, "")
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestThreeNodesFormAClusterAndAgree(t *testing.T) {
	nodes := startCluster(t, 3, 2)
	leader := leaderOf(t, nodes)
	var follower *testNode
	for _, tn := range nodes {
		if tn != leader {
			follower = tn
		}
	}
	// A write through a follower is forwarded to the leader.
	spec := runner.Spec{Job: "clickstream", Name: "cs", Parallelism: 2, Params: map[string]string{"window": "1m"}}
	require.NoError(t, follower.Apply(ctxT(t), &Command{Op: OpDeploy, Deployment: &Deployment{Spec: spec}}))
	var states []*State
	for _, tn := range nodes {
		states = append(states, waitFor(t, tn.Node, "cs assigned", assigned("cs", 2)))
	}
	for _, s := range states[1:] {
		require.Equal(t, states[0].Deployments, s.Deployments)
		require.Equal(t, states[0].Assignments, s.Assignments)
	}
	require.Equal(t, "1m", states[0].Deployments["cs"].Spec.Params["window"])
	for id, k := range used(states[0]) {
		require.LessOrEqual(t, k, 2, "node %s over its slots", id)
	}
	// Nodes lists every member, its slots and the leader, on any node.
	list := follower.Nodes()
	require.Len(t, list, 3)
	leaders := 0
	for _, m := range list {
		require.True(t, m.Up)
		require.Equal(t, 2, m.Slots)
		if m.Leader {
			leaders++
			require.Equal(t, leader.ID(), m.ID)
		}
	}
	require.Equal(t, 1, leaders)
	// Errors keep their kind across forwarding.
	err := follower.Apply(ctxT(t), &Command{Op: OpSetDesired, Name: "nope", Desired: Stopped})
	require.ErrorIs(t, err, ErrNoDeployment)
}

func TestADeadNodesDeploymentMovesWholeToAnother(t *testing.T) {
	nodes := startCluster(t, 3, 2)
	leader := leaderOf(t, nodes)
	// Three deployments of 2 fill the three nodes, one each.
	for _, name := range []string{"d1", "d2", "d3"} {
		require.NoError(t, leader.Apply(ctxT(t), &Command{Op: OpDeploy, Deployment: &Deployment{
			Spec: runner.Spec{Job: "j", Name: name, Parallelism: 2}}}))
	}
	s := waitFor(t, leader.Node, "all assigned", func(s *State) bool {
		return assigned("d1", 2)(s) && assigned("d2", 2)(s) && assigned("d3", 2)(s)
	})
	var victim *testNode
	var lost string
	for _, tn := range nodes {
		for _, name := range []string{"d1", "d2", "d3"} {
			if tn != leader && wholeOn(s.Assignments[name], 2) == tn.ID() {
				victim, lost = tn, name
			}
		}
	}
	require.NotNil(t, victim, "no follower got a deployment: %v", s.Assignments)
	// Make room for the lost deployment on one of the others.
	var freed string
	for _, name := range []string{"d1", "d2", "d3"} {
		if name != lost && freed == "" {
			freed = name
		}
	}
	require.NoError(t, leader.Apply(ctxT(t), &Command{Op: OpSetDesired, Name: freed, Desired: Stopped}))
	before := s.Clone().Assignments
	victim.kill(t)
	s = waitFor(t, leader.Node, "the lost deployment off the dead node", func(s *State) bool {
		return !s.Nodes[victim.ID()].Up && assigned(lost, 2)(s) && !slices.Contains(s.Assignments[lost], victim.ID())
	})
	require.Equal(t, wholeOn(before[freed], 2), wholeOn(s.Assignments[lost], 2), "%s went whole to the slots %s let go", lost, freed)
	for _, name := range []string{"d1", "d2", "d3"} {
		if name != lost && name != freed {
			require.Equal(t, before[name], s.Assignments[name], "%s moved although its node is up", name)
		}
	}
	for id, k := range used(s) {
		require.LessOrEqual(t, k, 2, "node %s over its slots", id)
	}

	// The node comes back with its data directory: it rejoins and is up.
	// Its raft port is new (127.0.0.1:0), so it names a member to join.
	back := startNode(t, victim.ID(), victim.cfg.DataDir, leader.cfg.APIAddr, "", 2)
	waitFor(t, leader.Node, "the node back up", func(s *State) bool { return s.Nodes[back.ID()].Up })
	waitFor(t, back.Node, "the rejoined node has the state", assigned(lost, 2))
}

func TestANewLeaderCarriesOn(t *testing.T) {
	nodes := startCluster(t, 3, 4)
	old := leaderOf(t, nodes)
	require.NoError(t, old.Apply(ctxT(t), &Command{Op: OpDeploy, Deployment: &Deployment{
		Spec: runner.Spec{Job: "j", Name: "d", Parallelism: 4}}}))
	waitFor(t, old.Node, "d assigned", assigned("d", 4))
	old.kill(t)
	var rest []*testNode
	for _, tn := range nodes {
		if tn != old {
			rest = append(rest, tn)
		}
	}
	// The new leader marks the old one down and moves its subtasks.
	s := waitFor(t, rest[0].Node, "the old leader's subtasks moved", func(s *State) bool {
		return !s.Nodes[old.ID()].Up && assigned("d", 4)(s) && !slices.Contains(s.Assignments["d"], old.ID())
	})
	for id, k := range used(s) {
		require.LessOrEqual(t, k, 4, "node %s over its slots", id)
	}
	require.NotEqual(t, old.ID(), rest[0].Leader())
	// Writes go on through either remaining node.
	require.NoError(t, rest[1].Apply(ctxT(t), &Command{Op: OpSetDesired, Name: "d", Desired: Stopped}))
	waitFor(t, rest[0].Node, "d stopped and unassigned", func(s *State) bool {
		_, has := s.Assignments["d"]
		return s.Deployments["d"].Desired == Stopped && !has
	})
}

func TestStartRefusesBadConfig(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	for _, c := range []Config{
		{RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: dir},
		{NodeID: "a", APIAddr: "127.0.0.1:1", DataDir: dir},
		{NodeID: "a", RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1"},
		{NodeID: "a", RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: dir, Slots: -1},
		{NodeID: "a", RaftAddr: "256.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: dir},
	} {
		_, err := Start(ctx, c)
		require.Error(t, err, "%+v", c)
	}
	// Joining a member that does not answer fails when ctx ends, naming it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = Start(short, Config{NodeID: "b", RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: t.TempDir(), Join: addr})
	require.ErrorContains(t, err, addr)
}
