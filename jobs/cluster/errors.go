package cluster

import "errors"

var (
	// ErrNoDeployment: the command names a deployment the cluster does not have.
	ErrNoDeployment = errors.New("cluster: no such deployment")
	// ErrNoNode: the command names a node that is not a member.
	ErrNoNode = errors.New("cluster: no such node")
	// ErrNoLeader: no leader was known before the context ended (an election
	// is running, or too few nodes are up for a quorum).
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrDataDirInUse: another node (in this process or another) holds the
	// data directory that Start was given.
	ErrDataDirInUse = errors.New("cluster: data directory in use")
	// ErrJoinUnreachable: the member named by Config.Join did not take the
	// join within Config.JoinTimeout (it refused connections, did not
	// answer, or knew no leader); the error names it and the last cause.
	ErrJoinUnreachable = errors.New("cluster: join address unreachable")
	// ErrOtherCluster: a node whose data directory belongs to another
	// cluster (another cluster id) asked to join.
	ErrOtherCluster = errors.New("cluster: node of another cluster")
	// ErrIncompatibleVersion: a node that speaks another ProtocolVersion
	// than the leader asked to join.
	ErrIncompatibleVersion = errors.New("cluster: incompatible version")
	// ErrNotEnoughSlots: a deployment asks for more subtasks (its
	// parallelism) than the up nodes have slots in all. It is refused
	// whole: the State keeps no trace of it.
	ErrNotEnoughSlots = errors.New("cluster: not enough slots")
	// ErrNotAssigned: a node recorded a checkpoint of a deployment that is
	// not (or no longer) assigned to it.
	ErrNotAssigned = errors.New("cluster: deployment not assigned to the node")
)
