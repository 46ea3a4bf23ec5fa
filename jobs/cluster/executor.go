package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/jobs/runner"
)

// Runtime is what an Executor runs deployments with, on its node:
// *runner.Runner. Its methods are called from the executor's goroutine
// and from the REST API's, at once.
type Runtime interface {
	// DeployWithStorage starts spec's job with its checkpoints in st,
	// resuming from st's latest completed checkpoint.
	DeployWithStorage(ctx context.Context, spec runner.Spec, st checkpoint.Storage) (*runner.Deployment, error)
	// Cancel ends the running deployment name and waits until it ended.
	Cancel(ctx context.Context, name string) error
	// Stop stops the running deployment name, drained or with a
	// savepoint (into its storage if dir is empty), and waits until it
	// ended.
	Stop(ctx context.Context, name string, drain bool, dir string) (runner.SavepointResult, error)
	// Savepoint takes a savepoint of the running deployment name into dir.
	Savepoint(ctx context.Context, name, dir string) (runner.SavepointResult, error)
	// Checkpoints lists the deployment's completed checkpoints.
	Checkpoints(ctx context.Context, name string) ([]runner.CheckpointSummary, error)
	// Check validates a spec without building its job (errors wrap
	// runner.ErrBadSpec) and fills in its defaults.
	Check(spec runner.Spec) (runner.Spec, error)
}

var _ Runtime = (*runner.Runner)(nil)

// ExecutorConfig configures StartExecutor. Runtime and Storage are
// required.
type ExecutorConfig struct {
	// Runtime runs the deployments assigned to the node.
	Runtime Runtime
	// Storage opens the checkpoint storage of a deployment of the cluster
	// (named by its id): the same one on every node, so that the node
	// that takes a deployment over finds its checkpoints.
	// JetStreamStorage.Open is one.
	Storage func(ctx context.Context, clusterID, deployment string) (checkpoint.Storage, error)
	// RetryInterval is how long the executor waits before it tries again
	// to start a deployment whose start failed (its storage unreachable,
	// say); 0 means 1 s.
	RetryInterval time.Duration
	// Logger gets the executor's events; nil means the node's logger.
	Logger *slog.Logger
}

// Executor runs, on one node, the deployments that the cluster's State
// assigns to that node, through a Runtime:
//
//   - a deployment with Desired Running whose subtasks are assigned to the
//     node is started, with its checkpoints in the cluster's shared
//     storage (ExecutorConfig.Storage), resuming from the storage's latest
//     completed checkpoint;
//   - one that is no longer assigned to the node, is stopped or removed,
//     or whose Generation changed (a new spec) is canceled (the new
//     generation starts again from the checkpoints);
//   - each checkpoint the job completes is recorded in the State
//     (OpCheckpoint) by the node, which the State takes only from the node
//     the deployment is assigned to.
//
// The checkpoint a deployment restores from is the storage's latest
// completed one, not the State's: a checkpoint whose manifest was
// committed may have had its output committed by two-phase sinks before
// its node could record it in the State (it died in between), and
// restoring an older one would write that output again. The State's
// checkpoint is a floor: a storage whose latest checkpoint is older than
// it (or that has none) lost checkpoints, and the deployment does not
// start there (ErrCheckpointBehind).
//
// A deployment whose job ended on the node by itself (it finished, or
// failed beyond its restarts) is not started again until its Generation
// changes (deploy it again) or it moves to another node. A start that
// failed is tried again after RetryInterval; its error shows in the
// deployment's status.
//
// A node cut off from the cluster's leader fences itself: once no leader
// has reached it for half the cluster's NodeTimeout (the leader marks a
// node down after NodeTimeout, and only then moves its deployments), it
// cancels every deployment it runs and starts none, so that its sinks stop
// committing before another node restores the deployments. Back in
// contact, and when the Executor starts, it first catches up with the
// leader's State (every entry the leader had applied when asked), then
// runs what that State assigns to it.
//
// An Executor watches the State on one goroutine of its own until Close.
type Executor struct {
	node *Node
	cfg  ExecutorConfig
	log  *slog.Logger
	// fenceAfter is how long the node may be out of contact with a
	// leader before it fences itself; fenced says it is.
	fenceAfter time.Duration
	fenced     bool

	mu     sync.Mutex
	local  map[string]*localRun // by deployment name: started here
	failed map[string]failedRun // by deployment name: the last start that failed

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// localRun is a deployment the executor started.
type localRun struct {
	gen uint64
	dep *runner.Deployment
}

type failedRun struct {
	gen uint64
	err error
	at  time.Time
}

// ErrCheckpointBehind: the shared checkpoint storage of a deployment holds
// no checkpoint as new as the one the cluster recorded as completed, so
// restoring from it would go back before output that may have been
// committed. The deployment does not start on the node.
var ErrCheckpointBehind = errors.New("cluster: checkpoint storage behind the cluster's latest checkpoint")

// StartExecutor starts running, on n, what n's State assigns to it.
func StartExecutor(n *Node, cfg ExecutorConfig) (*Executor, error) {
	if cfg.Runtime == nil || cfg.Storage == nil {
		return nil, fmt.Errorf("cluster: node %s: executor: a runtime and a checkpoint storage are required", n.ID())
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	e := &Executor{node: n, cfg: cfg, log: cfg.Logger, local: map[string]*localRun{},
		failed: map[string]failedRun{}, stop: make(chan struct{}), fenceAfter: n.cfg.NodeTimeout / 2,
		// Until it has caught up with a leader (reconcile).
		fenced: true}
	e.wg.Add(1)
	go e.run()
	return e, nil
}

// Close stops the executor and cancels the deployments it runs (their
// checkpoints stay: the node the cluster gives them to next resumes them).
func (e *Executor) Close() {
	e.once.Do(func() {
		close(e.stop)
		e.wg.Wait()
		e.mu.Lock()
		names := make([]string, 0, len(e.local))
		for name := range e.local {
			names = append(names, name)
		}
		e.mu.Unlock()
		for _, name := range names {
			e.cancel(name, "the node stops")
		}
	})
}

func (e *Executor) run() {
	defer e.wg.Done()
	changed, unwatch := e.node.Watch()
	defer unwatch()
	// Often enough for a fence to come well before the leader moves the
	// node's deployments.
	tick := time.NewTicker(min(e.cfg.RetryInterval, max(e.fenceAfter/5, time.Millisecond)))
	defer tick.Stop()
	for {
		e.reconcile()
		select {
		case <-e.stop:
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// assignedTo returns the node that runs deployment name in s, "" if none.
func assignedTo(s *State, name string) string {
	d := s.Deployments[name]
	if d == nil || d.Desired != Running {
		return ""
	}
	return wholeOn(s.Assignments[name], d.Parallelism())
}

// reconcile makes what runs on the node match the State, or fences the
// node.
func (e *Executor) reconcile() {
	if away := e.node.leaderContact(); away > e.fenceAfter {
		e.fence(away)
		return
	}
	if e.fenced {
		// Back in contact (or just started): first catch up with the
		// leader, so as to run only what the cluster assigns now.
		ctx, cancel := context.WithTimeout(context.Background(), max(e.fenceAfter, 100*time.Millisecond))
		err := e.node.catchUp(ctx)
		cancel()
		if err != nil {
			e.log.Debug("cluster: in contact with a leader, not caught up yet", "err", err)
			return
		}
		e.fenced = false
		e.log.Info("cluster: in contact with the leader and caught up: running what the cluster assigns to this node")
	}
	s := e.node.State()
	me := e.node.ID()
	e.mu.Lock()
	var stale []string
	for name, l := range e.local {
		if d := s.Deployments[name]; assignedTo(s, name) != me || d.Generation != l.gen {
			stale = append(stale, name)
		}
	}
	for name := range e.failed {
		if assignedTo(s, name) != me {
			delete(e.failed, name)
		}
	}
	e.mu.Unlock()
	sort.Strings(stale)
	for _, name := range stale {
		e.cancel(name, "it is no longer assigned to this node, or changed")
	}
	for _, name := range s.runningNames() {
		select {
		case <-e.stop:
			return
		default:
		}
		d := s.Deployments[name]
		if assignedTo(s, name) != me {
			continue
		}
		e.mu.Lock()
		_, running := e.local[name]
		f, hasFailed := e.failed[name]
		e.mu.Unlock()
		if running || hasFailed && f.gen == d.Generation && time.Since(f.at) < e.cfg.RetryInterval {
			continue
		}
		if err := e.start(s, name); err != nil {
			if !hasFailed || f.err.Error() != err.Error() {
				// Logged once per cause, not at every retry.
				e.log.Error("cluster: cannot start deployment; retrying", "deployment", name, "every", e.cfg.RetryInterval, "err", err)
			}
			e.mu.Lock()
			e.failed[name] = failedRun{gen: d.Generation, err: err, at: time.Now()}
			e.mu.Unlock()
		}
	}
}

// fence cancels every deployment the node runs: no leader has reached it
// for away.
func (e *Executor) fence(away time.Duration) {
	e.mu.Lock()
	names := make([]string, 0, len(e.local))
	for name := range e.local {
		names = append(names, name)
	}
	e.mu.Unlock()
	if !e.fenced && (len(names) > 0 || away < time.Duration(math.MaxInt64)) {
		e.log.Warn("cluster: no contact with a leader: this node fences itself and runs nothing until it is back in contact",
			"for", away.Round(time.Millisecond), "limit", e.fenceAfter, "canceling", names)
	}
	e.fenced = true
	sort.Strings(names)
	for _, name := range names {
		e.cancel(name, "fenced: no contact with the cluster's leader")
	}
}

// start starts deployment name, as s has it, on the node.
func (e *Executor) start(s *State, name string) error {
	d := s.Deployments[name]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.cfg.Storage(ctx, s.ClusterID, name)
	if err != nil {
		return fmt.Errorf("deployment %q: checkpoint storage: %w", name, err)
	}
	if ref, ok := s.Checkpoints[name]; ok {
		m, err := st.Latest(ctx)
		switch {
		case err != nil && !errors.Is(err, checkpoint.ErrNoCheckpoint):
			return fmt.Errorf("deployment %q: latest checkpoint in %s: %w", name, st.Location(), err)
		case err != nil || m.ID < ref.ID:
			latest := "none"
			if m != nil {
				latest = fmt.Sprint(m.ID)
			}
			return fmt.Errorf("%w: deployment %q: the cluster recorded checkpoint %d as completed (%s), %s holds %s as its latest",
				ErrCheckpointBehind, name, ref.ID, ref.Location, st.Location(), latest)
		}
	}
	rec := &recorder{Storage: st, e: e, name: name}
	dep, err := e.cfg.Runtime.DeployWithStorage(ctx, d.Spec, rec)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.local[name] = &localRun{gen: d.Generation, dep: dep}
	delete(e.failed, name)
	e.mu.Unlock()
	e.log.Info("cluster: deployment started on this node", "deployment", name, "generation", d.Generation,
		"checkpoints", st.Location())
	return nil
}

// cancel ends deployment name on the node, if the executor started it.
func (e *Executor) cancel(name, why string) {
	e.mu.Lock()
	l := e.local[name]
	delete(e.local, name)
	e.mu.Unlock()
	if l == nil {
		return
	}
	select {
	case <-l.dep.Done():
		return // it ended by itself
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.log.Info("cluster: canceling deployment on this node", "deployment", name, "why", why)
	if err := e.cfg.Runtime.Cancel(ctx, name); err != nil && !errors.Is(err, runner.ErrConflict) {
		e.log.Warn("cluster: cancel deployment", "deployment", name, "err", err)
	}
}

// runningHere returns deployment name if the executor started it on the
// node and has not canceled it.
func (e *Executor) runningHere(name string) *runner.Deployment {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.local[name]; l != nil {
		return l.dep
	}
	return nil
}

// localStatus returns what the executor knows of deployment name on the node:
// the deployment it started for generation gen, or the error of its last
// start.
func (e *Executor) localStatus(name string, gen uint64) (*runner.Deployment, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.local[name]; l != nil && l.gen == gen {
		return l.dep, nil
	}
	if f, ok := e.failed[name]; ok && f.gen == gen {
		return nil, f.err
	}
	return nil, nil
}

// recorder is a deployment's checkpoint storage that records each
// checkpoint it completes in the cluster's State.
type recorder struct {
	checkpoint.Storage
	e    *Executor
	name string
}

var _ checkpoint.Prober = (*recorder)(nil)

// Commit commits m and then records it. A checkpoint of a deployment
// that is no longer this node's (ErrNotAssigned: this node's State says
// so before the manifest is written, or the State refuses the record
// after) fails, so that its sinks do not commit: another node has the
// deployment now. A record that fails for another reason (no
// leader for a while) is only logged: the manifest is committed, the
// storage's latest is what a restore starts from, and the next
// checkpoint's record supersedes it.
func (r *recorder) Commit(ctx context.Context, m *checkpoint.Manifest) error {
	// Checked before the manifest is written too, as far as this node
	// knows: the node the deployment moved to writes to the same storage.
	if s := r.e.node.State(); assignedTo(s, r.name) != r.e.node.ID() {
		return fmt.Errorf("checkpoint %d of deployment %q: %w: it is assigned to %v", m.ID, r.name, ErrNotAssigned, s.Assignments[r.name])
	}
	if err := r.Storage.Commit(ctx, m); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := r.e.node.Apply(rctx, &Command{Op: OpCheckpoint, Name: r.name, From: r.e.node.ID(),
		Checkpoint: CheckpointRef{ID: m.ID, Location: r.Storage.Location(), At: m.Created}})
	switch {
	case errors.Is(err, ErrNotAssigned):
		return fmt.Errorf("checkpoint %d of deployment %q: %w", m.ID, r.name, err)
	case err != nil:
		r.e.log.Warn("cluster: record checkpoint", "deployment", r.name, "checkpoint", m.ID, "err", err)
	}
	return nil
}

// Probe probes the storage, if it can be probed.
func (r *recorder) Probe(ctx context.Context) error {
	if p, ok := r.Storage.(checkpoint.Prober); ok {
		return p.Probe(ctx)
	}
	return nil
}

// JetStreamStorage keeps the checkpoints of a cluster's deployments in
// the JetStream object store, a bucket per deployment
// (BucketName), on one NATS connection that it makes on first use. Its
// methods are safe for concurrent use.
type JetStreamStorage struct {
	conn jetstream.ConnConfig

	mu sync.Mutex
	nc *nats.Conn
}

// NewJetStreamStorage returns a JetStreamStorage that connects as conn
// says.
func NewJetStreamStorage(conn jetstream.ConnConfig) *JetStreamStorage {
	return &JetStreamStorage{conn: conn}
}

// BucketName is the object store bucket of a deployment's checkpoints:
// "sluice-<cluster id>-<deployment>", with '_' in the name doubled and '.'
// written "_d" (a bucket name takes letters, digits, '-' and '_').
func BucketName(clusterID, deployment string) string {
	r := strings.NewReplacer("_", "__", ".", "_d")
	return "sluice-" + clusterID + "-" + r.Replace(deployment)
}

// Open opens (creating it if needed) the checkpoint storage of a
// deployment of cluster clusterID. It fails with an error naming the
// server's URL when the server cannot be reached.
func (j *JetStreamStorage) Open(ctx context.Context, clusterID, deployment string) (checkpoint.Storage, error) {
	if clusterID == "" {
		return nil, errors.New("the cluster has no id yet")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.nc == nil || j.nc.IsClosed() {
		nc, err := jetstream.Connect(ctx, j.conn)
		if err != nil {
			return nil, err
		}
		j.nc = nc
	}
	js, err := njs.New(j.nc)
	if err != nil {
		return nil, fmt.Errorf("JetStream at %s: %w", j.conn.URL, err)
	}
	return jetstream.NewCheckpointStorage(ctx, js, jetstream.CheckpointStorageConfig{
		Bucket:      BucketName(clusterID, deployment),
		Description: fmt.Sprintf("checkpoints of deployment %s of sluice cluster %s", deployment, clusterID),
	})
}

// Close closes the connection.
func (j *JetStreamStorage) Close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.nc != nil {
		j.nc.Close()
	}
}
