package cluster

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/jobs/runner"
)

func deploy(name string, p int) *Command {
	return &Command{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Name: name, Parallelism: p}}}
}

func registered(id string) func(*State) bool {
	return func(s *State) bool { return s.Nodes[id] != nil && s.Nodes[id].Up }
}

func TestADeploymentLargerThanTheClusterIsRefusedAndNothingStarts(t *testing.T) {
	nodes := startCluster(t, 2, 2)
	leader, via := leaderOf(t, nodes), follower(t, nodes)
	const refused = `cluster: not enough slots: deployment "big" has parallelism 5, the cluster's up nodes have 4 slots`
	// On the leader, and through a member that forwards it.
	for _, tn := range []*testNode{leader, via} {
		err := tn.Apply(ctxT(t), deploy("big", 5))
		require.ErrorIs(t, err, ErrNotEnoughSlots, "through %s", tn.ID())
		require.EqualError(t, err, refused, "through %s", tn.ID())
	}
	// Over HTTP it is a 409 with the error's code.
	data, err := msgpack.Marshal(deploy("big", 5))
	require.NoError(t, err)
	resp, err := http.Post("http://"+leader.cfg.APIAddr+pathApply, "application/msgpack", bytes.NewReader(data))
	require.NoError(t, err)
	var e apiError
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Equal(t, apiError{Error: refused, Code: "not-enough-slots"}, e)

	// What fits the cluster is taken; one that fits no single node waits,
	// and says why. Once "fits" is assigned everywhere, every node has
	// applied all that came before it, and nothing of "big" is there.
	require.NoError(t, via.Apply(ctxT(t), deploy("wide", 3)))
	require.NoError(t, via.Apply(ctxT(t), deploy("fits", 2)))
	for _, tn := range nodes {
		s := waitFor(t, tn.Node, "fits assigned", assigned("fits", 2))
		require.NotContains(t, s.Deployments, "big")
		require.NotContains(t, s.Assignments, "big")
		require.NotContains(t, s.Checkpoints, "big")
		require.Len(t, s.Deployments, 2)
		require.Equal(t, []string{"", "", ""}, s.Assignments["wide"])
		require.Equal(t, `deployment "wide" waits: it runs whole on one node and needs 3 slots; the largest up node has 2 (a job does not yet run across nodes)`,
			s.Waiting("wide"))
	}
}

func TestAJoiningNodeAddsItsSlots(t *testing.T) {
	dir := t.TempDir()
	a := startNode(t, "n1", filepath.Join(dir, "n1"), "", "", 2)
	waitFor(t, a.Node, "n1 registered", registered("n1"))
	require.EqualError(t, a.Apply(ctxT(t), deploy("d", 5)),
		`cluster: not enough slots: deployment "d" has parallelism 5, the cluster's up nodes have 2 slots`)

	b := startNode(t, "n2", filepath.Join(dir, "n2"), a.cfg.APIAddr, "", 3)
	s := waitFor(t, a.Node, "n2 registered", registered("n2"))
	require.Equal(t, 5, s.upSlots())
	// Now the cluster has the slots: the scheduler puts a deployment of 3
	// whole on the new node, and one of 2 on the first.
	require.NoError(t, b.Apply(ctxT(t), deploy("d", 3)))
	require.NoError(t, b.Apply(ctxT(t), deploy("e", 2)))
	s = waitFor(t, b.Node, "d and e assigned", func(s *State) bool { return assigned("d", 3)(s) && assigned("e", 2)(s) })
	require.Equal(t, map[string]int{"n1": 2, "n2": 3}, used(s))
	// b got that state from the leader, so it knows which node leads.
	require.Equal(t, []NodeStatus{
		{ID: "n1", RaftAddr: a.RaftAddr(), APIAddr: a.cfg.APIAddr, Slots: 2, Used: 2, Up: true, Leader: true},
		{ID: "n2", RaftAddr: b.RaftAddr(), APIAddr: b.cfg.APIAddr, Slots: 3, Used: 3, Up: true},
	}, b.Nodes())
}
