package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// ProtocolVersion is the version of what nodes say to each other: the
// REST join and apply calls and the Commands of the raft log. A node joins
// only a cluster whose leader speaks the same one (ErrIncompatibleVersion);
// it changes when a change would make old and new nodes disagree. 2: a
// checkpoint is recorded only by the node its deployment is assigned to
// (Command.From), and a deployment is placed whole on one node.
const ProtocolVersion = 2

// clusterIDFile holds, in a node's data directory, the id of the cluster
// the directory belongs to.
const clusterIDFile = "cluster-id"

// softwareVersion is the module version the binary was built from, for
// messages; "(devel)" when the build does not say.
func softwareVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// newClusterID returns a fresh cluster id: 16 random hex digits.
func newClusterID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// readClusterID returns the cluster id stored in dir, "" if there is none.
func readClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cluster: data directory %s: read cluster id: %w", dir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeClusterID stores id in dir, replacing the file whole.
func writeClusterID(dir, id string) error {
	path := filepath.Join(dir, clusterIDFile)
	if err := os.WriteFile(path+".tmp", []byte(id+"\n"), 0o644); err != nil {
		return fmt.Errorf("cluster: data directory %s: write cluster id: %w", dir, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("cluster: data directory %s: write cluster id: %w", dir, err)
	}
	return nil
}

// ClusterID returns the id of the node's cluster: the replicated one once
// applied, until then the one in the node's data directory ("" for a node
// whose directory predates cluster ids, until the leader sets one).
func (n *Node) ClusterID() string {
	if id := n.replicatedClusterID(); id != "" {
		return id
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.clusterID
}

// replicatedClusterID is the cluster id in the replicated State, "" until
// one is applied.
func (n *Node) replicatedClusterID() (id string) {
	n.fsm.view(func(s *State) { id = s.ClusterID })
	return id
}

// adoptClusterID stores the replicated cluster id in the data directory of
// a node that has none there yet (a node that joined before its directory
// got one, or one from before cluster ids).
func (n *Node) adoptClusterID() {
	id := n.replicatedClusterID()
	n.mu.Lock()
	defer n.mu.Unlock()
	if id == "" || n.clusterID != "" {
		return
	}
	if err := writeClusterID(n.cfg.DataDir, id); err != nil {
		n.log.Error("cluster: adopt the cluster id", "err", err)
		return
	}
	n.clusterID = id
}

// ensureClusterID makes the leader record a cluster id in the State if it
// has none: the one the bootstrapping node made, or, for a cluster from
// before cluster ids, a new one.
func (n *Node) ensureClusterID() *Command {
	if n.replicatedClusterID() != "" {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.clusterID == "" {
		id := newClusterID()
		if err := writeClusterID(n.cfg.DataDir, id); err != nil {
			n.log.Error("cluster: make a cluster id", "err", err)
			return nil
		}
		n.clusterID = id
	}
	return &Command{Op: OpClusterID, Name: n.clusterID}
}

// admitJoin checks, on the leader, that a node may join: it speaks the
// leader's protocol, and its data directory belongs to no other cluster.
func (n *Node) admitJoin(j joinRequest) (joinResponse, error) {
	resp := joinResponse{ClusterID: n.ClusterID(), Protocol: n.cfg.protocol, Version: softwareVersion()}
	if j.Protocol != n.cfg.protocol {
		if j.Version == "" {
			j.Version = "of an unknown version"
		}
		return resp, fmt.Errorf("%w: node %q runs sluice %s with cluster protocol %d, the leader %s runs sluice %s with cluster protocol %d",
			ErrIncompatibleVersion, j.ID, j.Version, j.Protocol, n.cfg.NodeID, resp.Version, n.cfg.protocol)
	}
	if resp.ClusterID == "" {
		return resp, errRetry{errors.New("the cluster has no id yet")}
	}
	if j.ClusterID != "" && j.ClusterID != resp.ClusterID {
		return resp, fmt.Errorf("%w: node %q has cluster id %s in its data directory, this cluster's id is %s",
			ErrOtherCluster, j.ID, j.ClusterID, resp.ClusterID)
	}
	return resp, n.addVoter(j.ID, j.RaftAddr)
}
