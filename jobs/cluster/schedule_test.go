package cluster

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/runner"
)

func stateWith(nodes map[string]int, deps map[string]int) *State {
	s := newState()
	for id, slots := range nodes {
		s.Nodes[id] = &Member{ID: id, Slots: slots, Up: true}
	}
	for name, p := range deps {
		s.Deployments[name] = &Deployment{Spec: runner.Spec{Job: "j", Name: name, Parallelism: p}, Desired: Running, Generation: 1}
	}
	return s
}

func applyAll(t *testing.T, s *State) {
	t.Helper()
	if a := Schedule(s); len(a) > 0 {
		require.NoError(t, s.apply(&Command{Op: OpAssign, Assignments: a}))
	}
	require.Empty(t, Schedule(s), "a second Schedule must find nothing to do")
}

func used(s *State) map[string]int {
	u := map[string]int{}
	for _, a := range s.Assignments {
		for _, id := range a {
			u[id]++
		}
	}
	return u
}

func TestSchedulePlacesEachDeploymentWholeOnTheNodeWithTheMostFreeSlots(t *testing.T) {
	s := stateWith(map[string]int{"a": 2, "b": 4, "c": 2}, map[string]int{"x": 3, "y": 2, "z": 1})
	applyAll(t, s)
	// In name order: x (3) on b, the most free; y (2) on a, tied with c
	// and the lowest id; z (1) on c, which has 2 free against b's 1.
	require.Equal(t, []string{"b", "b", "b"}, s.Assignments["x"])
	require.Equal(t, []string{"a", "a"}, s.Assignments["y"])
	require.Equal(t, []string{"c"}, s.Assignments["z"])
	// Deterministic: the same state gives the same assignment.
	again := stateWith(map[string]int{"a": 2, "b": 4, "c": 2}, map[string]int{"x": 3, "y": 2, "z": 1})
	applyAll(t, again)
	require.Equal(t, s.Assignments, again.Assignments)
}

func TestScheduleIsStickyAndMovesADeadNodesDeploymentWhole(t *testing.T) {
	s := stateWith(map[string]int{"a": 2, "b": 2, "c": 3}, map[string]int{"x": 2, "y": 2})
	applyAll(t, s)
	require.Equal(t, []string{"c", "c"}, s.Assignments["x"])
	require.Equal(t, []string{"a", "a"}, s.Assignments["y"])
	require.NoError(t, s.apply(&Command{Op: OpNodeUp, Name: "c", Up: false}))
	applyAll(t, s)
	require.Equal(t, []string{"b", "b"}, s.Assignments["x"], "x moved all together to the node with room")
	require.Equal(t, []string{"a", "a"}, s.Assignments["y"], "y stayed: its node is up")
	// A node that joins, or comes back, takes nothing from the others
	// while they hold it.
	require.NoError(t, s.apply(&Command{Op: OpAddNode, Node: &Member{ID: "d", Slots: 4}}))
	require.NoError(t, s.apply(&Command{Op: OpNodeUp, Name: "c", Up: true}))
	require.Empty(t, Schedule(s))
	// An assignment spread over nodes (by an older scheduler) is made whole.
	s.Assignments["x"] = []string{"a", "b"}
	applyAll(t, s)
	require.Equal(t, []string{"d", "d"}, s.Assignments["x"])
}

func TestScheduleLeavesADeploymentThatFitsNoNodeWaiting(t *testing.T) {
	s := stateWith(map[string]int{"a": 1, "b": 2}, map[string]int{"x": 3})
	applyAll(t, s)
	require.Equal(t, []string{"", "", ""}, s.Assignments["x"], "3 slots in the cluster, but not on one node")
	require.Equal(t, `deployment "x" waits: it runs whole on one node and needs 3 slots; the largest up node has 2 (a job does not yet run across nodes)`,
		s.Waiting("x"))
	// A node with room takes it.
	require.NoError(t, s.apply(&Command{Op: OpAddNode, Node: &Member{ID: "c", Slots: 3}}))
	applyAll(t, s)
	require.Equal(t, []string{"c", "c", "c"}, s.Assignments["x"])
	require.Empty(t, s.Waiting("x"))

	// One that fits a node's slots, but not its free slots, waits for them.
	require.NoError(t, s.apply(deploy("y", 2)))
	require.NoError(t, s.apply(deploy("z", 2)))
	applyAll(t, s)
	require.Equal(t, []string{"b", "b"}, s.Assignments["y"])
	require.Equal(t, []string{"", ""}, s.Assignments["z"])
	require.Equal(t, `deployment "z" waits: it runs whole on one node and needs 2 free slots; the most an up node has free is 1 (a)`, s.Waiting("z"))
	require.NoError(t, s.apply(&Command{Op: OpSetDesired, Name: "y", Desired: Stopped}))
	applyAll(t, s)
	require.Equal(t, []string{"b", "b"}, s.Assignments["z"], "z takes the slots y let go")
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, s.apply(&Command{Op: OpNodeUp, Name: id, Up: false}))
	}
	applyAll(t, s)
	require.Equal(t, `deployment "z" waits: no node is up`, s.Waiting("z"))
	require.Empty(t, s.Waiting("y"), "a stopped deployment does not wait")
}

func TestScheduleRemovesStoppedDeployments(t *testing.T) {
	s := stateWith(map[string]int{"a": 4}, map[string]int{"x": 2})
	applyAll(t, s)
	require.NoError(t, s.apply(&Command{Op: OpSetDesired, Name: "x", Desired: Stopped}))
	applyAll(t, s)
	require.NotContains(t, s.Assignments, "x")
	require.Equal(t, uint64(2), s.Deployments["x"].Generation)
}

func TestApplyRefusesBadCommands(t *testing.T) {
	s := stateWith(map[string]int{"a": 1}, map[string]int{"x": 2})
	for _, c := range []*Command{
		{Op: OpDeploy},
		{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Parallelism: -1}}},
		{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j"}, Desired: "paused"}},
		{Op: OpSetDesired, Name: "nope", Desired: Stopped},
		{Op: OpSetDesired, Name: "x", Desired: "paused"},
		{Op: OpRemove, Name: "nope"},
		{Op: OpAddNode, Node: &Member{}},
		{Op: OpNodeUp, Name: "nope"},
		{Op: OpAssign, Assignments: map[string][]string{"x": {"a"}}},
		{Op: "explode"},
	} {
		before := s.Clone()
		require.Error(t, s.apply(c), "%+v", c)
		require.Equal(t, before, s, "a refused %s changed the state", c.Op)
	}
	require.ErrorIs(t, s.apply(&Command{Op: OpRemove, Name: "nope"}), ErrNoDeployment)
}

func TestCheckpointKeepsTheLatestFromTheAssignedNode(t *testing.T) {
	s := stateWith(map[string]int{"a": 1, "b": 1}, map[string]int{"x": 1})
	applyAll(t, s)
	require.Equal(t, []string{"a"}, s.Assignments["x"])
	require.NoError(t, s.apply(&Command{Op: OpCheckpoint, Name: "x", From: "a", Checkpoint: CheckpointRef{ID: 7, Location: "x/7"}}))
	require.NoError(t, s.apply(&Command{Op: OpCheckpoint, Name: "x", From: "a", Checkpoint: CheckpointRef{ID: 5, Location: "x/5"}}))
	require.Equal(t, int64(7), s.Checkpoints["x"].ID)
	// Another node may not record one: the deployment is not its.
	for _, from := range []string{"b", ""} {
		err := s.apply(&Command{Op: OpCheckpoint, Name: "x", From: from, Checkpoint: CheckpointRef{ID: 9}})
		require.ErrorIs(t, err, ErrNotAssigned)
		require.EqualError(t, err, fmt.Sprintf(`cluster: deployment not assigned to the node: node %q records checkpoint 9 of deployment "x", which is assigned to [a]`, from))
	}
	require.Equal(t, int64(7), s.Checkpoints["x"].ID)
}
