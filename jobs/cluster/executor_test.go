package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cluster/internal/testjobs"
	"github.com/sluicedata/sluice/jobs/runner"
)

// copyJobs is a registry of the tests' jobs (package testjobs).
func copyJobs() *jobs.Registry {
	reg := jobs.NewRegistry()
	testjobs.Register(reg)
	return reg
}

// stateKeys is the number of keys of the "keyed" job's state.
const stateKeys = testjobs.StateKeys

// execNode is a cluster node with its executor, runner and API server:
// what `jobrunner serve --node-id` runs.
type execNode struct {
	*Node
	cfg    Config
	exec   *Executor
	runner *runner.Runner
	store  *JetStreamStorage
	srv    *http.Server
	closed bool
}

func startExecNode(t *testing.T, id, dir, join string, slots int, natsURL string, p *partition) *execNode {
	t.Helper()
	cfg := testConfig(id, dir, join, slots)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if p != nil {
		// All of the node's traffic but NATS goes through p.
		cfg.network = &network{listen: p.listen, dial: p.dial}
		ln = p.wrap(ln)
	}
	cfg.APIAddr = ln.Addr().String()
	clusterAPI, jobsAPI := &lateHandler{}, &lateHandler{}
	mux := http.NewServeMux()
	mux.Handle("/v1/cluster/", clusterAPI)
	mux.Handle("/v1/nodes", clusterAPI)
	mux.Handle("/v1/jobs", jobsAPI)
	mux.Handle("/v1/jobs/", jobsAPI)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	require.NoError(t, err)
	clusterAPI.set(n.Handler())
	en := &execNode{Node: n, cfg: cfg, srv: srv, store: NewJetStreamStorage(jetstream.ConnConfig{URL: natsURL})}
	en.runner = runner.New(runner.Options{Registry: copyJobs(), Logger: cfg.Logger,
		Defaults: jobs.Config{NATS: jetstream.ConnConfig{URL: natsURL}, Output: io.Discard}})
	en.exec, err = StartExecutor(n, ExecutorConfig{Runtime: en.runner, Storage: en.store.Open, RetryInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	jobsAPI.set(en.exec.JobsHandler())
	t.Cleanup(func() { en.kill(t) })
	return en
}

// kill stops the node as a crash would, for the others: its jobs end
// without a savepoint, its API and raft stop answering.
func (en *execNode) kill(t *testing.T) {
	t.Helper()
	if en.closed {
		return
	}
	en.closed = true
	en.exec.Close()
	en.runner.Close()
	_ = en.srv.Close()
	require.NoError(t, en.Node.Close())
	en.store.Close()
}

// startExecCluster starts len(slots) nodes, n1 first (it leads), with
// slots[i] slots each, and waits until all are up.
func startExecCluster(t *testing.T, natsURL string, slots ...int) []*execNode {
	t.Helper()
	return startPartitionedCluster(t, natsURL, nil, slots...)
}

// startPartitionedCluster is startExecCluster with the traffic of node
// "n<i+1>" through parts[i], where it is not nil.
func startPartitionedCluster(t *testing.T, natsURL string, parts []*partition, slots ...int) []*execNode {
	t.Helper()
	base := t.TempDir()
	var nodes []*execNode
	for i, k := range slots {
		id := fmt.Sprintf("n%d", i+1)
		join := ""
		if i > 0 {
			join = nodes[0].cfg.APIAddr
		}
		var p *partition
		if i < len(parts) {
			p = parts[i]
		}
		nodes = append(nodes, startExecNode(t, id, filepath.Join(base, id), join, k, natsURL, p))
	}
	for _, en := range nodes {
		waitFor(t, en.Node, "all members up", func(s *State) bool { return upCount(s) == len(slots) })
	}
	return nodes
}

// natsFixture is an embedded NATS server with the streams IN and OUT.
type natsFixture struct {
	t   *testing.T
	srv *embedded.Server
	nc  *nats.Conn
	js  njs.JetStream
	// published counts what was published to each partition.
	published [2]int
}

func startNATS(t *testing.T) *natsFixture {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	require.NoError(t, err)
	ctx := ctxT(t)
	for name, subj := range map[string]string{"IN": "in.>", "OUT": "out.>"} {
		_, err := js.CreateStream(ctx, njs.StreamConfig{Name: name, Subjects: []string{subj}, Duplicates: 10 * time.Minute})
		require.NoError(t, err)
	}
	return &natsFixture{t: t, srv: srv, nc: nc, js: js}
}

// publish publishes n more records to each partition: "p:seq".
func (f *natsFixture) publish(n int) {
	f.t.Helper()
	ctx := ctxT(f.t)
	for p := range f.published {
		for range n {
			_, err := f.js.Publish(ctx, fmt.Sprintf("in.%d", p), fmt.Appendf(nil, "%d:%d", p, f.published[p]))
			require.NoError(f.t, err)
			f.published[p]++
		}
	}
}

func (f *natsFixture) outCount() int {
	f.t.Helper()
	s, err := f.js.Stream(ctxT(f.t), "OUT")
	require.NoError(f.t, err)
	info, err := s.Info(ctxT(f.t))
	require.NoError(f.t, err)
	return int(info.State.Msgs)
}

// checkExactlyOnce checks that OUT holds every published record once.
func (f *natsFixture) checkExactlyOnce() {
	f.t.Helper()
	s, err := f.js.Stream(ctxT(f.t), "OUT")
	require.NoError(f.t, err)
	seen := map[string]int{}
	total := f.outCount()
	for seq := uint64(1); seq <= uint64(total); seq++ {
		m, err := s.GetMsg(ctxT(f.t), seq)
		require.NoError(f.t, err)
		seen[string(m.Data)]++
	}
	var lost, twice []string
	for p, n := range f.published {
		for i := range n {
			k := fmt.Sprintf("%d:%d", p, i)
			switch seen[k] {
			case 0:
				lost = append(lost, k)
			case 1:
			default:
				twice = append(twice, k)
			}
		}
	}
	require.Empty(f.t, lost, "lost")
	require.Empty(f.t, twice, "written more than once")
	require.Equal(f.t, f.published[0]+f.published[1], total)
}

// apiClient bounds every call, so that a node that does not answer fails
// the test instead of hanging it.
var apiClient = &http.Client{Timeout: 30 * time.Second}

// api calls a node's REST API and decodes the answer into out.
func api(t *testing.T, en *execNode, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+en.cfg.APIAddr+path, rd)
	require.NoError(t, err)
	resp, err := apiClient.Do(req)
	require.NoError(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s", b)
	}
	return resp.StatusCode
}

// failover deploys "copy" at parallelism 2 through via, lets it
// checkpoint, kills the node running it (which must be victim), and
// checks that another node restores it and that OUT ends with every
// record once.
func failover(t *testing.T, f *natsFixture, nodes []*execNode, via *execNode, victim string) {
	const half = 500
	f.publish(half)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, via, "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Equal(t, victim, st.Node)
	var dead *execNode
	var rest []*execNode
	for _, en := range nodes {
		if en.ID() == victim {
			dead = en
		} else {
			rest = append(rest, en)
		}
	}
	// Some output committed, and checkpoints recorded in the State.
	require.Eventually(t, func() bool {
		var st runner.Status
		return api(t, rest[0], "GET", "/v1/jobs/cp", nil, &st) == http.StatusOK && st.State == runner.StateRunning &&
			st.Node == victim && st.CheckpointsCompleted >= 2
	}, 30*time.Second, 10*time.Millisecond)
	s := waitFor(t, rest[0].Node, "a checkpoint recorded", func(s *State) bool { return s.Checkpoints["cp"].ID >= 2 })
	before := s.Checkpoints["cp"]
	require.Equal(t, "object store bucket "+BucketName(s.ClusterID, "cp")+" on "+f.srv.URL(), before.Location)
	require.Eventually(t, func() bool { return f.outCount() > 0 }, 30*time.Second, 10*time.Millisecond)

	killed := time.Now()
	dead.kill(t)
	outAtKill := f.outCount()
	f.publish(half)
	// The leader (maybe a new one) moves it whole to a node with room,
	// which restores it from the checkpoint and reads on.
	s = waitFor(t, rest[0].Node, "cp moved off the dead node", func(s *State) bool {
		a := assignedTo(s, "cp")
		return !s.Nodes[victim].Up && a != "" && a != victim
	})
	heir := assignedTo(s, "cp")
	// Failover time: from the kill to the first output of the new node
	// (its first checkpoint commits it), with the tests' node timeout.
	require.Eventually(t, func() bool { return f.outCount() > outAtKill }, 60*time.Second, 5*time.Millisecond)
	t.Logf("failover of %s to %s: first new output %v after the kill (node timeout %v, checkpoints every 50ms)",
		victim, heir, time.Since(killed).Round(time.Millisecond), testNodeTimeout)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	for _, en := range rest {
		require.Equal(t, http.StatusOK, api(t, en, "GET", "/v1/jobs/cp", nil, &st))
		require.Equal(t, heir, st.Node)
		require.Equal(t, runner.StateRunning, st.State, st.Error)
	}
	// Two more checkpoints complete on the new node: whatever the old one
	// left prepared is committed by now, once.
	after := waitFor(t, rest[0].Node, "checkpoints on the new node", func(s *State) bool {
		return s.Checkpoints["cp"].ID >= before.ID+2
	}).Checkpoints["cp"]
	require.Greater(t, after.ID, before.ID, "the checkpoint recorded never goes back")
	waitFor(t, rest[0].Node, "two checkpoints more", func(s *State) bool { return s.Checkpoints["cp"].ID >= after.ID+2 })
	f.checkExactlyOnce()

	// Canceled through any node, it ends where it runs.
	require.Equal(t, http.StatusOK, api(t, rest[0], "POST", "/v1/jobs/cp/cancel", nil, &st))
	require.Equal(t, runner.StateCanceled, st.State)
	for _, en := range rest {
		if en.ID() == heir {
			require.Eventually(t, func() bool {
				d, err := en.runner.Get("cp")
				return err == nil && d.State() == runner.StateCanceled
			}, 30*time.Second, 10*time.Millisecond)
		}
	}
}

func TestAJobOutlivesItsNode(t *testing.T) {
	f := startNATS(t)
	// n2 and n3 have the most room: cp goes to n2, a follower (n1 leads).
	nodes := startExecCluster(t, f.srv.URL(), 1, 2, 2)
	failover(t, f, nodes, nodes[0], "n2")

	// Deployed again after the cancel, it resumes from its checkpoints
	// in the same storage, on n3, the node with room.
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, nodes[0], "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Equal(t, "n3", st.Node)
	last := nodes[0].State().Checkpoints["cp"].ID
	f.publish(100)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	waitFor(t, nodes[0].Node, "two checkpoints more", func(s *State) bool { return s.Checkpoints["cp"].ID >= last+2 })
	f.checkExactlyOnce()
}

func TestTheLeaderDiesAndTheJobMovesToAnotherNode(t *testing.T) {
	f := startNATS(t)
	// cp goes to n1, the leader; the deploy goes through n3.
	nodes := startExecCluster(t, f.srv.URL(), 2, 2, 1)
	require.True(t, nodes[0].IsLeader())
	failover(t, f, nodes, nodes[2], "n1")
	require.NotEqual(t, "n1", nodes[1].Leader())
}

func TestADeploymentThatFitsNoNodeWaitsAndSaysWhy(t *testing.T) {
	f := startNATS(t)
	nodes := startExecCluster(t, f.srv.URL(), 2, 2)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, nodes[1], "POST", "/v1/jobs", runner.Spec{Job: "copy", Name: "wide", Parallelism: 3}, &st))
	require.Equal(t, StateWaiting, st.State)
	require.Equal(t, `deployment "wide" waits: it runs whole on one node and needs 3 slots; the largest up node has 2 (a job does not yet run across nodes)`, st.Waiting)
	require.Empty(t, st.Node)
	var eb runner.ErrorBody
	require.Equal(t, http.StatusConflict, api(t, nodes[1], "POST", "/v1/jobs", runner.Spec{Job: "copy", Name: "huge", Parallelism: 5}, &eb))
	require.Equal(t, `cluster: not enough slots: deployment "huge" has parallelism 5, the cluster's up nodes have 4 slots`, eb.Error)
	require.Equal(t, http.StatusConflict, api(t, nodes[0], "POST", "/v1/jobs", runner.Spec{Job: "copy", Name: "wide"}, &eb))
	require.Contains(t, eb.Error, `deployment "wide" is running on the cluster`)
	require.Equal(t, http.StatusBadRequest, api(t, nodes[0], "POST", "/v1/jobs", runner.Spec{Job: "nope"}, &eb))
	require.Contains(t, eb.Error, `"nope"`)
	require.Equal(t, http.StatusBadRequest, api(t, nodes[0], "POST", "/v1/jobs", runner.Spec{Job: "copy", Name: "d", CheckpointDir: t.TempDir()}, &eb))
	require.Contains(t, eb.Error, "keeps its checkpoints in the cluster's shared storage")
	require.Equal(t, http.StatusNotFound, api(t, nodes[0], "GET", "/v1/jobs/ghost", nil, &eb))
	require.Equal(t, `runner: no such deployment "ghost" (deployments: wide)`, eb.Error)
	var list []runner.Status
	require.Equal(t, http.StatusOK, api(t, nodes[0], "GET", "/v1/jobs", nil, &list))
	require.Len(t, list, 1)
	require.Equal(t, StateWaiting, list[0].State)
	for _, en := range nodes {
		_, err := en.runner.Get("wide")
		require.ErrorIs(t, err, runner.ErrNotFound, "nothing started on %s", en.ID())
	}
}

func TestAnUnreachableJetStreamServerIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "nats://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	nodes := startExecCluster(t, url, 1)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, nodes[0], "POST", "/v1/jobs", runner.Spec{Job: "copy", Name: "cp"}, &st))
	require.Eventually(t, func() bool {
		api(t, nodes[0], "GET", "/v1/jobs/cp", nil, &st)
		return st.Error != ""
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, StateStarting, st.State)
	require.Equal(t, "n1", st.Node)
	require.True(t, strings.HasPrefix(st.Error, `deployment "cp": checkpoint storage: jetstream: cannot connect to `+url+": "), st.Error)
}

func TestOnlyTheAssignedNodeCompletesACheckpoint(t *testing.T) {
	n := startNode(t, "n1", filepath.Join(t.TempDir(), "n1"), "", "", 1)
	waitFor(t, n.Node, "n1 registered", registered("n1"))
	e := &Executor{node: n.Node, log: n.log}
	st, err := checkpoint.NewLocalStorage(t.TempDir())
	require.NoError(t, err)
	rec := &recorder{Storage: st, e: e, name: "d"}
	manifest := func(id int64) *checkpoint.Manifest {
		return &checkpoint.Manifest{Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: id,
			Job: "d", MaxParallelism: 128, Created: time.Now()}
	}
	// Not assigned here: the manifest is not even written.
	err = rec.Commit(ctxT(t), manifest(1))
	require.ErrorIs(t, err, ErrNotAssigned)
	_, err = st.Latest(ctxT(t))
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)

	require.NoError(t, n.Apply(ctxT(t), deploy("d", 1)))
	waitFor(t, n.Node, "d assigned", assigned("d", 1))
	require.NoError(t, rec.Commit(ctxT(t), manifest(2)))
	s := waitFor(t, n.Node, "checkpoint 2 recorded", func(s *State) bool { return s.Checkpoints["d"].ID == 2 })
	require.Equal(t, st.Location(), s.Checkpoints["d"].Location)
}

func TestAStopOnAClusterSavesAndTheNextDeployResumes(t *testing.T) {
	f := startNATS(t)
	// cp (parallelism 2) fits only n2; every request goes through n1.
	nodes := startExecCluster(t, f.srv.URL(), 1, 2)
	via := nodes[0]
	f.publish(300)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, via, "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Equal(t, "n2", st.Node)
	require.Eventually(t, func() bool {
		return api(t, via, "GET", "/v1/jobs/cp", nil, &st) == http.StatusOK && st.State == runner.StateRunning &&
			st.CheckpointsCompleted >= 1
	}, 30*time.Second, 10*time.Millisecond)

	// Checkpoints are listed by the node that runs the deployment.
	var cs []runner.CheckpointSummary
	require.Equal(t, http.StatusOK, api(t, via, "GET", "/v1/jobs/cp/checkpoints", nil, &cs))
	require.NotEmpty(t, cs)

	// A savepoint goes to a directory of n2's.
	dir := filepath.Join(t.TempDir(), "sp")
	var sp runner.SavepointResult
	require.Equal(t, http.StatusOK, api(t, via, "POST", "/v1/jobs/cp/savepoint", runner.SavepointRequest{Dir: dir}, &sp), "%+v", sp)
	require.Equal(t, dir, sp.Path)
	local, err := checkpoint.NewLocalStorage(dir)
	require.NoError(t, err)
	m, err := local.Latest(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, sp.ID, m.ID)
	require.Equal(t, checkpoint.KindSavepoint, m.Kind)
	var eb runner.ErrorBody
	require.Equal(t, http.StatusBadRequest, api(t, via, "POST", "/v1/jobs/cp/savepoint", "not a request", &eb))
	require.Contains(t, eb.Error, "body")

	// A stop with no directory saves into the cluster's storage, records
	// it, and sets the deployment to Stopped: no node starts it again.
	var stop runner.SavepointResult
	require.Equal(t, http.StatusOK, api(t, via, "POST", "/v1/jobs/cp/stop", runner.StopRequest{}, &stop), "%+v", stop)
	s := via.State()
	require.Equal(t, "object store bucket "+BucketName(s.ClusterID, "cp")+" on "+f.srv.URL(), stop.Path)
	require.Greater(t, stop.ID, sp.ID)
	s = waitFor(t, via.Node, "the stop recorded", func(s *State) bool {
		d := s.Deployments["cp"]
		return d.Desired == Stopped && s.Checkpoints["cp"].ID == stop.ID
	})
	require.Equal(t, stop.Path, s.Deployments["cp"].Savepoint)
	require.Equal(t, http.StatusOK, api(t, via, "GET", "/v1/jobs/cp", nil, &st))
	require.Equal(t, runner.StateStopped, st.State)
	require.Equal(t, stop.Path, st.Savepoint)
	d, err := nodes[1].runner.Get("cp")
	require.NoError(t, err)
	require.Equal(t, runner.StateStopped, d.State())
	stopped := f.outCount()

	// Stopped, it takes neither a stop nor a savepoint.
	require.Equal(t, http.StatusConflict, api(t, via, "POST", "/v1/jobs/cp/stop", runner.StopRequest{}, &eb))
	require.Contains(t, eb.Error, "STOPPED")
	require.Equal(t, http.StatusConflict, api(t, via, "POST", "/v1/jobs/cp/savepoint", runner.SavepointRequest{Dir: dir}, &eb))
	require.Equal(t, http.StatusNotFound, api(t, via, "POST", "/v1/jobs/nope/stop", runner.StopRequest{}, &eb))

	// Deployed again, at parallelism 1, it resumes from the stop's
	// savepoint: every record once, the old ones included.
	f.publish(200)
	require.Equal(t, http.StatusCreated, api(t, via, "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 1, CheckpointInterval: "50ms"}, &st), "%+v", st)
	runsOn := nodes[0]
	if st.Node == "n2" {
		runsOn = nodes[1]
	}
	require.Empty(t, via.State().Deployments["cp"].Savepoint)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	require.Greater(t, f.outCount(), stopped)
	waitFor(t, via.Node, "two checkpoints after the stop", func(s *State) bool { return s.Checkpoints["cp"].ID >= stop.ID+2 })
	f.checkExactlyOnce()

	// Drained through the node that runs it (no forwarding), its final checkpoint is in
	// the cluster's storage, recorded.
	require.Equal(t, http.StatusOK, api(t, runsOn, "POST", "/v1/jobs/cp/stop", runner.StopRequest{Drain: true}, &stop), "%+v", stop)
	require.True(t, stop.Final)
	require.Equal(t, s.Deployments["cp"].Savepoint, stop.Path)
	waitFor(t, via.Node, "the drain recorded", func(s *State) bool {
		return s.Deployments["cp"].Desired == Stopped && s.Deployments["cp"].Savepoint == stop.Path && s.Checkpoints["cp"].ID == stop.ID
	})
	require.Equal(t, http.StatusOK, api(t, via, "GET", "/v1/jobs/cp", nil, &st))
	require.Equal(t, runner.StateStopped, st.State)
	f.checkExactlyOnce()
}

func TestARescaleOnAClusterResumesFromItsSavepoint(t *testing.T) {
	f := startNATS(t)
	// n1 (the leader) has 2 slots, n2 3: cp goes to n2 at 2 and at 3.
	nodes := startExecCluster(t, f.srv.URL(), 2, 3)
	via := nodes[0]
	f.publish(200)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, via, "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Equal(t, "n2", st.Node)
	running := func(p int) runner.Status {
		t.Helper()
		var st runner.Status
		require.Eventually(t, func() bool {
			return api(t, via, "GET", "/v1/jobs/cp", nil, &st) == http.StatusOK && st.State == runner.StateRunning &&
				st.Spec.Parallelism == p && st.CheckpointsCompleted >= 1
		}, 30*time.Second, 10*time.Millisecond, "%+v", st)
		return st
	}
	running(2)

	// No node has 4 slots: refused, and it runs on as it was.
	var eb runner.ErrorBody
	require.Equal(t, http.StatusConflict, api(t, via, "POST", "/v1/jobs/cp/rescale", runner.RescaleRequest{Parallelism: 4}, &eb))
	require.Contains(t, eb.Error, "nothing stopped")
	require.Contains(t, eb.Error, "the largest up node has 3")
	require.Equal(t, http.StatusBadRequest, api(t, via, "POST", "/v1/jobs/cp/rescale", runner.RescaleRequest{Parallelism: 0}, &eb))
	require.Equal(t, http.StatusOK, api(t, via, "GET", "/v1/jobs/cp", nil, &st))
	require.Equal(t, runner.StateRunning, st.State)

	for _, p := range []int{3, 1, 2} {
		before := via.State().Checkpoints["cp"].ID
		require.Equal(t, http.StatusOK, api(t, via, "POST", "/v1/jobs/cp/rescale", runner.RescaleRequest{Parallelism: p}, &st), "%+v", st)
		require.Equal(t, p, st.Spec.Parallelism)
		st = running(p)
		f.publish(100)
		require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
		// It went on from the rescale's savepoint, not from the start.
		require.Greater(t, via.State().Checkpoints["cp"].ID, before)
		f.checkExactlyOnce()
	}
}

func TestAJobOnAClusterOutlivesARestartOfItsNATSServer(t *testing.T) {
	f := startNATS(t)
	nodes := startExecCluster(t, f.srv.URL(), 2, 2)
	via := nodes[0]
	f.publish(300)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, via, "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 30*time.Second, 10*time.Millisecond)
	before := waitFor(t, via.Node, "a checkpoint recorded", func(s *State) bool { return s.Checkpoints["cp"].ID >= 2 }).Checkpoints["cp"]

	require.NoError(t, f.srv.Restart())
	f.publish(300)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	waitFor(t, via.Node, "checkpoints after the restart", func(s *State) bool { return s.Checkpoints["cp"].ID >= before.ID+2 })
	require.Equal(t, http.StatusOK, api(t, via, "GET", "/v1/jobs/cp", nil, &st))
	require.Equal(t, runner.StateRunning, st.State, "%+v", st)
	t.Logf("after the NATS restart: %+v restarts %d", st.State, st.Restarts)
	f.checkExactlyOnce()
}

func TestFailoverWithStateOf100KKeys(t *testing.T) {
	f := startNATS(t)
	// keyed goes to n2 (n2 and n3 have the most room; the lowest id).
	nodes := startExecCluster(t, f.srv.URL(), 1, 2, 2)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, nodes[0], "POST", "/v1/jobs",
		runner.Spec{Job: "keyed", Name: "k", Parallelism: 2, CheckpointInterval: "200ms"}, &st), "%+v", st)
	require.Equal(t, "n2", st.Node)
	// Every key has a count in the state, and a checkpoint holds them.
	require.Eventually(t, func() bool {
		return api(t, nodes[0], "GET", "/v1/jobs/k", nil, &st) == http.StatusOK && st.RecordsIn >= 2*stateKeys
	}, 60*time.Second, 10*time.Millisecond, "%+v", st)
	after := nodes[0].State().Checkpoints["k"].ID
	waitFor(t, nodes[0].Node, "a checkpoint of every key", func(s *State) bool { return s.Checkpoints["k"].ID >= after+2 })
	var cs []runner.CheckpointSummary
	require.Equal(t, http.StatusOK, api(t, nodes[0], "GET", "/v1/jobs/k/checkpoints", nil, &cs))
	require.NotEmpty(t, cs)
	last := cs[len(cs)-1]
	require.Greater(t, last.Bytes, int64(stateKeys*8), "the checkpoint holds the keys' counts: %+v", last)

	killed := time.Now()
	nodes[1].kill(t)
	atKill := f.outCount()
	s := waitFor(t, nodes[0].Node, "k moved to n3", func(s *State) bool { return assignedTo(s, "k") == "n3" })
	moved := time.Since(killed)
	require.Eventually(t, func() bool { return f.outCount() > atKill }, 60*time.Second, 5*time.Millisecond)
	first := time.Since(killed)
	t.Logf("failover with %d keys (checkpoint %d, %d bytes): reassigned after %v, first new output after %v (node timeout %v)",
		stateKeys, s.Checkpoints["k"].ID, last.Bytes, moved.Round(time.Millisecond), first.Round(time.Millisecond), testNodeTimeout)
	require.Less(t, first, 30*time.Second)
	require.Equal(t, http.StatusOK, api(t, nodes[0], "GET", "/v1/jobs/k", nil, &st))
	require.Equal(t, runner.StateRunning, st.State, st.Error)

	// The counts went on from the restored state: each key's counts in OUT
	// are 1, 2, 3, ... with none lost and none twice, across the failover.
	require.Eventually(t, func() bool { return f.outCount() > 2*atKill }, 60*time.Second, 10*time.Millisecond)
	f.checkCountSequences(100)
}

// checkCountSequences checks that OUT holds, for each of keys keys, the
// counts "key:1", "key:2", ... up to its highest, each once.
func (f *natsFixture) checkCountSequences(keys int) {
	f.t.Helper()
	s, err := f.js.Stream(ctxT(f.t), "OUT")
	require.NoError(f.t, err)
	total := f.outCount()
	seen := map[int64]map[int64]int{}
	for seq := uint64(1); seq <= uint64(total); seq++ {
		m, err := s.GetMsg(ctxT(f.t), seq)
		require.NoError(f.t, err)
		var k, c int64
		_, err = fmt.Sscanf(string(m.Data), "%d:%d", &k, &c)
		require.NoError(f.t, err, "%q", m.Data)
		if seen[k] == nil {
			seen[k] = map[int64]int{}
		}
		seen[k][c]++
	}
	require.Len(f.t, seen, keys)
	for k, cs := range seen {
		for c := int64(1); c <= int64(len(cs)); c++ {
			require.Equal(f.t, 1, cs[c], "key %d: count %d seen %d times (counts up to %d)", k, c, cs[c], len(cs))
		}
	}
}

func TestANodeCutOffFromTheOthersFencesItselfAndTheMajorityCarriesOn(t *testing.T) {
	f := startNATS(t)
	// cp goes to n2; n3 has room for it too. n2's raft and API traffic,
	// both ways, goes through p.
	p := newPartition()
	nodes := startPartitionedCluster(t, f.srv.URL(), []*partition{nil, p}, 1, 2, 2)
	f.publish(300)
	var st runner.Status
	require.Equal(t, http.StatusCreated, api(t, nodes[0], "POST", "/v1/jobs",
		runner.Spec{Job: "copy", Name: "cp", Parallelism: 2, CheckpointInterval: "50ms"}, &st), "%+v", st)
	require.Equal(t, "n2", st.Node)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 30*time.Second, 10*time.Millisecond)

	// n2 is cut off from n1 and n3; its NATS connections live on, so
	// only fencing keeps it from writing beside the node that takes over.
	// It cancels its job by itself, and the majority moves the deployment
	// to n3.
	p.Cut()
	require.Eventually(t, func() bool {
		d, err := nodes[1].runner.Get("cp")
		return err == nil && d.State() == runner.StateCanceled
	}, 30*time.Second, 5*time.Millisecond)
	waitFor(t, nodes[0].Node, "cp moved to n3", func(s *State) bool { return assignedTo(s, "cp") == "n3" })
	f.publish(300)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	f.checkExactlyOnce()
	require.False(t, nodes[1].IsLeader(), "the minority elects no leader")

	// Healed, n2 is a member again and runs nothing: cp stays on n3.
	p.Heal()
	waitFor(t, nodes[0].Node, "n2 up again", func(s *State) bool { return s.Nodes["n2"].Up })
	waitFor(t, nodes[1].Node, "n2 back in the cluster's state", func(s *State) bool {
		return s.Nodes["n2"].Up && assignedTo(s, "cp") == "n3"
	})
	f.publish(300)
	require.Eventually(t, func() bool { return f.outCount() >= f.published[0]+f.published[1] }, 60*time.Second, 10*time.Millisecond)
	// Two more checkpoints of cp on n3 complete, with nothing written
	// twice since.
	id := waitFor(t, nodes[0].Node, "a checkpoint", func(s *State) bool { return s.Checkpoints["cp"].ID > 0 }).Checkpoints["cp"].ID
	waitFor(t, nodes[0].Node, "two checkpoints more", func(s *State) bool { return s.Checkpoints["cp"].ID >= id+2 })
	f.checkExactlyOnce()
	d, err := nodes[1].runner.Get("cp")
	require.NoError(t, err)
	require.Equal(t, runner.StateCanceled, d.State(), "n2 did not run cp again: %+v", d.Status())
}
