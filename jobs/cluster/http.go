package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

const (
	pathJoin  = "/v1/cluster/join"
	pathApply = "/v1/cluster/apply"
	pathNodes = "/v1/nodes"
	pathState = "/v1/cluster/state"
	pathIndex = "/v1/cluster/index"
)

type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// ClusterID is the id in the node's data directory, "" if none.
	ClusterID string `json:"cluster_id,omitempty"`
	// Protocol is the node's ProtocolVersion, Version its software's.
	Protocol int    `json:"protocol"`
	Version  string `json:"version,omitempty"`
}

// joinResponse is the leader's answer to a join it took.
type joinResponse struct {
	ClusterID string `json:"cluster_id"`
	Protocol  int    `json:"protocol"`
	Version   string `json:"version"`
}

// apiError is the body of a failed request: the message, and a code that
// names a sentinel error so that forwarding keeps errors.Is working.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// apiErrors are the sentinels that keep their kind across the API, each
// with its code and HTTP status. Other errors are 400, and those after
// which the leader may have changed 503 (the caller retries them).
var apiErrors = []struct {
	code   string
	err    error
	status int
}{
	{"no-deployment", ErrNoDeployment, http.StatusNotFound},
	{"no-node", ErrNoNode, http.StatusNotFound},
	{"no-leader", ErrNoLeader, http.StatusServiceUnavailable},
	{"other-cluster", ErrOtherCluster, http.StatusConflict},
	{"incompatible-version", ErrIncompatibleVersion, http.StatusConflict},
	{"not-enough-slots", ErrNotEnoughSlots, http.StatusConflict},
	{"not-assigned", ErrNotAssigned, http.StatusConflict},
}

// remoteError is an error another node reported, wrapping its sentinel.
type remoteError struct {
	msg string
	is  error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.is }

func decodeError(e apiError) error {
	for _, a := range apiErrors {
		if a.code == e.Code {
			return &remoteError{msg: e.Error, is: a.err}
		}
	}
	return &remoteError{msg: e.Error}
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	var e apiError
	e.Error = err.Error()
	for _, a := range apiErrors {
		if errors.Is(err, a.err) {
			e.Code, status = a.code, a.status
			break
		}
	}
	if errors.As(err, new(errRetry)) {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}

// NodeStatus is one member as GET /v1/nodes lists it.
type NodeStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Slots    int    `json:"slots"`
	Used     int    `json:"used_slots"`
	Up       bool   `json:"up"`
	Since    string `json:"since,omitempty"` // RFC 3339
	Leader   bool   `json:"leader"`
}

// Nodes lists the members by ID, with the slots their assigned subtasks
// use and which one leads.
func (n *Node) Nodes() []NodeStatus {
	leader := n.Leader()
	var out []NodeStatus
	n.fsm.view(func(s *State) {
		used := map[string]int{}
		for _, a := range s.Assignments {
			for _, id := range a {
				used[id]++
			}
		}
		for _, m := range s.Nodes {
			st := NodeStatus{ID: m.ID, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr, Slots: m.Slots,
				Used: used[m.ID], Up: m.Up, Leader: m.ID == leader}
			if !m.Since.IsZero() {
				st.Since = m.Since.UTC().Format("2006-01-02T15:04:05.000Z07:00")
			}
			out = append(out, st)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Handler serves the node's part of the REST API:
//
//   - POST /v1/cluster/join {"id", "raft_addr", "cluster_id", "protocol",
//     "version"}: add a node (any member forwards it to the leader, which
//     refuses a node of another cluster or protocol with 409); the answer
//     is {"cluster_id", "protocol", "version"};
//   - POST /v1/cluster/apply: a msgpack Command forwarded by another node;
//     only the leader takes it;
//   - GET /v1/nodes: the members (NodeStatus);
//   - GET /v1/cluster/state: the replicated State as JSON.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathJoin, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			writeError(w, err)
			return
		}
		var j joinRequest
		if err := json.Unmarshal(body, &j); err != nil || j.ID == "" || j.RaftAddr == "" {
			writeError(w, fmt.Errorf("join: want {\"id\": ..., \"raft_addr\": ...}, got %q", body))
			return
		}
		var resp joinResponse
		err = n.retryLeader(r.Context(), func(api string) error {
			if api != "" {
				return n.post(r.Context(), api, pathJoin, body, &resp)
			}
			resp, err = n.admitJoin(j)
			return err
		})
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("POST "+pathApply, func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			writeError(w, err)
			return
		}
		var c Command
		if err := msgpack.Unmarshal(data, &c); err != nil {
			writeError(w, fmt.Errorf("apply: decode command: %w", err))
			return
		}
		if !n.IsLeader() {
			// The forwarder's view of the leader is stale: it retries.
			writeError(w, errRetry{fmt.Errorf("node %s is not the leader", n.cfg.NodeID)})
			return
		}
		if err := n.applyLocal(r.Context(), &c, data); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST "+pathIndex, func(w http.ResponseWriter, r *http.Request) {
		if !n.IsLeader() {
			writeError(w, errRetry{fmt.Errorf("node %s is not the leader", n.cfg.NodeID)})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(indexAnswer{Applied: n.raft.AppliedIndex()})
	})
	mux.HandleFunc("GET "+pathNodes, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.Nodes())
	})
	mux.HandleFunc("GET "+pathState, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.State())
	})
	return mux
}
