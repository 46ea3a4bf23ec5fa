package cluster

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/jobs/runner"
)

func TestApplyRefusesADeploymentLargerThanTheUpNodes(t *testing.T) {
	s := stateWith(map[string]int{"a": 2, "b": 3, "c": 4}, nil)
	s.Nodes["c"].Up = false // its slots do not count
	before := s.Clone()
	for _, c := range []*Command{
		{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Name: "big", Parallelism: 6}}},
		{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Name: "big", Parallelism: 6}, Desired: Stopped}},
	} {
		err := s.apply(c)
		require.ErrorIs(t, err, ErrNotEnoughSlots)
		require.EqualError(t, err, `cluster: not enough slots: deployment "big" has parallelism 6, the cluster's up nodes have 5 slots`)
		require.Equal(t, before, s, "a refused deploy left a trace")
	}
	// The name defaults to the job's, in the error too.
	err := s.apply(&Command{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Parallelism: 9}}})
	require.EqualError(t, err, `cluster: not enough slots: deployment "j" has parallelism 9, the cluster's up nodes have 5 slots`)
	// Invalid deploys keep their own errors.
	require.EqualError(t, s.apply(&Command{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Parallelism: 9}}}),
		"deploy: no job named")

	// What fits all the up slots is taken, even though other deployments
	// use some: its subtasks wait for free ones.
	require.NoError(t, s.apply(&Command{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Name: "x", Parallelism: 5}}}))
	require.NoError(t, s.apply(&Command{Op: OpDeploy, Deployment: &Deployment{Spec: runner.Spec{Job: "j", Name: "y", Parallelism: 5}}}))

	// Starting a stopped deployment is checked the same way: b went down.
	require.NoError(t, s.apply(&Command{Op: OpSetDesired, Name: "y", Desired: Stopped}))
	require.NoError(t, s.apply(&Command{Op: OpNodeUp, Name: "b", Up: false}))
	before = s.Clone()
	err = s.apply(&Command{Op: OpSetDesired, Name: "y", Desired: Running})
	require.ErrorIs(t, err, ErrNotEnoughSlots)
	require.EqualError(t, err, `cluster: not enough slots: deployment "y" has parallelism 5, the cluster's up nodes have 2 slots`)
	require.Equal(t, before, s)
	// Stopping is always taken.
	require.NoError(t, s.apply(&Command{Op: OpSetDesired, Name: "x", Desired: Stopped}))
}
