package cluster

import (
	"slices"
	"sort"
)

// Schedule returns the assignments that s should have and does not: for
// each running deployment, a node for each subtask; nil for a deployment
// that should run nowhere (stopped) and still has an assignment. Deployments
// whose assignment is right are left out, so an empty result means nothing
// to do.
//
// It is sticky and balanced: a subtask stays on its node while that node is
// up and within its slots, and a subtask without a node goes to the up node
// with the most free slots (ties: the lowest ID). A subtask for which no up
// node has a free slot gets "" and waits for one. Schedule is a pure
// function of s: the leader runs it after every change and applies what it
// returns as one OpAssign command.
func Schedule(s *State) map[string][]string {
	up := make([]*Member, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		if n.Up && n.Slots > 0 {
			up = append(up, n)
		}
	}
	sort.Slice(up, func(i, j int) bool { return up[i].ID < up[j].ID })
	used := make(map[string]int, len(up))
	slots := make(map[string]int, len(up))
	for _, n := range up {
		slots[n.ID] = n.Slots
	}
	names := make([]string, 0, len(s.Deployments))
	for name := range s.Deployments {
		names = append(names, name)
	}
	sort.Strings(names)

	want := map[string][]string{}
	// First keep what may stay, over all deployments, so that a change in
	// one deployment never moves another's subtasks.
	for _, name := range names {
		d := s.Deployments[name]
		if d.Desired != Running {
			continue
		}
		a := make([]string, d.Parallelism())
		for i, node := range s.Assignments[name] {
			if i < len(a) && node != "" && used[node] < slots[node] {
				a[i] = node
				used[node]++
			}
		}
		want[name] = a
	}
	for _, name := range names {
		a := want[name]
		for i := range a {
			if a[i] != "" {
				continue
			}
			var best *Member
			for _, n := range up {
				if free := slots[n.ID] - used[n.ID]; free > 0 && (best == nil || free > slots[best.ID]-used[best.ID]) {
					best = n
				}
			}
			if best == nil {
				break // no free slot anywhere: the rest wait
			}
			a[i] = best.ID
			used[best.ID]++
		}
	}

	changes := map[string][]string{}
	for _, name := range names {
		a, run := want[name]
		old, has := s.Assignments[name]
		switch {
		case !run && has:
			changes[name] = nil
		case run && (!has || !slices.Equal(a, old)):
			changes[name] = a
		}
	}
	return changes
}
