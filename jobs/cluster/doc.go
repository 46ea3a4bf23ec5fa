// Package cluster is the control plane of several jobrunner nodes that run
// jobs together: a replicated State kept by hashicorp/raft (raft-boltdb for
// the log), the leader's scheduling of subtasks onto the nodes' slots,
// failure detection, and the executor that runs on each node what is
// assigned to it.
//
// Each node runs a Node: Start opens its data directory and starts a new
// cluster, joins one (Config.Join, the REST API address of any member), or
// rejoins with the state it has. The replicated State holds
//
//   - the deployments: a runner.Spec, the parallelism in it, and whether it
//     should run (Desired);
//   - the members: raft and API addresses, slots, and whether they are up;
//   - the assignment of each deployment's subtasks to nodes;
//   - the latest completed checkpoint of each deployment.
//
// The State changes only by Commands through the raft log, so every node
// holds the same one; reads (Node.State, Node.Nodes) are local. A write
// (Node.Apply) on a node that is not the leader is forwarded to the leader's
// API, so any node takes writes; errors keep their kind (errors.Is) across
// the forwarding.
//
// The leader reconciles after every change and a few times per NodeTimeout:
// a member whose heartbeats failed for NodeTimeout is marked down and one
// whose heartbeats resumed is marked up again, and the assignment is set to
// what Schedule gives. A deployment runs whole on one node (a job's
// subtasks do not yet exchange records across nodes): all its subtasks go
// to the up node with the most free slots that has room for all of them
// (ties: the lowest ID), stay there while that node is up, and move all
// together when it goes down. A deployment that fits no up node's free
// slots waits, unassigned, and State.Waiting says why. When the leader
// dies, raft elects another, which carries on from the same State.
//
// # Membership and bad input
//
// A cluster gets an id when its first node bootstraps it: the leader puts
// it in the State, and every member keeps it in its data directory (file
// cluster-id). A node that joins sends the id its directory holds, if any,
// and its ProtocolVersion; the leader refuses a node of another cluster
// (ErrOtherCluster) or of another protocol (ErrIncompatibleVersion), with
// an error naming both ids or both versions, which the refused node's
// Start returns. A node with an empty directory adopts the cluster's id.
// Nothing changes in the cluster for a refused node.
//
// A data directory is held by one node at a time, through a flock on its
// LOCK file that lasts the node's life: Start on a directory a running
// node holds, in this process or another, fails at once with
// ErrDataDirInUse, naming the directory and the holder's process.
//
// Start retries a join while the member at Config.Join refuses
// connections or knows no leader, for Config.JoinTimeout (5 s by default),
// then fails with ErrJoinUnreachable, naming the address and the last
// cause.
//
// A deployment whose parallelism exceeds the slots of the up nodes is
// refused with ErrNotEnoughSlots, naming it, its parallelism and the
// slots: the leader checks before the command enters the raft log, and
// every node checks again when it applies, so the State keeps no trace of
// it. The check counts the slots of all up nodes, not of the largest one:
// a deployment that fits the cluster but no single node, or not its free
// slots, is taken, and waits (State.Waiting) for a node with room, which
// for one larger than every node means until a node with more slots
// joins. A node that joins adds its slots once it has registered (so does
// the first node: until then a new cluster has no slots). ErrOtherCluster,
// ErrIncompatibleVersion, ErrNotEnoughSlots and ErrNotAssigned keep their
// kind (errors.Is) and text across the REST API, so a node that forwards a
// command or a join returns the leader's error; their HTTP status is 409
// (404 for ErrNoDeployment and ErrNoNode).
//
// Handler serves the node's REST endpoints (join, forwarded commands,
// GET /v1/nodes and GET /v1/cluster/state); the caller mounts it on the API
// server whose address it gave in Config.APIAddr.
//
// # Running the deployments
//
// An Executor on each node runs, through the node's runner (Runtime), the
// deployments assigned to that node, and cancels those that are no longer
// (moved, stopped, removed, or deployed again with a new spec). Their
// checkpoints go to storage that every node reaches: JetStreamStorage
// keeps each deployment's in a JetStream object store bucket of its own
// (BucketName). When a checkpoint completes, the node records it in the
// State (OpCheckpoint), which takes it only from the node the deployment
// is assigned to (ErrNotAssigned otherwise, and that checkpoint fails on
// that node, so its sinks do not commit it).
//
// When a node dies, the leader marks it down after NodeTimeout and moves
// its deployments whole to other nodes, whose executors start them from
// the latest completed checkpoint in the storage. The storage's latest,
// not the State's, is the one: a manifest committed just before its node
// died may have had its output committed by two-phase sinks before the
// node recorded it, and going back to the State's older checkpoint would
// write that output twice. The State's checkpoint is a floor: a storage
// whose latest is older does not start the deployment
// (ErrCheckpointBehind). With exactly-once sinks (the JetStream sink,
// Postgres; the file sink only where every node writes to one shared file
// system), the output of a deployment that moved holds every record once.
//
// Executor.JobsHandler serves the jobs API (runner.PathJobs) for the
// whole cluster on any node: deploy (the deployment enters the State),
// list, status (answered by the node that runs it, with Status.Node, or
// WAITING with Status.Waiting, or STARTING with the error of a start that
// failed, such as a JetStream server that cannot be reached) and cancel
// (Desired Stopped). `jobrunner serve --node-id` wires all of it.
//
// What does not run yet (issue 14): one job's subtasks on several nodes.
// A deployment runs whole on one node, so it is no larger than the
// largest node, until exchanges between nodes (internal/netexchange) are
// part of a job's dataflow (a rescale, Executor.JobsHandler, restarts it
// whole at the new parallelism, on one node).
//
// A node cut off from the leader (a partition, not a crash) fences
// itself (see Executor): it cancels what it runs after half the
// NodeTimeout without a leader's contact, before the majority moves the
// deployments. The fence rests on the two clocks running at about the
// same rate. Back in contact, and at start, a node first catches up: it
// runs nothing until it has applied every raft entry the leader had
// applied when asked, so a State the cluster has left behind (a deployment
// moved away during the partition) never starts anything. Tests cut a node
// off by closing and refusing all its raft and API connections, both
// ways, while its NATS connections live on.
//
// A Node's methods are safe for concurrent use. Raft applies commands on its
// own goroutine; a Node runs three more (heartbeat observations, the
// leader's reconciliation, and its registration) until Close. An Executor
// runs one goroutine (it watches the State and starts and cancels
// deployments) until Close; its JobsHandler serves from the API server's.
package cluster
