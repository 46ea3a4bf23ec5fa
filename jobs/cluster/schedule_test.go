package cluster

import (
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

func TestScheduleBalancesWithinSlots(t *testing.T) {
	s := stateWith(map[string]int{"a": 2, "b": 2, "c": 2}, map[string]int{"x": 4, "y": 2})
	applyAll(t, s)
	require.Len(t, s.Assignments["x"], 4)
	require.Len(t, s.Assignments["y"], 2)
	require.Equal(t, map[string]int{"a": 2, "b": 2, "c": 2}, used(s))
}

func TestScheduleIsStickyAndMovesOnlyWhatWasOnADeadNode(t *testing.T) {
	s := stateWith(map[string]int{"a": 2, "b": 2, "c": 2}, map[string]int{"x": 4})
	applyAll(t, s)
	before := append([]string(nil), s.Assignments["x"]...)
	dead := before[0]
	require.NoError(t, s.apply(&Command{Op: OpNodeUp, Name: dead, Up: false}))
	applyAll(t, s)
	after := s.Assignments["x"]
	for i := range before {
		if before[i] == dead {
			require.NotEqual(t, dead, after[i], "subtask %d stayed on the dead node", i)
		} else {
			require.Equal(t, before[i], after[i], "subtask %d moved although its node is up", i)
		}
	}
	for id, n := range used(s) {
		require.LessOrEqual(t, n, 2, "node %s over its slots", id)
	}
	// A node that joins takes nothing from the others while they hold it.
	require.NoError(t, s.apply(&Command{Op: OpAddNode, Node: &Member{ID: "d", Slots: 4}}))
	require.Empty(t, Schedule(s))
}

func TestScheduleLeavesSubtasksWaitingWithoutSlots(t *testing.T) {
	s := stateWith(map[string]int{"a": 1}, map[string]int{"x": 3})
	applyAll(t, s)
	require.Equal(t, []string{"a", "", ""}, s.Assignments["x"])
	// Slots that come later take the waiting subtasks.
	require.NoError(t, s.apply(&Command{Op: OpAddNode, Node: &Member{ID: "b", Slots: 2}}))
	applyAll(t, s)
	require.Equal(t, []string{"a", "b", "b"}, s.Assignments["x"])
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

func TestCheckpointKeepsTheLatest(t *testing.T) {
	s := stateWith(nil, map[string]int{"x": 1})
	require.NoError(t, s.apply(&Command{Op: OpCheckpoint, Name: "x", Checkpoint: CheckpointRef{ID: 7, Location: "x/7"}}))
	require.NoError(t, s.apply(&Command{Op: OpCheckpoint, Name: "x", Checkpoint: CheckpointRef{ID: 5, Location: "x/5"}}))
	require.Equal(t, int64(7), s.Checkpoints["x"].ID)
}
