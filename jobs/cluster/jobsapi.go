package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/sluicedata/sluice/jobs/runner"
)

// States of a cluster deployment that runs on no node, in runner.Status
// (the others are the runner's, from the node that runs it).
const (
	// StateWaiting: no up node has room for it (Status.Waiting says why).
	StateWaiting = "WAITING"
	// StateStarting: assigned to a node that has not started it yet (or
	// whose start failed: Status.Error says why, and it is tried again).
	StateStarting = "STARTING"
)

// forwardedHeader marks a status request one node forwarded to another,
// which answers it from what it knows without forwarding it again.
const forwardedHeader = "X-Sluice-Forwarded"

// JobsHandler serves the jobs part of the REST API (runner.PathJobs) for
// the whole cluster, on any node:
//
//	GET  /v1/jobs                  every deployment's status
//	POST /v1/jobs                  deploy a runner.Spec on the cluster; 201 with its status
//	GET  /v1/jobs/{name}           a deployment's status
//	POST /v1/jobs/{name}/cancel    set it to Stopped; it is canceled where it runs
//	POST /v1/jobs/{name}/stop      stop it drained or with a savepoint (runner.StopRequest), then set it to Stopped
//	POST /v1/jobs/{name}/savepoint take a savepoint (runner.SavepointRequest)
//	GET  /v1/jobs/{name}/checkpoints its completed checkpoints, in the cluster's storage
//	POST /v1/jobs/{name}/rescale   stop it with a savepoint and deploy it again at another parallelism (runner.RescaleRequest)
//
// A status comes from the node the deployment is assigned to (the request
// is forwarded to it), with Status.Node naming it; a deployment on no node
// is WAITING (Status.Waiting says why) and one that was canceled
// CANCELED. A deploy is checked (runner.Runtime.Check) and refused (409)
// while a deployment of that name should run; its checkpoints go to the
// cluster's storage, so a spec naming a checkpoint directory is refused.
//
// Stop, savepoint, checkpoints and rescale are served by the node that runs the
// deployment (the request is forwarded to it; one for a deployment that
// runs on no node is refused with 409). A stop with no directory puts its
// savepoint in the cluster's storage, where the deployment's checkpoints
// are: deploying it again, on any node, resumes from it, and its status is
// STOPPED with Status.Savepoint naming it. A savepoint, and a stop given
// a directory, write to a directory on the file system of the node that
// runs the deployment (Status.Node, SavepointResult.Path): a directory
// that node shares with the others, for a later --from-savepoint.
func (e *Executor) JobsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+runner.PathJobs, func(w http.ResponseWriter, r *http.Request) {
		s := e.node.State()
		names := make([]string, 0, len(s.Deployments))
		for name := range s.Deployments {
			names = append(names, name)
		}
		sort.Strings(names)
		out := make([]runner.Status, 0, len(names))
		for _, name := range names {
			if st, err := e.status(r.Context(), name); err == nil {
				out = append(out, st)
			}
		}
		runner.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+runner.PathJobs, func(w http.ResponseWriter, r *http.Request) {
		var spec runner.Spec
		if !runner.ReadJSON(w, r, &spec) {
			return
		}
		st, err := e.deploy(r.Context(), spec)
		if err != nil {
			writeJobsError(w, err)
			return
		}
		runner.WriteJSON(w, http.StatusCreated, st)
	})
	mux.HandleFunc("GET "+runner.PathJobs+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if r.Header.Get(forwardedHeader) != "" {
			// Another node sees the deployment assigned here; this node's
			// view may be older. Only a deployment running here is
			// answered: otherwise the other node answers from its view.
			if dep := e.runningHere(name); dep != nil {
				st := dep.Status()
				st.Node = e.node.ID()
				runner.WriteJSON(w, http.StatusOK, st)
				return
			}
			runner.WriteJSON(w, http.StatusMisdirectedRequest, runner.ErrorBody{Error: fmt.Sprintf("deployment %q does not run on node %s", name, e.node.ID())})
			return
		}
		st, err := e.status(r.Context(), name)
		if err != nil {
			writeJobsError(w, err)
			return
		}
		runner.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+runner.PathJobs+"/{name}/cancel", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := e.node.Apply(ctx, &Command{Op: OpSetDesired, Name: name, Desired: Stopped}); err != nil {
			writeJobsError(w, err)
			return
		}
		e.await(ctx, func(s *State) bool { d := s.Deployments[name]; return d == nil || d.Desired == Stopped })
		st, err := e.status(ctx, name)
		if err != nil {
			writeJobsError(w, err)
			return
		}
		runner.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+runner.PathJobs+"/{name}/stop", func(w http.ResponseWriter, r *http.Request) {
		var req runner.StopRequest
		e.onRunningNode(w, r, &req, func(ctx context.Context, name string) (any, error) {
			return e.stopHere(ctx, name, req)
		})
	})
	mux.HandleFunc("POST "+runner.PathJobs+"/{name}/rescale", func(w http.ResponseWriter, r *http.Request) {
		var req runner.RescaleRequest
		e.onRunningNode(w, r, &req, func(ctx context.Context, name string) (any, error) {
			return e.rescaleHere(ctx, name, req.Parallelism)
		})
	})
	mux.HandleFunc("POST "+runner.PathJobs+"/{name}/savepoint", func(w http.ResponseWriter, r *http.Request) {
		var req runner.SavepointRequest
		e.onRunningNode(w, r, &req, func(ctx context.Context, name string) (any, error) {
			return e.cfg.Runtime.Savepoint(ctx, name, req.Dir)
		})
	})
	mux.HandleFunc("GET "+runner.PathJobs+"/{name}/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		e.onRunningNode(w, r, nil, func(ctx context.Context, name string) (any, error) {
			return e.cfg.Runtime.Checkpoints(ctx, name)
		})
	})
	return mux
}

// stopTimeout bounds a stop: its savepoint, the job's end and the record
// of the stop in the State.
const stopTimeout = 2 * time.Minute

// stopHere stops deployment name, which runs on this node, and then sets
// it to Stopped, with the stop's savepoint, so that no node starts it
// again. Until then the executor does not restart it: it still holds the
// deployment, ended.
func (e *Executor) stopHere(ctx context.Context, name string, req runner.StopRequest) (runner.SavepointResult, error) {
	res, err := e.cfg.Runtime.Stop(ctx, name, req.Drain, req.Dir)
	if err != nil {
		return res, err
	}
	if err := e.node.Apply(ctx, &Command{Op: OpSetDesired, Name: name, Desired: Stopped, Savepoint: res.Path}); err != nil {
		return res, fmt.Errorf("deployment %q stopped with savepoint %d in %s, but the cluster could not record the stop (it may start the deployment again from that savepoint): %w",
			name, res.ID, res.Path, err)
	}
	e.await(ctx, func(s *State) bool { d := s.Deployments[name]; return d == nil || d.Desired == Stopped })
	return res, nil
}

// rescaleHere rescales deployment name, which runs on this node, to
// parallelism p: it stops it with a savepoint in the cluster's storage,
// then deploys its spec again at p, which the leader places (on any node)
// and which resumes from that savepoint, its keyed state split by key
// group over the new subtasks. A parallelism that no up node has room
// for (a deployment runs whole on one node) is refused before anything
// stops.
func (e *Executor) rescaleHere(ctx context.Context, name string, p int) (runner.Status, error) {
	s := e.node.State()
	d := s.Deployments[name]
	if d == nil {
		return runner.Status{}, fmt.Errorf("%w: %q", ErrNoDeployment, name)
	}
	if p < 1 {
		return runner.Status{}, fmt.Errorf("%w: deployment %q: rescale to parallelism %d: want at least 1", runner.ErrBadSpec, name, p)
	}
	spec := d.Spec
	spec.Parallelism = p
	spec, err := e.cfg.Runtime.Check(spec)
	if err != nil {
		return runner.Status{}, err
	}
	// Where it would go, as the leader places it now, with its own slots
	// free: a rescale the cluster has no room for does not stop it.
	after := s.Clone()
	after.Deployments[name].Spec = spec
	delete(after.Assignments, name)
	if why := after.Waiting(name); why != "" {
		return runner.Status{}, fmt.Errorf("%w: rescale to parallelism %d refused, nothing stopped: %s", ErrNotEnoughSlots, p, why)
	}
	res, err := e.cfg.Runtime.Stop(ctx, name, false, "")
	if err != nil {
		return runner.Status{}, err
	}
	if err := e.node.Apply(ctx, &Command{Op: OpDeploy, Deployment: &Deployment{Spec: spec, Desired: Running}}); err != nil {
		// Stopped, it must not look as if it ran: record the stop if
		// the cluster takes it.
		_ = e.node.Apply(ctx, &Command{Op: OpSetDesired, Name: name, Desired: Stopped, Savepoint: res.Path})
		return runner.Status{}, fmt.Errorf("deployment %q stopped with savepoint %d in %s for the rescale, but the cluster did not take it at parallelism %d (deploy it again to resume): %w",
			name, res.ID, res.Path, p, err)
	}
	e.await(ctx, func(s *State) bool {
		d := s.Deployments[name]
		return d != nil && d.Spec.Parallelism == p && (assignedTo(s, name) != "" || s.Waiting(name) != "")
	})
	return e.status(ctx, name)
}

// onRunningNode serves a request for the deployment named in its path on
// the node that runs it: here, with do, if it runs here; else it forwards
// the request to that node and relays the answer. body, if not nil, is
// where the request's JSON body is decoded before do runs.
func (e *Executor) onRunningNode(w http.ResponseWriter, r *http.Request, body any, do func(ctx context.Context, name string) (any, error)) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), stopTimeout)
	defer cancel()
	// fail answers code with an error that names the request.
	fail := func(code int, format string, args ...any) {
		runner.WriteJSON(w, code, runner.ErrorBody{Error: r.Method + " " + r.URL.Path + ": " + fmt.Sprintf(format, args...)})
	}
	// onNoNode answers that the deployment runs nowhere, with its state.
	onNoNode := func() {
		st, err := e.status(ctx, name)
		if err != nil {
			writeJobsError(w, err)
			return
		}
		fail(http.StatusConflict, "deployment %q is %s and runs on no node", name, st.State)
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	// A deployment the State no longer runs is not served, even while
	// the executor is still canceling it here.
	if d := e.node.State().Deployments[name]; d != nil && d.Desired != Running {
		onNoNode()
		return
	}
	if e.runningHere(name) != nil {
		if body != nil && len(bytes.TrimSpace(raw)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(body); err != nil {
				fail(http.StatusBadRequest, "body: %v", err)
				return
			}
		}
		out, err := do(ctx, name)
		if err != nil {
			writeJobsError(w, err)
			return
		}
		runner.WriteJSON(w, http.StatusOK, out)
		return
	}
	if r.Header.Get(forwardedHeader) != "" {
		runner.WriteJSON(w, http.StatusMisdirectedRequest, runner.ErrorBody{Error: fmt.Sprintf("deployment %q does not run on node %s", name, e.node.ID())})
		return
	}
	s := e.node.State()
	node := assignedTo(s, name)
	if s.Deployments[name] == nil || node == "" || node == e.node.ID() {
		onNoNode()
		return
	}
	m := s.Nodes[node]
	if m == nil || m.APIAddr == "" {
		fail(http.StatusServiceUnavailable, "deployment %q runs on node %s, which has registered no API address", name, node)
		return
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+m.APIAddr+r.URL.Path, bytes.NewReader(raw))
	if err != nil {
		writeJobsError(w, err)
		return
	}
	req.Header.Set(forwardedHeader, e.node.ID())
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.node.http.Do(req)
	if err != nil {
		fail(http.StatusBadGateway, "deployment %q runs on node %s at %s: %v", name, node, m.APIAddr, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusMisdirectedRequest {
		// That node does not run it: it has not started it yet, or it
		// ended it on a change of the State that has not reached this
		// node yet (a cancel through another node). Wait a little for
		// the change, then say which.
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		e.await(wctx, func(s *State) bool { return assignedTo(s, name) != node })
		wcancel()
		if assignedTo(e.node.State(), name) == "" {
			onNoNode()
			return
		}
		fail(http.StatusConflict, "deployment %q is assigned to node %s, which has not started it yet; try again", name, node)
		return
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// deploy adds spec to the cluster and returns its status once the leader
// placed it (or said why it waits), or after a few seconds.
func (e *Executor) deploy(ctx context.Context, spec runner.Spec) (runner.Status, error) {
	spec, err := e.cfg.Runtime.Check(spec)
	if err != nil {
		return runner.Status{}, err
	}
	if spec.CheckpointDir != "" {
		return runner.Status{}, fmt.Errorf("%w: checkpoint directory %s: a cluster deployment keeps its checkpoints in the cluster's shared storage", runner.ErrBadSpec, spec.CheckpointDir)
	}
	if d := e.node.State().Deployments[spec.Name]; d != nil && d.Desired == Running {
		return runner.Status{}, fmt.Errorf("%w: deployment %q is running on the cluster; cancel it first, or deploy under another name", runner.ErrConflict, spec.Name)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.node.Apply(actx, &Command{Op: OpDeploy, Deployment: &Deployment{Spec: spec, Desired: Running}}); err != nil {
		return runner.Status{}, err
	}
	e.await(ctx, func(s *State) bool { return assignedTo(s, spec.Name) != "" || s.Waiting(spec.Name) != "" })
	return e.status(ctx, spec.Name)
}

// await waits until cond holds on the node's State (a command applied on
// the leader reaches this node a little later), for a few seconds at
// most: then the State is as it is.
func (e *Executor) await(ctx context.Context, cond func(*State) bool) {
	changed, unwatch := e.node.Watch()
	defer unwatch()
	wait := time.NewTimer(5 * time.Second)
	defer wait.Stop()
	for !cond(e.node.State()) {
		select {
		case <-changed:
		case <-wait.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// status returns deployment name's status: from the local runtime if it
// runs here, else from the node it is assigned to.
func (e *Executor) status(ctx context.Context, name string) (runner.Status, error) {
	s := e.node.State()
	d := s.Deployments[name]
	if d == nil {
		names := make([]string, 0, len(s.Deployments))
		for n := range s.Deployments {
			names = append(names, n)
		}
		sort.Strings(names)
		return runner.Status{}, fmt.Errorf("%w %q (deployments: %s)", runner.ErrNotFound, name, strings.Join(names, ", "))
	}
	st := runner.Status{Name: name, Job: d.Spec.Job, Spec: d.Spec}
	node := assignedTo(s, name)
	st.Node = node
	switch {
	case d.Desired != Running && d.Savepoint != "":
		st.State, st.Savepoint = runner.StateStopped, d.Savepoint
	case d.Desired != Running:
		st.State = runner.StateCanceled
	case node == "":
		st.State, st.Waiting = StateWaiting, s.Waiting(name)
	case node == e.node.ID():
		dep, err := e.localStatus(name, d.Generation)
		if dep != nil {
			st = dep.Status()
			st.Node = node
			return st, nil
		}
		st.State = StateStarting
		if err != nil {
			st.Error = err.Error()
		}
	default:
		fwd, ok, err := e.forwardStatus(ctx, s.Nodes[node], name)
		if ok {
			return fwd, nil
		}
		st.State = StateStarting
		if err != nil {
			st.Error = err.Error()
		}
	}
	return st, nil
}

// forwardStatus asks node m for deployment name's status. ok is false
// when m does not run it (yet); err says why m did not answer.
func (e *Executor) forwardStatus(ctx context.Context, m *Member, name string) (st runner.Status, ok bool, err error) {
	if m == nil || m.APIAddr == "" {
		return st, false, errors.New("its node has not registered an API address")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.APIAddr+runner.PathJobs+"/"+url.PathEscape(name), nil)
	if err != nil {
		return st, false, err
	}
	req.Header.Set(forwardedHeader, e.node.ID())
	resp, err := e.node.http.Do(req)
	if err != nil {
		return st, false, fmt.Errorf("node %s at %s: %w", m.ID, m.APIAddr, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusMisdirectedRequest:
		return st, false, nil
	case resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil:
		return st, false, fmt.Errorf("node %s at %s: status: HTTP %d", m.ID, m.APIAddr, resp.StatusCode)
	}
	return st, true, nil
}

// writeJobsError answers err as the runner does, and the cluster's own
// errors with their status.
func writeJobsError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoDeployment):
		runner.WriteJSON(w, http.StatusNotFound, runner.ErrorBody{Error: err.Error()})
	case errors.Is(err, ErrNotEnoughSlots):
		runner.WriteJSON(w, http.StatusConflict, runner.ErrorBody{Error: err.Error()})
	case errors.Is(err, ErrNoLeader):
		runner.WriteJSON(w, http.StatusServiceUnavailable, runner.ErrorBody{Error: err.Error()})
	default:
		runner.WriteError(w, err)
	}
}
