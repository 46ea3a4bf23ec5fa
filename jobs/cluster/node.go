package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/vmihailenco/msgpack/v5"
	"go.etcd.io/bbolt"
)

// Config configures one node.
type Config struct {
	// NodeID names the node; it must stay the same across restarts.
	NodeID string
	// RaftAddr is the host:port the raft transport listens on and that
	// other nodes dial ("127.0.0.1:0" picks a free port; the node's
	// RaftAddr method tells which).
	RaftAddr string
	// APIAddr is the host:port of this node's REST API (Handler), which
	// other nodes call to join and to forward commands to the leader.
	APIAddr string
	// DataDir holds the raft log, its stable store and snapshots. A node
	// that finds state there rejoins with it; one that finds none either
	// joins (Join) or starts a new cluster of one. One node at a time holds
	// it: Start refuses a directory that a running node holds, in this
	// process or another (ErrDataDirInUse).
	DataDir string
	// Slots is how many subtasks the node runs at most; 0 means 1.
	Slots int
	// Join is the API address of a member of the cluster to join; empty
	// starts a new cluster, or rejoins with the state in DataDir at the
	// same RaftAddr. A node restarted at another RaftAddr needs Join, so
	// that the leader learns its new address.
	Join string
	// JoinTimeout bounds how long Start tries to join through Join: it
	// retries while the member refuses connections or knows no leader, and
	// then fails with ErrJoinUnreachable; 0 means 5 s.
	JoinTimeout time.Duration
	// NodeTimeout is how long the leader waits for heartbeats of a node
	// before it marks it down and moves its subtasks; 0 means 5 s.
	NodeTimeout time.Duration
	// HeartbeatTimeout and ElectionTimeout are raft's (0: raft's defaults,
	// 1 s each); tests lower them.
	HeartbeatTimeout, ElectionTimeout time.Duration
	// Logger gets the node's events; nil means slog.Default(). Raft's own
	// log goes to it at WARN and above.
	Logger *slog.Logger

	// protocol is the ProtocolVersion the node speaks; 0 means
	// ProtocolVersion (tests set others).
	protocol int
	// network, when set, carries the node's raft traffic and the calls it
	// makes to other nodes' APIs (tests cut a node off through it).
	network *network
}

// network is where a node listens for raft and how it dials raft peers and
// other nodes' APIs.
type network struct {
	listen func(addr string) (net.Listener, error)
	dial   func(ctx context.Context, addr string) (net.Conn, error)
}

// streamLayer is a raft.StreamLayer over a network.
type streamLayer struct {
	net.Listener
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(addr))
}

// Node is one member of a cluster. Its methods are safe for concurrent use.
//
// Every node holds the replicated State and answers reads from it. Writes
// (Apply) go through the leader: a node that is not the leader forwards them
// to the leader's REST API. The leader also watches the members' heartbeats,
// marks a node down when they stop for NodeTimeout and up when they come
// back, and keeps the assignment of subtasks to nodes as Schedule computes
// it, after every change.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *fsm
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	lock  *os.File // the data directory's lock, held until Close
	obsCh chan raft.Observation
	obs   *raft.Observer
	http  *http.Client

	mu        sync.Mutex
	failed    map[raft.ServerID]time.Time // leader: peers whose heartbeats fail, by last contact
	clusterID string                      // the one in DataDir, "" while it has none

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Start starts a node: it opens DataDir, starts raft, and starts a new
// cluster, rejoins, or joins cfg.Join. It returns once the node runs; it
// registers itself as a member (with its API address and slots) in the
// background, as soon as a leader is known. The caller serves Handler on
// APIAddr.
//
// Start fails with ErrDataDirInUse when a running node holds DataDir, with
// ErrJoinUnreachable when the member at Join does not take the join within
// JoinTimeout, and with ErrOtherCluster or ErrIncompatibleVersion when the
// leader refuses the join; the node is then stopped and DataDir let go.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: no node ID")
	}
	if cfg.RaftAddr == "" || cfg.APIAddr == "" {
		return nil, fmt.Errorf("cluster: node %q: raft address and API address are required", cfg.NodeID)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("cluster: node %q: no data directory", cfg.NodeID)
	}
	if cfg.Slots < 0 {
		return nil, fmt.Errorf("cluster: node %q: %d slots", cfg.NodeID, cfg.Slots)
	}
	cfg.Slots = max(cfg.Slots, 1)
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = 5 * time.Second
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 5 * time.Second
	}
	if cfg.protocol == 0 {
		cfg.protocol = ProtocolVersion
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: node %q: data directory: %w", cfg.NodeID, err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), fsm: newFSM(),
		http: &http.Client{Timeout: 10 * time.Second}, failed: map[raft.ServerID]time.Time{}, stop: make(chan struct{})}
	if cfg.network != nil {
		dial := cfg.network.dial
		n.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}
	}
	var err error
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()
	if n.clusterID, err = readClusterID(cfg.DataDir); err != nil {
		return nil, err
	}
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: boltOptions()})
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: raft store in %s: %w", cfg.NodeID, cfg.DataDir, err)
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n.log}})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: snapshot store: %w", cfg.NodeID, err)
	}
	if cfg.network == nil {
		n.trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, 3, 10*time.Second, hl)
	} else {
		var ln net.Listener
		if ln, err = cfg.network.listen(cfg.RaftAddr); err == nil {
			n.trans = raft.NewNetworkTransportWithLogger(&streamLayer{Listener: ln, dial: cfg.network.dial}, 3, 10*time.Second, hl)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: raft transport on %s: %w", cfg.NodeID, cfg.RaftAddr, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout, rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout, cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	has, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: read raft state: %w", cfg.NodeID, err)
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, n.store, n.store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: node %q: start raft: %w", cfg.NodeID, err)
	}
	n.obsCh = make(chan raft.Observation, 64)
	n.obs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.obs)
	switch {
	case !has && cfg.Join == "":
		if n.clusterID == "" {
			n.clusterID = newClusterID()
			if err := writeClusterID(cfg.DataDir, n.clusterID); err != nil {
				n.shutdownRaft()
				return nil, err
			}
		}
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr()}}}
		if err := n.raft.BootstrapCluster(boot).Error(); err != nil {
			n.shutdownRaft()
			return nil, fmt.Errorf("cluster: node %q: bootstrap: %w", cfg.NodeID, err)
		}
	case cfg.Join != "":
		// A new node joins; one with state rejoins, which updates its
		// address in the raft configuration if it changed.
		id, err := n.join(ctx)
		if err == nil && n.clusterID == "" && id != "" {
			// A new node adopts the id of the cluster it joined.
			n.clusterID = id
			err = writeClusterID(cfg.DataDir, id)
		}
		if err != nil {
			n.shutdownRaft()
			return nil, err
		}
	}
	ok = true
	n.wg.Add(2)
	go n.watchHeartbeats()
	go n.lead()
	n.wg.Add(1)
	go n.register()
	return n, nil
}

// member is the node's record in State.
func (n *Node) member() *Member {
	return &Member{ID: n.cfg.NodeID, RaftAddr: string(n.trans.LocalAddr()), APIAddr: n.cfg.APIAddr, Slots: n.cfg.Slots}
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr returns the address the raft transport listens on.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether the node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// leaderContact is how long the node has been out of contact with a
// leader: 0 on the leader (which steps down when it loses the majority,
// raft's LeaderLeaseTimeout), else the time since a leader last reached
// it (raft's LastContact); the node's whole life if none ever did.
func (n *Node) leaderContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(last)
}

// indexAnswer is the leader's answer to pathIndex.
type indexAnswer struct {
	Applied uint64 `json:"applied"`
}

// catchUp waits until the node has applied every entry the leader had
// applied when asked. A node back in contact with a leader after a fence,
// or restarted, holds a State the cluster may have left behind: without
// this it would run, for a moment, a deployment moved away meanwhile.
func (n *Node) catchUp(ctx context.Context) error {
	var idx indexAnswer
	err := n.retryLeader(ctx, func(api string) error {
		if api == "" {
			idx.Applied = 0 // this node leads: its State is the cluster's
			return nil
		}
		return n.post(ctx, api, pathIndex, nil, &idx)
	})
	if err != nil {
		return err
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n.raft.AppliedIndex() < idx.Applied {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: node %s applied entry %d of the leader's %d: %w", n.cfg.NodeID, n.raft.AppliedIndex(), idx.Applied, ctx.Err())
		case <-n.stop:
			return fmt.Errorf("cluster: node %s is closed", n.cfg.NodeID)
		case <-t.C:
		}
	}
	return nil
}

// Leader returns the ID of the leader as the node knows it, "" if none.
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// State returns a copy of the replicated state as this node has applied it.
func (n *Node) State() *State {
	var c *State
	n.fsm.view(func(s *State) { c = s.Clone() })
	return c
}

// Watch returns a channel that receives a value (without blocking the
// node: at most one is pending) after each change of the node's State, and
// a function that stops it.
func (n *Node) Watch() (<-chan struct{}, func()) {
	w := &watcher{ch: make(chan struct{}, 1)}
	n.fsm.watch.Store(w, struct{}{})
	return w.ch, func() { n.fsm.watch.Delete(w) }
}

// Apply proposes c and waits until it applied: on the leader through raft,
// on any other node by forwarding it to the leader's API. It returns the
// command's error (ErrNoDeployment and the like), or an error wrapping
// ErrNoLeader when no leader was known before ctx ended.
func (n *Node) Apply(ctx context.Context, c *Command) error {
	data, err := msgpack.Marshal(c)
	if err != nil {
		return fmt.Errorf("cluster: encode %s command: %w", c.Op, err)
	}
	return n.retryLeader(ctx, func(leaderAPI string) error {
		if leaderAPI == "" {
			return n.applyLocal(ctx, c, data)
		}
		return n.post(ctx, leaderAPI, pathApply, data, nil)
	})
}

// applyLocal applies a command (c, encoded as data) on the leader. A
// command that the state refuses now (a deployment larger than the
// cluster) is refused before it reaches the raft log; the same check runs
// again when it applies, against the state of that moment.
func (n *Node) applyLocal(ctx context.Context, c *Command, data []byte) error {
	var err error
	n.fsm.view(func(s *State) { err = s.admit(c) })
	if err != nil {
		return err
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errRetry{err}
		}
		return fmt.Errorf("cluster: apply: %w", err)
	}
	if err, _ := f.Response().(error); err != nil {
		return err
	}
	return nil
}

// errRetry marks an error after which the leader may have changed.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// retryLeader calls fn with the leader's API address ("" when this node is
// the leader) until it succeeds, fails for a reason other than the leader,
// or ctx ends.
func (n *Node) retryLeader(ctx context.Context, fn func(leaderAPI string) error) error {
	wait := 20 * time.Millisecond
	var last error
	for {
		api, err := n.leaderAPI()
		if err == nil {
			err = fn(api)
			var r errRetry
			if !errors.As(err, &r) {
				return err
			}
		}
		last = err
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (node %s): %v; last: %v", ErrNoLeader, n.cfg.NodeID, ctx.Err(), last)
		case <-n.stop:
			t.Stop()
			return fmt.Errorf("cluster: node %s is closed", n.cfg.NodeID)
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// leaderAPI returns the leader's API address, "" if this node leads.
func (n *Node) leaderAPI() (string, error) {
	if n.IsLeader() {
		return "", nil
	}
	id := n.Leader()
	if id == "" {
		return "", errRetry{errors.New("no leader elected yet")}
	}
	var api string
	n.fsm.view(func(s *State) {
		if m := s.Nodes[id]; m != nil {
			api = m.APIAddr
		}
	})
	if api == "" {
		return "", errRetry{fmt.Errorf("leader %s has not registered its API address yet", id)}
	}
	return api, nil
}

// register records the node as a member, retrying until a leader takes it.
func (n *Node) register() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-n.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer cancel()
	if err := n.Apply(ctx, &Command{Op: OpAddNode, Node: n.member()}); err != nil && ctx.Err() == nil {
		n.log.Error("cluster: register node", "err", err)
	}
}

// join asks the member at cfg.Join to add this node as a voter, and
// returns the cluster's id. It sends the node's cluster id (if its data
// directory has one) and protocol, which the leader checks (admitJoin). It
// retries what may pass (connection errors, no leader yet) until
// cfg.JoinTimeout.
func (n *Node) join(ctx context.Context) (string, error) {
	data, err := json.Marshal(joinRequest{ID: n.cfg.NodeID, RaftAddr: string(n.trans.LocalAddr()),
		ClusterID: n.clusterID, Protocol: n.cfg.protocol, Version: softwareVersion()})
	if err != nil {
		return "", err
	}
	jctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	var last error
	for {
		var resp joinResponse
		err := n.post(jctx, n.cfg.Join, pathJoin, data, &resp)
		if err == nil {
			return resp.ClusterID, nil
		}
		if !errors.As(err, new(errRetry)) {
			if errors.Is(err, ErrOtherCluster) || errors.Is(err, ErrIncompatibleVersion) {
				return "", fmt.Errorf("%w (joining through %s)", err, n.cfg.Join)
			}
			return "", fmt.Errorf("cluster: node %q: join %s: %w", n.cfg.NodeID, n.cfg.Join, err)
		}
		// An attempt cut short by the deadline says less than the one
		// before it.
		if last == nil || jctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(wait)
		select {
		case <-jctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return "", fmt.Errorf("cluster: node %q: join %s: %w (last: %v)", n.cfg.NodeID, n.cfg.Join, ctx.Err(), last)
			}
			return "", fmt.Errorf("%w: node %q could not join through %s within %s: %v",
				ErrJoinUnreachable, n.cfg.NodeID, n.cfg.Join, n.cfg.JoinTimeout, last)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// addVoter adds a node to the raft configuration (on the leader).
func (n *Node) addVoter(id, addr string) error {
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errRetry{err}
		}
		return fmt.Errorf("add voter %s at %s: %w", id, addr, err)
	}
	return nil
}

// post sends a request to another node's API and decodes its JSON answer
// into out, unless out is nil. Errors the other node reports come back as
// they were (see writeError); connection errors and "not the leader" are
// errRetry.
func (n *Node) post(ctx context.Context, api, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+api+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return errRetry{fmt.Errorf("call %s: %w", api, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				return fmt.Errorf("call %s: bad answer: %w", api, err)
			}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	var e apiError
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(msg, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(msg))
	}
	err = decodeError(e)
	if resp.StatusCode == http.StatusServiceUnavailable {
		return errRetry{err}
	}
	return err
}

// watchHeartbeats records, on the leader, which peers' heartbeats fail.
func (n *Node) watchHeartbeats() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.obsCh:
			n.mu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := n.failed[d.PeerID]; !ok {
					n.failed[d.PeerID] = d.LastContact
				}
			case raft.ResumedHeartbeatObservation:
				delete(n.failed, d.PeerID)
			case raft.LeaderObservation:
				clear(n.failed) // a new term: the new leader's own view starts now
			}
			n.mu.Unlock()
			n.fsm.notify()
		}
	}
}

// lead reconciles while the node is the leader: after every change of the
// state and every NodeTimeout/4, it marks nodes down or up and applies the
// assignment Schedule gives.
func (n *Node) lead() {
	defer n.wg.Done()
	tick := time.NewTicker(max(n.cfg.NodeTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-n.fsm.changed:
		}
		n.adoptClusterID()
		if !n.IsLeader() {
			continue
		}
		if err := n.reconcile(); err != nil && !errors.As(err, new(errRetry)) {
			n.log.Warn("cluster: reconcile", "err", err)
		}
	}
}

func (n *Node) reconcile() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.NodeTimeout)
	defer cancel()
	conf := n.raft.GetConfiguration()
	if err := conf.Error(); err != nil {
		return errRetry{err}
	}
	voters := map[string]bool{}
	for _, s := range conf.Configuration().Servers {
		voters[string(s.ID)] = true
	}
	now := time.Now()
	var changes []*Command
	if c := n.ensureClusterID(); c != nil {
		changes = append(changes, c)
	}
	n.mu.Lock()
	n.fsm.view(func(s *State) {
		for id, m := range s.Nodes {
			last, failing := n.failed[raft.ServerID(id)]
			down := id != n.cfg.NodeID && (!voters[id] || failing && now.Sub(last) > n.cfg.NodeTimeout)
			if m.Up == down {
				changes = append(changes, &Command{Op: OpNodeUp, Name: id, Up: !down, At: now})
			}
		}
	})
	n.mu.Unlock()
	for _, c := range changes {
		switch {
		case c.Op == OpClusterID:
			n.log.Info("cluster: cluster id", "id", c.Name)
		case c.Up:
			n.log.Info("cluster: node up", "member", c.Name)
		default:
			n.log.Warn("cluster: node down: its subtasks move", "member", c.Name)
		}
		if err := n.Apply(ctx, c); err != nil {
			return err
		}
	}
	var assign map[string][]string
	n.fsm.view(func(s *State) { assign = Schedule(s) })
	if len(assign) == 0 {
		return nil
	}
	return n.Apply(ctx, &Command{Op: OpAssign, Assignments: assign})
}

// Close stops the node without leaving the cluster: to the others it is a
// node that went down (a restart with the same DataDir rejoins).
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		close(n.stop)
		err = n.shutdownRaft()
		n.wg.Wait()
		n.closeStores()
	})
	return err
}

func (n *Node) shutdownRaft() error {
	if n.raft == nil {
		return nil
	}
	n.raft.DeregisterObserver(n.obs)
	return n.raft.Shutdown().Error()
}

func (n *Node) closeStores() {
	if n.trans != nil {
		// Close the connections this node dialed too (Close stops only
		// the listener): the handlers reading them on other nodes end.
		n.trans.CloseStreams()
		_ = n.trans.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.lock != nil {
		_ = n.lock.Close() // releases the flock, last: the stores are closed
	}
}

// slogWriter turns hclog's lines into slog records.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// boltOptions makes a raft store that something other than a node holds
// open fail after a second, instead of waiting for it forever (nodes are
// kept apart by the data directory's lock before bbolt is reached).
func boltOptions() *bbolt.Options { return &bbolt.Options{Timeout: time.Second} }
