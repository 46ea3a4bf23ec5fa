package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestJoiningAnUnreachableAddressFailsWithinJoinTimeout(t *testing.T) {
	addr := closedAddr(t)
	cfg := quietConfig("b", t.TempDir())
	cfg.Join, cfg.JoinTimeout = addr, 300*time.Millisecond
	start := time.Now()
	n, err := Start(ctxT(t), cfg) // ctxT allows 20 s: JoinTimeout ends it
	took := time.Since(start)
	require.Nil(t, n)
	require.ErrorIs(t, err, ErrJoinUnreachable)
	require.EqualError(t, err, fmt.Sprintf(`cluster: join address unreachable: node "b" could not join through %[1]s within 300ms: `+
		`call %[1]s: Post "http://%[1]s/v1/cluster/join": dial tcp %[1]s: connect: connection refused`, addr))
	require.Less(t, took, 5*time.Second, "Start took %s", took)

	// The failed Start released the data directory.
	cfg.Join = ""
	n, err = Start(ctxT(t), cfg)
	require.NoError(t, err)
	require.NoError(t, n.Close())
}

// follower returns a node of nodes that does not lead.
func follower(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	leader := leaderOf(t, nodes)
	for _, tn := range nodes {
		if tn != leader {
			return tn
		}
	}
	t.Fatal("no follower")
	return nil
}

func hasClusterID(s *State) bool { return s.ClusterID != "" }

func TestABootstrappedClusterGetsAnIDThatAJoiningNodeAdopts(t *testing.T) {
	base := t.TempDir()
	a := startNode(t, "n1", filepath.Join(base, "n1"), "", "", 1)
	id := waitFor(t, a.Node, "a cluster id", hasClusterID).ClusterID
	require.Regexp(t, `^[0-9a-f]{16}$`, id)
	require.Equal(t, id, a.ClusterID())
	stored, err := readClusterID(a.cfg.DataDir)
	require.NoError(t, err)
	require.Equal(t, id, stored)

	// A node with an empty data directory joins and keeps the id there.
	b := startNode(t, "n2", filepath.Join(base, "n2"), a.cfg.APIAddr, "", 1)
	stored, err = readClusterID(b.cfg.DataDir)
	require.NoError(t, err)
	require.Equal(t, id, stored)
	require.Equal(t, id, waitFor(t, b.Node, "the cluster id", hasClusterID).ClusterID)

	// With it, it rejoins (through the other member) after a restart.
	b.kill(t)
	b = startNode(t, "n2", b.cfg.DataDir, a.cfg.APIAddr, "", 1)
	waitFor(t, a.Node, "n2 back up", func(s *State) bool { return s.Nodes["n2"] != nil && s.Nodes["n2"].Up })
	require.Equal(t, id, b.ClusterID())
}

func TestANodeOfAnotherClusterIsRefused(t *testing.T) {
	nodes := startCluster(t, 2, 1)
	idA := waitFor(t, nodes[0].Node, "a cluster id", hasClusterID).ClusterID
	via := follower(t, nodes) // the join is forwarded to the leader

	// m1 started a cluster of its own: its data directory says so.
	dirB := filepath.Join(t.TempDir(), "m1")
	m1 := startNode(t, "m1", dirB, "", "", 1)
	idB := waitFor(t, m1.Node, "a cluster id", hasClusterID).ClusterID
	require.NotEqual(t, idA, idB)
	m1.kill(t)

	_, err := startNodeWith(t, testConfig("m1", dirB, via.cfg.APIAddr, 1))
	require.ErrorIs(t, err, ErrOtherCluster)
	require.EqualError(t, err, fmt.Sprintf(`cluster: node of another cluster: node "m1" has cluster id %s in its data directory, `+
		`this cluster's id is %s (joining through %s)`, idB, idA, via.cfg.APIAddr))

	// Cluster A did not take it, and m1's directory still names B.
	leader := leaderOf(t, nodes)
	require.Len(t, leader.raft.GetConfiguration().Configuration().Servers, 2)
	require.NotContains(t, leader.State().Nodes, "m1")
	stored, err := readClusterID(dirB)
	require.NoError(t, err)
	require.Equal(t, idB, stored)
	// The refused Start let go of the directory.
	again := startNode(t, "m1", dirB, "", "", 1)
	require.Equal(t, idB, again.ClusterID())
}

func TestANodeOfAnotherProtocolIsRefused(t *testing.T) {
	nodes := startCluster(t, 2, 1)
	leader, via := leaderOf(t, nodes), follower(t, nodes)
	cfg := testConfig("x", t.TempDir(), via.cfg.APIAddr, 1)
	cfg.protocol = ProtocolVersion + 1
	_, err := startNodeWith(t, cfg)
	require.ErrorIs(t, err, ErrIncompatibleVersion)
	v := softwareVersion()
	require.EqualError(t, err, fmt.Sprintf(`cluster: incompatible version: node "x" runs sluice %s with cluster protocol %d, `+
		`the leader %s runs sluice %s with cluster protocol %d (joining through %s)`,
		v, ProtocolVersion+1, leader.ID(), v, ProtocolVersion, via.cfg.APIAddr))
	require.Len(t, leader.raft.GetConfiguration().Configuration().Servers, 2)
	require.NotContains(t, leader.State().Nodes, "x")
	// The refused node adopted nothing.
	stored, err := readClusterID(cfg.DataDir)
	require.NoError(t, err)
	require.Empty(t, stored)

	// Over HTTP the refusal is a 409 with the error's code, on the leader as
	// on a member that forwards it; a node of before cluster ids sends no
	// protocol (0).
	for _, tn := range []*testNode{leader, via} {
		resp, err := http.Post("http://"+tn.cfg.APIAddr+pathJoin, "application/json",
			strings.NewReader(`{"id":"old","raft_addr":"127.0.0.1:1"}`))
		require.NoError(t, err)
		var e apiError
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		require.Equal(t, apiError{Code: "incompatible-version", Error: fmt.Sprintf(`cluster: incompatible version: node "old" runs sluice `+
			`of an unknown version with cluster protocol 0, the leader %s runs sluice %s with cluster protocol %d`,
			leader.ID(), v, ProtocolVersion)}, e)
	}
}
