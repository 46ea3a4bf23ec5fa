package cluster

import (
	"fmt"
	"slices"
	"sort"
)

// Schedule returns the assignments that s should have and does not: for
// each running deployment, a node for each subtask; nil for a deployment
// that should run nowhere (stopped) and still has an assignment. Deployments
// whose assignment is right are left out, so an empty result means nothing
// to do.
//
// A deployment runs whole on one node: until exchanges between nodes are
// part of a job's dataflow, its subtasks cannot talk across nodes. So all
// of a deployment's subtasks go to one up node with at least its
// parallelism in free slots: the one with the most free slots (ties: the
// lowest ID), deployments placed in name order. They stay on that node
// while it is up, and move all together when it goes down. A deployment
// that fits no up node's free slots gets "" for every subtask and waits
// (State.Waiting says why). Assignments that are kept are kept first, over
// all deployments, so that a change in one deployment never moves
// another's. Schedule is a pure function of s: the leader runs it after
// every change and applies what it returns as one OpAssign command.
func Schedule(s *State) map[string][]string {
	free := s.upNodeSlots()
	names := s.runningNames()
	want := map[string][]string{}
	for _, name := range names {
		p := s.Deployments[name].Parallelism()
		if node := wholeOn(s.Assignments[name], p); node != "" && free[node] >= p {
			free[node] -= p
			want[name] = slices.Clone(s.Assignments[name])
		}
	}
	for _, name := range names {
		if want[name] != nil {
			continue
		}
		p := s.Deployments[name].Parallelism()
		a := make([]string, p)
		if node := mostFree(free, p); node != "" {
			free[node] -= p
			for i := range a {
				a[i] = node
			}
		}
		want[name] = a
	}

	changes := map[string][]string{}
	for name := range s.Assignments {
		if _, run := want[name]; !run {
			changes[name] = nil
		}
	}
	for name, a := range want {
		if old, has := s.Assignments[name]; !has || !slices.Equal(a, old) {
			changes[name] = a
		}
	}
	return changes
}

// Waiting says why the running deployment name has no node: no up node
// has its parallelism in free slots. It returns "" when the deployment is
// assigned, about to be (a node has room: the leader's next Schedule
// places it), not running, or unknown.
func (s *State) Waiting(name string) string {
	d := s.Deployments[name]
	if d == nil || d.Desired != Running || wholeOn(s.Assignments[name], d.Parallelism()) != "" {
		return ""
	}
	p := d.Parallelism()
	free := s.upNodeSlots()
	for other, a := range s.Assignments {
		for _, id := range a {
			if _, up := free[id]; up && other != name {
				free[id]--
			}
		}
	}
	best, most, largest := "", 0, 0
	for _, id := range sortedKeys(free) {
		if free[id] > most {
			best, most = id, free[id]
		}
		largest = max(largest, s.Nodes[id].Slots)
	}
	switch {
	case mostFree(free, p) != "":
		return ""
	case len(free) == 0:
		return fmt.Sprintf("deployment %q waits: no node is up", name)
	case p > largest:
		return fmt.Sprintf("deployment %q waits: it runs whole on one node and needs %d slots; the largest up node has %d (a job does not yet run across nodes)",
			name, p, largest)
	case best == "":
		return fmt.Sprintf("deployment %q waits: it runs whole on one node and needs %d free slots; every up node's slots are in use", name, p)
	default: // most < p
		return fmt.Sprintf("deployment %q waits: it runs whole on one node and needs %d free slots; the most an up node has free is %d (%s)",
			name, p, most, best)
	}
}

// upNodeSlots returns the slots of each up node that has some.
func (s *State) upNodeSlots() map[string]int {
	free := map[string]int{}
	for id, n := range s.Nodes {
		if n.Up && n.Slots > 0 {
			free[id] = n.Slots
		}
	}
	return free
}

// runningNames returns the names of the deployments that should run, sorted.
func (s *State) runningNames() []string {
	var names []string
	for name, d := range s.Deployments {
		if d.Desired == Running {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// wholeOn returns the node that all of the p subtasks in a are assigned
// to, "" if they are not all on one node.
func wholeOn(a []string, p int) string {
	if len(a) != p || p == 0 || a[0] == "" {
		return ""
	}
	for _, id := range a[1:] {
		if id != a[0] {
			return ""
		}
	}
	return a[0]
}

// mostFree returns the node with the most free slots, at least p (ties:
// the lowest ID), "" if none has p.
func mostFree(free map[string]int, p int) string {
	best := ""
	for _, id := range sortedKeys(free) {
		if free[id] >= p && (best == "" || free[id] > free[best]) {
			best = id
		}
	}
	return best
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
