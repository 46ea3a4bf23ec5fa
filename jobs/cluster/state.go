package cluster

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sluicedata/sluice/jobs/runner"
)

// State is what the cluster replicates: every node holds the same State,
// changed only by commands applied through the raft log, in log order.
type State struct {
	// ClusterID names the cluster: made when it is bootstrapped, set once,
	// and kept in every member's data directory. A node whose directory
	// names another cluster cannot join.
	ClusterID string `msgpack:"cluster_id" json:"cluster_id"`
	// Deployments by name.
	Deployments map[string]*Deployment `msgpack:"deployments" json:"deployments"`
	// Nodes by ID: the members that registered, alive or not.
	Nodes map[string]*Member `msgpack:"nodes" json:"nodes"`
	// Assignments by deployment name: Assignments[d][i] is the node that
	// runs subtask i of every operator of deployment d (its key groups,
	// keygroup.RangeOf(i)), "" while no node has a free slot for it.
	Assignments map[string][]string `msgpack:"assignments" json:"assignments"`
	// Checkpoints by deployment name: the latest completed checkpoint.
	Checkpoints map[string]CheckpointRef `msgpack:"checkpoints" json:"checkpoints"`
}

// Desired says whether a deployment should run.
type Desired string

const (
	// Running: the leader assigns the deployment's subtasks to nodes.
	Running Desired = "running"
	// Stopped: the deployment keeps its spec and checkpoints but runs nowhere.
	Stopped Desired = "stopped"
)

// Deployment is a job deployed on the cluster.
type Deployment struct {
	Spec    runner.Spec `msgpack:"spec" json:"spec"`
	Desired Desired     `msgpack:"desired" json:"desired"`
	// Generation counts the changes of Spec and Desired: subtasks restart
	// when it changes.
	Generation uint64 `msgpack:"generation" json:"generation"`
	// Savepoint is, for a deployment stopped with a savepoint (or drained),
	// where that savepoint is; empty for one canceled, or running.
	Savepoint string `msgpack:"savepoint,omitempty" json:"savepoint,omitempty"`
}

// Parallelism is the deployment's parallelism, 1 when the spec says 0.
func (d *Deployment) Parallelism() int { return max(d.Spec.Parallelism, 1) }

// Member is a node of the cluster as the State records it.
type Member struct {
	ID string `msgpack:"id" json:"id"`
	// RaftAddr is its raft transport address, APIAddr its REST API's.
	RaftAddr string `msgpack:"raft_addr" json:"raft_addr"`
	APIAddr  string `msgpack:"api_addr" json:"api_addr"`
	// Slots is how many subtasks it runs at most.
	Slots int `msgpack:"slots" json:"slots"`
	// Up is false once the leader lost its heartbeats for longer than the
	// cluster's NodeTimeout; its subtasks then go to other nodes.
	Up bool `msgpack:"up" json:"up"`
	// Since is when Up last changed, by the leader's clock.
	Since time.Time `msgpack:"since" json:"since"`
}

// CheckpointRef names a completed checkpoint of a deployment in the
// cluster's shared checkpoint storage.
type CheckpointRef struct {
	ID       int64     `msgpack:"id" json:"id"`
	Location string    `msgpack:"location" json:"location"` // where the storage keeps the manifest
	At       time.Time `msgpack:"at" json:"at"`
}

func newState() *State {
	return &State{Deployments: map[string]*Deployment{}, Nodes: map[string]*Member{},
		Assignments: map[string][]string{}, Checkpoints: map[string]CheckpointRef{}}
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := newState()
	c.ClusterID = s.ClusterID
	for k, d := range s.Deployments {
		dc := *d
		dc.Spec.Params = maps.Clone(d.Spec.Params)
		c.Deployments[k] = &dc
	}
	for k, n := range s.Nodes {
		nc := *n
		c.Nodes[k] = &nc
	}
	for k, a := range s.Assignments {
		c.Assignments[k] = slices.Clone(a)
	}
	maps.Copy(c.Checkpoints, s.Checkpoints)
	return c
}

// fill makes the maps of a decoded State non-nil.
func (s *State) fill() {
	if s.Deployments == nil {
		s.Deployments = map[string]*Deployment{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*Member{}
	}
	if s.Assignments == nil {
		s.Assignments = map[string][]string{}
	}
	if s.Checkpoints == nil {
		s.Checkpoints = map[string]CheckpointRef{}
	}
}

// Op is a command's kind.
type Op string

const (
	OpDeploy     Op = "deploy"      // Deployment: add, or replace the spec of, Deployment.Spec.Name
	OpSetDesired Op = "set-desired" // Name, Desired, Savepoint
	OpRemove     Op = "remove"      // Name: the deployment and its assignment and checkpoint
	OpAddNode    Op = "add-node"    // Node: register or update a member
	OpNodeUp     Op = "node-up"     // Name (node ID), Up, At
	OpAssign     Op = "assign"      // Assignments: the deployments' new assignments
	OpCheckpoint Op = "checkpoint"  // Name, Checkpoint, From: a completed checkpoint, recorded by the node assigned
	OpClusterID  Op = "cluster-id"  // Name: the cluster's id, set once
)

// Command is one change of the State, as the raft log carries it.
type Command struct {
	Op          Op                  `msgpack:"op" json:"op"`
	Name        string              `msgpack:"name,omitempty" json:"name,omitempty"`
	Deployment  *Deployment         `msgpack:"deployment,omitempty" json:"deployment,omitempty"`
	Desired     Desired             `msgpack:"desired,omitempty" json:"desired,omitempty"`
	Savepoint   string              `msgpack:"savepoint,omitempty" json:"savepoint,omitempty"` // OpSetDesired Stopped: the stop's savepoint
	Node        *Member             `msgpack:"node,omitempty" json:"node,omitempty"`
	Up          bool                `msgpack:"up,omitempty" json:"up,omitempty"`
	At          time.Time           `msgpack:"at,omitempty" json:"at,omitempty"`
	Assignments map[string][]string `msgpack:"assignments,omitempty" json:"assignments,omitempty"`
	Checkpoint  CheckpointRef       `msgpack:"checkpoint,omitempty" json:"checkpoint,omitempty"`
	// From is the node that proposes the command, for those only some
	// nodes may propose (OpCheckpoint: the node the deployment is
	// assigned to).
	From string `msgpack:"from,omitempty" json:"from,omitempty"`
}

// upSlots is the number of slots of the up nodes.
func (s *State) upSlots() int {
	k := 0
	for _, m := range s.Nodes {
		if m.Up {
			k += m.Slots
		}
	}
	return k
}

// admit refuses a command that would make a deployment run that is larger
// than the cluster: a deploy, or a set-desired running, of a deployment
// whose parallelism exceeds the up nodes' slots. Such a deployment would
// never run whole. A deployment that fits the cluster but not its free
// slots is taken, and its subtasks wait for slots (Schedule).
func (s *State) admit(c *Command) error {
	var d *Deployment
	switch {
	case c.Op == OpDeploy && c.Deployment != nil && c.Deployment.Spec.Job != "" && c.Deployment.Spec.Parallelism >= 0:
		d = c.Deployment
	case c.Op == OpSetDesired && c.Desired == Running:
		d = s.Deployments[c.Name]
	}
	if d == nil {
		return nil // nothing to run, or invalid: apply says why
	}
	name := d.Spec.Name
	if name == "" {
		name = d.Spec.Job
	}
	if p, slots := d.Parallelism(), s.upSlots(); p > slots {
		return fmt.Errorf("%w: deployment %q has parallelism %d, the cluster's up nodes have %d slots", ErrNotEnoughSlots, name, p, slots)
	}
	return nil
}

// apply changes s by c. It is deterministic: every node applies the same
// commands in the same order and gets the same State. An invalid command
// changes nothing and returns an error, which reaches the node that
// proposed it.
func (s *State) apply(c *Command) error {
	if err := s.admit(c); err != nil {
		return err
	}
	switch c.Op {
	case OpDeploy:
		d := c.Deployment
		if d == nil || d.Spec.Job == "" {
			return fmt.Errorf("deploy: no job named")
		}
		name := d.Spec.Name
		if name == "" {
			name = d.Spec.Job
		}
		if d.Spec.Parallelism < 0 {
			return fmt.Errorf("deploy %q: parallelism %d is negative", name, d.Spec.Parallelism)
		}
		nd := *d
		nd.Spec.Name = name
		nd.Spec.Params = maps.Clone(d.Spec.Params)
		if nd.Desired == "" {
			nd.Desired = Running
		}
		if nd.Desired != Running && nd.Desired != Stopped {
			return fmt.Errorf("deploy %q: desired state %q is neither %q nor %q", name, nd.Desired, Running, Stopped)
		}
		nd.Generation, nd.Savepoint = 1, ""
		if old := s.Deployments[name]; old != nil {
			nd.Generation = old.Generation + 1
		}
		s.Deployments[name] = &nd
	case OpSetDesired:
		d := s.Deployments[c.Name]
		if d == nil {
			return fmt.Errorf("%w: %q", ErrNoDeployment, c.Name)
		}
		if c.Desired != Running && c.Desired != Stopped {
			return fmt.Errorf("deployment %q: desired state %q is neither %q nor %q", c.Name, c.Desired, Running, Stopped)
		}
		if d.Desired != c.Desired {
			d.Desired = c.Desired
			d.Generation++
		}
		d.Savepoint = ""
		if c.Desired == Stopped {
			d.Savepoint = c.Savepoint
		}
	case OpRemove:
		if s.Deployments[c.Name] == nil {
			return fmt.Errorf("%w: %q", ErrNoDeployment, c.Name)
		}
		delete(s.Deployments, c.Name)
		delete(s.Assignments, c.Name)
		delete(s.Checkpoints, c.Name)
	case OpAddNode:
		n := c.Node
		if n == nil || n.ID == "" {
			return fmt.Errorf("add node: no node ID")
		}
		if n.Slots < 0 {
			return fmt.Errorf("add node %q: %d slots", n.ID, n.Slots)
		}
		nn := *n
		nn.Up = true
		s.Nodes[n.ID] = &nn
	case OpNodeUp:
		n := s.Nodes[c.Name]
		if n == nil {
			return fmt.Errorf("%w: %q", ErrNoNode, c.Name)
		}
		if n.Up != c.Up {
			n.Up, n.Since = c.Up, c.At
		}
	case OpAssign:
		for name, a := range c.Assignments {
			d := s.Deployments[name]
			if d == nil {
				continue // removed since the leader computed it
			}
			if a == nil {
				delete(s.Assignments, name)
				continue
			}
			if len(a) != d.Parallelism() {
				return fmt.Errorf("assign %q: %d subtasks, the deployment has %d", name, len(a), d.Parallelism())
			}
			s.Assignments[name] = slices.Clone(a)
		}
	case OpCheckpoint:
		if s.Deployments[c.Name] == nil {
			return fmt.Errorf("%w: %q", ErrNoDeployment, c.Name)
		}
		// A node that lost the deployment (it was down, or cut off, and
		// the deployment moved) may still complete a checkpoint: it must
		// not become the one the new node is held to.
		if c.From == "" || !slices.Contains(s.Assignments[c.Name], c.From) {
			return fmt.Errorf("%w: node %q records checkpoint %d of deployment %q, which is assigned to %v",
				ErrNotAssigned, c.From, c.Checkpoint.ID, c.Name, s.Assignments[c.Name])
		}
		if old, ok := s.Checkpoints[c.Name]; ok && old.ID >= c.Checkpoint.ID {
			return nil // an older one reported late: the latest stays
		}
		s.Checkpoints[c.Name] = c.Checkpoint
	case OpClusterID:
		if c.Name == "" {
			return fmt.Errorf("cluster id: empty")
		}
		if s.ClusterID != "" && s.ClusterID != c.Name {
			return fmt.Errorf("cluster id: the cluster's id is %s, not %s", s.ClusterID, c.Name)
		}
		s.ClusterID = c.Name
	default:
		return fmt.Errorf("unknown command %q", c.Op)
	}
	return nil
}
