package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
)

// Errors wrapped by the runner's methods; the REST API maps them to status
// codes (ErrBadSpec 400, ErrNotFound 404, ErrConflict 409).
var (
	ErrBadSpec  = errors.New("runner: bad job spec")
	ErrNotFound = errors.New("runner: no such deployment")
	ErrConflict = errors.New("runner: conflict")
)

// States of a deployment.
const (
	StateRunning  = "RUNNING"
	StateFinished = "FINISHED" // input ended, or drained
	StateStopped  = "STOPPED"  // stopped with a savepoint
	StateCanceled = "CANCELED"
	StateFailed   = "FAILED"
)

// Options configure a Runner.
type Options struct {
	// Registry holds the jobs that can be deployed; nil means jobs.Default.
	Registry *jobs.Registry
	// CheckpointDir is where deployments keep checkpoints, one directory per
	// deployment name; a spec may override it. Empty means no checkpoints
	// unless the spec asks for them.
	CheckpointDir string
	// SavepointDir is where savepoints go when a request names no directory;
	// empty means CheckpointDir/savepoints.
	SavepointDir string
	// Defaults are settings a spec does not give: NATS, OutputDir, Postgres.
	Defaults jobs.Config
	// Logger receives the runner's and the jobs' logs; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Spec says what to deploy. It is the body of POST /v1/jobs.
type Spec struct {
	// Job is the registered job's name.
	Job string `json:"job"`
	// Name is the deployment's name, unique among running deployments;
	// empty means Job.
	Name string `json:"name,omitempty"`
	// Params are the job's parameters (see `jobrunner jobs`).
	Params map[string]string `json:"params,omitempty"`
	// Parallelism and MaxParallelism: 0 means 1 and 128.
	Parallelism    int `json:"parallelism,omitempty"`
	MaxParallelism int `json:"max_parallelism,omitempty"`
	// CheckpointDir overrides the runner's directory for this deployment
	// (the deployment's checkpoints are in it directly).
	CheckpointDir string `json:"checkpoint_dir,omitempty"`
	// CheckpointInterval is a Go duration ("10s"); empty means 10s when
	// checkpoints are kept, "0" turns periodic checkpoints off.
	CheckpointInterval string `json:"checkpoint_interval,omitempty"`
	// Start is where sources start: earliest, latest, seq:N or time:T.
	// A deployment with checkpoints goes on from its latest checkpoint.
	Start string `json:"start,omitempty"`
	// Bounded reads the input up to its end at start, then finishes.
	Bounded bool `json:"bounded,omitempty"`
	// FromSavepoint is a savepoint (or checkpoint) directory to start from.
	FromSavepoint string `json:"from_savepoint,omitempty"`
	// AllowNonRestoredState drops savepoint state no operator takes.
	AllowNonRestoredState bool `json:"allow_non_restored_state,omitempty"`
	// Restarts is how often the job restarts after a failure (fixed delay of
	// RestartDelay, default 1s); 0 means never.
	Restarts     int    `json:"restarts,omitempty"`
	RestartDelay string `json:"restart_delay,omitempty"`
	// NATS, OutputDir and Postgres override the runner's defaults.
	NATS      string `json:"nats,omitempty"`
	OutputDir string `json:"output_dir,omitempty"`
	Postgres  string `json:"postgres,omitempty"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Runner runs jobs and manages them: it is what `jobrunner serve` and
// `jobrunner run` are made of. Its methods are safe for concurrent use.
type Runner struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	deps map[string]*Deployment
	wg   sync.WaitGroup
}

// New returns a runner with no deployments.
func New(opts Options) *Runner {
	if opts.Registry == nil {
		opts.Registry = jobs.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SavepointDir == "" && opts.CheckpointDir != "" {
		opts.SavepointDir = filepath.Join(opts.CheckpointDir, "savepoints")
	}
	return &Runner{opts: opts, log: opts.Logger, deps: map[string]*Deployment{}}
}

// Deployment is one job the runner runs or ran.
type Deployment struct {
	Name string
	Spec Spec
	job  *dataflow.Job
	def  jobs.Definition
	ckpt checkpoint.Storage // nil without checkpoints
	// shared: ckpt was given to DeployWithStorage (a cluster's storage,
	// which any node reads): a stop's savepoint goes there by default.
	shared bool

	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time

	mu        sync.Mutex
	state     string
	ended     time.Time
	err       error
	savepoint string // the savepoint a stop took, or the final checkpoint of a drain
	stopping  string // StateStopped or StateCanceled while a stop is under way
	rate      rateSampler
}

// Job returns the deployment's dataflow job.
func (d *Deployment) Job() *dataflow.Job { return d.job }

// Done is closed when the deployment's job has ended.
func (d *Deployment) Done() <-chan struct{} { return d.done }

// Err is why the job failed, once Done is closed; nil if it did not fail.
func (d *Deployment) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSpec, fmt.Sprintf(format, args...))
}

// Check checks what can be checked of spec without building its job (the
// job is registered, the name is valid, the parameters exist, the
// parallelism is in range), and returns it with its defaults filled in.
// Errors wrap ErrBadSpec. A cluster node checks a spec with it before the
// deployment enters the cluster's state.
func (r *Runner) Check(spec Spec) (Spec, error) {
	spec, _, err := r.check(spec)
	return spec, err
}

func (r *Runner) check(spec Spec) (Spec, jobs.Definition, error) {
	def, err := r.opts.Registry.Lookup(spec.Job)
	if err != nil {
		return spec, def, fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	if spec.Name == "" {
		spec.Name = spec.Job
	}
	if !validName.MatchString(spec.Name) {
		return spec, def, bad("deployment name %q: use letters, digits, '.', '_' and '-'", spec.Name)
	}
	known := map[string]bool{}
	for _, p := range def.Params {
		known[p.Name] = true
	}
	for k := range spec.Params {
		if !known[k] {
			return spec, def, bad("job %q has no parameter %q", spec.Job, k)
		}
	}
	if spec.Parallelism == 0 {
		spec.Parallelism = 1
	}
	if spec.MaxParallelism == 0 {
		spec.MaxParallelism = 128
	}
	if spec.Parallelism < 1 || spec.Parallelism > spec.MaxParallelism {
		return spec, def, bad("parallelism %d must be between 1 and max parallelism %d", spec.Parallelism, spec.MaxParallelism)
	}
	return spec, def, nil
}

// prepare checks spec and builds its job without running it; it returns
// the deployment and the configuration it would run with. st, if not nil,
// keeps the deployment's checkpoints instead of a local directory.
func (r *Runner) prepare(spec Spec, st checkpoint.Storage) (*Deployment, jobs.Config, error) {
	spec, def, err := r.check(spec)
	if err != nil {
		return nil, jobs.Config{}, err
	}
	cfg := r.opts.Defaults
	cfg.Params = map[string]string{}
	for k, v := range spec.Params {
		cfg.Params[k] = v
	}
	if cfg.Output == nil {
		cfg.Output = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	cfg.Logger = cfg.Logger.With("deployment", spec.Name)
	if spec.NATS != "" {
		cfg.NATS.URL = spec.NATS
	}
	if spec.OutputDir != "" {
		cfg.OutputDir = spec.OutputDir
	}
	if spec.Postgres != "" {
		cfg.Postgres = spec.Postgres
	}
	if spec.Start != "" {
		if cfg.Start, err = jetstream.ParseStartPosition(spec.Start); err != nil {
			return nil, jobs.Config{}, bad("start %q: %v", spec.Start, err)
		}
	}
	cfg.Bounded = spec.Bounded
	jc := dataflow.Config{Parallelism: spec.Parallelism, MaxParallelism: spec.MaxParallelism, Logger: cfg.Logger,
		AllowNonRestoredState: spec.AllowNonRestoredState}

	d := &Deployment{Name: spec.Name, def: def, done: make(chan struct{})}
	dir := spec.CheckpointDir
	if dir == "" && r.opts.CheckpointDir != "" && st == nil {
		dir = filepath.Join(r.opts.CheckpointDir, spec.Name)
	}
	switch {
	case st != nil && dir != "":
		return nil, jobs.Config{}, bad("checkpoint directory %s: the deployment keeps its checkpoints in %s", dir, st.Location())
	case dir != "":
		spec.CheckpointDir = dir
		if st, err = checkpoint.NewLocalStorage(dir); err != nil {
			return nil, jobs.Config{}, fmt.Errorf("checkpoint directory: %w", err)
		}
	}
	if st != nil {
		d.ckpt = st
		d.shared = dir == ""
		jc.CheckpointStorage = st
		jc.Checkpoint.Interval = 10 * time.Second
		// A deployment with checkpoints resumes from its latest one: after a
		// crash of the runner, or a stop, the same spec goes on.
		jc.RestoreFrom = st
	}
	if spec.CheckpointInterval != "" {
		iv, err := time.ParseDuration(spec.CheckpointInterval)
		if err != nil || iv < 0 {
			return nil, jobs.Config{}, bad("checkpoint interval %q: want a duration such as 10s", spec.CheckpointInterval)
		}
		jc.Checkpoint.Interval = iv
	}
	if spec.FromSavepoint != "" {
		sp, err := checkpoint.OpenLocalStorage(spec.FromSavepoint)
		if err != nil {
			return nil, jobs.Config{}, fmt.Errorf("savepoint %s: %w", spec.FromSavepoint, err)
		}
		if _, err := sp.Latest(context.Background()); err != nil {
			return nil, jobs.Config{}, fmt.Errorf("savepoint %s: %w", spec.FromSavepoint, err)
		}
		// A newer checkpoint of this deployment wins over the savepoint it
		// started from: it is where the job's output got to.
		if d.ckpt != nil {
			if _, err := d.ckpt.Latest(context.Background()); err == nil {
				return nil, jobs.Config{}, fmt.Errorf("%w: deployment %q already has checkpoints in %s: it resumes from them; start from savepoint %s with another name or checkpoint directory",
					ErrConflict, spec.Name, d.ckpt.Location(), spec.FromSavepoint)
			}
		}
		jc.RestoreFrom = sp
	}
	if spec.Restarts > 0 {
		delay := time.Second
		if spec.RestartDelay != "" {
			if delay, err = time.ParseDuration(spec.RestartDelay); err != nil {
				return nil, jobs.Config{}, bad("restart delay %q: want a duration", spec.RestartDelay)
			}
		}
		if jc.Restart, err = checkpoint.FixedDelay(spec.Restarts, delay); err != nil {
			return nil, jobs.Config{}, bad("restarts: %v", err)
		}
	} else if spec.Restarts < 0 {
		return nil, jobs.Config{}, bad("restarts %d must be >= 0", spec.Restarts)
	}
	cfg.Job = jc
	d.Spec = spec
	return d, cfg, nil
}

// Deploy builds spec's job and starts it. It returns at once; the job runs
// until its input ends, it fails, or it is stopped or canceled. demo, if
// true, runs the job's Demo first (an embedded NATS server and a generator)
// and drains the job once the demo's input was all read.
func (r *Runner) Deploy(ctx context.Context, spec Spec) (*Deployment, error) {
	return r.deploy(ctx, spec, nil, false)
}

// DeployWithStorage is Deploy with the deployment's checkpoints in st
// instead of a local directory (spec must name none): the job resumes from
// st's latest completed checkpoint, if it has one, and commits its
// checkpoints to st. A cluster node deploys with the cluster's shared
// storage, so that any node can resume the job.
func (r *Runner) DeployWithStorage(ctx context.Context, spec Spec, st checkpoint.Storage) (*Deployment, error) {
	if st == nil {
		return nil, bad("deployment %q: no checkpoint storage", spec.Name)
	}
	return r.deploy(ctx, spec, st, false)
}

// DeployDemo is Deploy for `jobrunner run JOB --demo`: the job's Demo
// prepares its input first, and the job is drained once it read all of it.
func (r *Runner) DeployDemo(ctx context.Context, spec Spec) (*Deployment, error) {
	return r.deploy(ctx, spec, nil, true)
}

func (r *Runner) deploy(ctx context.Context, spec Spec, st checkpoint.Storage, demo bool) (*Deployment, error) {
	d, cfg, err := r.prepare(spec, st)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if old, ok := r.deps[d.Name]; ok && old.State() == StateRunning {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: deployment %q is running; stop or cancel it first, or deploy under another name", ErrConflict, d.Name)
	}
	r.mu.Unlock()

	var stopDemo func() error
	var ready <-chan struct{}
	if demo {
		if d.def.Demo == nil {
			return nil, fmt.Errorf("%w: job %q has no demo", ErrBadSpec, spec.Job)
		}
		if stopDemo, ready, err = d.def.Demo(ctx, &cfg); err != nil {
			return nil, fmt.Errorf("job %q: demo: %w", spec.Job, err)
		}
		d.Spec.NATS, d.Spec.OutputDir = cfg.NATS.URL, cfg.OutputDir
	}
	job, err := d.def.Build(cfg)
	if err != nil {
		if stopDemo != nil {
			_ = stopDemo()
		}
		return nil, fmt.Errorf("%w: job %q: %w", ErrBadSpec, spec.Job, err)
	}
	if err := job.Validate(); err != nil {
		if stopDemo != nil {
			_ = stopDemo()
		}
		return nil, fmt.Errorf("%w: job %q: %w", ErrBadSpec, spec.Job, err)
	}
	d.job = job
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel, d.started, d.state = cancel, time.Now(), StateRunning

	r.mu.Lock()
	if old, ok := r.deps[d.Name]; ok && old.State() == StateRunning {
		r.mu.Unlock()
		cancel()
		if stopDemo != nil {
			_ = stopDemo()
		}
		return nil, fmt.Errorf("%w: deployment %q is running", ErrConflict, d.Name)
	}
	r.deps[d.Name] = d
	r.wg.Add(1)
	r.mu.Unlock()

	r.log.Info("job deployed", "deployment", d.Name, "job", spec.Job, "parallelism", d.Spec.Parallelism,
		"checkpoints", d.Spec.CheckpointDir, "start", spec.Start, "bounded", spec.Bounded)
	go func() {
		defer r.wg.Done()
		if ready != nil && !spec.Bounded {
			go d.drainWhenCaughtUp(runCtx, ready)
		}
		go d.sampleRate()
		err := job.Run(runCtx)
		if stopDemo != nil {
			if serr := stopDemo(); serr != nil {
				r.log.Warn("stopping the demo", "deployment", d.Name, "error", serr)
			}
		}
		d.finish(err)
		d.mu.Lock()
		state, derr := d.state, d.err
		d.mu.Unlock()
		if derr != nil {
			r.log.Error("job failed", "deployment", d.Name, "error", derr)
		} else {
			r.log.Info("job ended", "deployment", d.Name, "state", state, "ran", time.Since(d.started).Round(time.Millisecond))
		}
	}()
	return d, nil
}

// drainWhenCaughtUp drains a demo job once the demo produced all its input
// and the sources have read it: their output stopped growing.
func (d *Deployment) drainWhenCaughtUp(ctx context.Context, ready <-chan struct{}) {
	select {
	case <-ready:
	case <-ctx.Done():
		return
	case <-d.done:
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last, still := int64(-1), 0
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-d.done:
			return
		}
		in := sourceRecords(d.job.Metrics())
		if in == last && in > 0 {
			still++
		} else {
			still = 0
		}
		last = in
		if still >= 2 {
			_ = d.job.Drain(ctx)
			return
		}
	}
}

// sampleRate samples the sources' output every second while the job runs,
// so that the rate Status shows is recent whenever it is asked.
func (d *Deployment) sampleRate() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			d.rate.observe(now, sourceRecords(d.job.Metrics()))
		case <-d.done:
			return
		}
	}
}

func (d *Deployment) finish(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = time.Now()
	switch {
	case d.stopping == StateCanceled:
		d.state = StateCanceled
	case err != nil:
		d.state, d.err = StateFailed, err
	case d.stopping == StateStopped:
		d.state = StateStopped
	default:
		d.state = StateFinished
	}
	close(d.done)
}

// State is the deployment's state: RUNNING, FINISHED, STOPPED, CANCELED or
// FAILED.
func (d *Deployment) State() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

func (r *Runner) get(name string) (*Deployment, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.deps[name]
	if !ok {
		names := make([]string, 0, len(r.deps))
		for n := range r.deps {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w %q (deployments: %s)", ErrNotFound, name, strings.Join(names, ", "))
	}
	return d, nil
}

// Get returns the deployment called name.
func (r *Runner) Get(name string) (*Deployment, error) { return r.get(name) }

// List returns the status of every deployment, by name.
func (r *Runner) List() []Status {
	r.mu.Lock()
	deps := make([]*Deployment, 0, len(r.deps))
	for _, d := range r.deps {
		deps = append(deps, d)
	}
	r.mu.Unlock()
	sort.Slice(deps, func(i, j int) bool { return deps[i].Name < deps[j].Name })
	out := make([]Status, len(deps))
	for i, d := range deps {
		out[i] = d.Status()
	}
	return out
}

// Status returns the status of deployment name.
func (r *Runner) Status(name string) (Status, error) {
	d, err := r.get(name)
	if err != nil {
		return Status{}, err
	}
	return d.Status(), nil
}

// SavepointResult says where a savepoint went.
type SavepointResult struct {
	Deployment string `json:"deployment"`
	ID         int64  `json:"id"`
	Path       string `json:"path"`
	// Final is true for the final checkpoint of a drained job.
	Final bool `json:"final,omitempty"`
}

func (r *Runner) savepointDir(d *Deployment, dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if r.opts.SavepointDir == "" {
		return "", fmt.Errorf("%w: no savepoint directory given and the runner has none (start it with --checkpoint-dir or --savepoint-dir)", ErrBadSpec)
	}
	return filepath.Join(r.opts.SavepointDir, fmt.Sprintf("%s-%s", d.Name, time.Now().UTC().Format("20060102T150405.000Z"))), nil
}

// Savepoint takes a savepoint of the running deployment name into dir (a new
// directory under the runner's savepoint directory if empty).
func (r *Runner) Savepoint(ctx context.Context, name, dir string) (SavepointResult, error) {
	d, err := r.get(name)
	if err != nil {
		return SavepointResult{}, err
	}
	if d.State() != StateRunning {
		return SavepointResult{}, fmt.Errorf("%w: deployment %q is %s", ErrConflict, name, d.State())
	}
	if dir, err = r.savepointDir(d, dir); err != nil {
		return SavepointResult{}, err
	}
	st, err := checkpoint.NewLocalStorage(dir)
	if err != nil {
		return SavepointResult{}, err
	}
	m, err := d.job.Savepoint(ctx, st)
	if err != nil {
		return SavepointResult{}, err
	}
	r.log.Info("savepoint taken", "deployment", name, "id", m.ID, "path", dir)
	return SavepointResult{Deployment: name, ID: m.ID, Path: dir}, nil
}

// Stop stops the running deployment name. With drain, its sources end
// their input where they are, every window fires and the final checkpoint
// commits everything (the result names that checkpoint's directory, the
// deployment's checkpoint storage). Without drain it stops with a
// savepoint into dir; an empty dir means, for a deployment of
// DeployWithStorage, that storage (a cluster's, which every node reads:
// deployed again, the deployment resumes from the savepoint), and else a
// new directory as for Savepoint. It returns once the job has ended.
func (r *Runner) Stop(ctx context.Context, name string, drain bool, dir string) (SavepointResult, error) {
	d, err := r.get(name)
	if err != nil {
		return SavepointResult{}, err
	}
	if d.State() != StateRunning {
		return SavepointResult{}, fmt.Errorf("%w: deployment %q is %s", ErrConflict, name, d.State())
	}
	if drain {
		if err := d.job.Drain(ctx); err != nil {
			return SavepointResult{}, err
		}
		select {
		case <-d.done:
		case <-ctx.Done():
			return SavepointResult{}, ctx.Err()
		}
		if err := d.Err(); err != nil {
			return SavepointResult{}, fmt.Errorf("deployment %q failed while draining: %w", name, err)
		}
		res := SavepointResult{Deployment: name, Final: true}
		if d.ckpt != nil {
			if m, err := d.ckpt.Latest(ctx); err == nil {
				res.ID, res.Path = m.ID, d.ckpt.Location()
			}
		}
		d.mu.Lock()
		d.savepoint = res.Path
		d.mu.Unlock()
		return res, nil
	}
	var st checkpoint.Storage
	if dir == "" && d.shared {
		// Into the shared storage the deployment resumes from: deployed
		// again, on any node, it goes on from this savepoint.
		st, dir = d.ckpt, d.ckpt.Location()
	} else {
		if dir, err = r.savepointDir(d, dir); err != nil {
			return SavepointResult{}, err
		}
		if st, err = checkpoint.NewLocalStorage(dir); err != nil {
			return SavepointResult{}, err
		}
	}
	return r.stopWithSavepoint(ctx, d, st, dir)
}

// Rescale stops the running deployment name with a savepoint into its own
// checkpoint storage and deploys it again at parallelism p, resumed from
// that savepoint: its keyed state is split by key group over the new
// subtasks, and its sources' positions carry over, so that the output is
// what one uninterrupted run gives. It needs a deployment with
// checkpoints.
func (r *Runner) Rescale(ctx context.Context, name string, p int) (*Deployment, error) {
	d, err := r.get(name)
	if err != nil {
		return nil, err
	}
	if d.ckpt == nil {
		return nil, bad("deployment %q keeps no checkpoints: a rescale resumes it from a savepoint in its checkpoint storage (deploy it with a checkpoint directory)", name)
	}
	if d.State() != StateRunning {
		return nil, fmt.Errorf("%w: deployment %q is %s", ErrConflict, name, d.State())
	}
	if p < 1 {
		return nil, bad("deployment %q: rescale to parallelism %d: want at least 1", name, p)
	}
	spec := d.Spec
	spec.Parallelism, spec.FromSavepoint = p, ""
	if spec, err = r.Check(spec); err != nil {
		return nil, err
	}
	if _, err := r.stopWithSavepoint(ctx, d, d.ckpt, d.ckpt.Location()); err != nil {
		return nil, err
	}
	var st checkpoint.Storage
	if d.shared {
		st = d.ckpt
	}
	nd, err := r.deploy(ctx, spec, st, false)
	if err != nil {
		return nil, fmt.Errorf("deployment %q stopped with a savepoint in %s for the rescale, but did not start again at parallelism %d (deploy it again to resume): %w",
			name, d.ckpt.Location(), p, err)
	}
	r.log.Info("rescaled", "deployment", name, "parallelism", p)
	return nd, nil
}

// stopWithSavepoint stops d with a savepoint into st, which is at dir, and
// waits until it ended.
func (r *Runner) stopWithSavepoint(ctx context.Context, d *Deployment, st checkpoint.Storage, dir string) (SavepointResult, error) {
	name := d.Name
	d.mu.Lock()
	d.stopping = StateStopped
	d.mu.Unlock()
	m, err := d.job.StopWithSavepoint(ctx, st)
	if err != nil {
		d.mu.Lock()
		d.stopping = ""
		d.mu.Unlock()
		return SavepointResult{}, err
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return SavepointResult{}, ctx.Err()
	}
	d.mu.Lock()
	d.savepoint = dir
	d.mu.Unlock()
	r.log.Info("stopped with savepoint", "deployment", name, "id", m.ID, "path", dir)
	return SavepointResult{Deployment: name, ID: m.ID, Path: dir}, nil
}

// Cancel ends the running deployment name at once, without a savepoint, and
// waits until it has ended. Its checkpoints stay: deploying it again resumes
// from the latest.
func (r *Runner) Cancel(ctx context.Context, name string) error {
	d, err := r.get(name)
	if err != nil {
		return err
	}
	if d.State() != StateRunning {
		return fmt.Errorf("%w: deployment %q is %s", ErrConflict, name, d.State())
	}
	d.mu.Lock()
	d.stopping = StateCanceled
	d.mu.Unlock()
	d.cancel()
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CheckpointSummary describes one completed checkpoint of a deployment.
type CheckpointSummary struct {
	ID      int64     `json:"id"`
	Kind    string    `json:"kind"`
	Final   bool      `json:"final,omitempty"`
	Created time.Time `json:"created"`
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
}

// Checkpoints lists the completed checkpoints the deployment keeps, oldest
// first.
func (r *Runner) Checkpoints(ctx context.Context, name string) ([]CheckpointSummary, error) {
	d, err := r.get(name)
	if err != nil {
		return nil, err
	}
	if d.ckpt == nil {
		return nil, fmt.Errorf("%w: deployment %q keeps no checkpoints (deploy it with a checkpoint directory)", ErrBadSpec, name)
	}
	ids, err := d.ckpt.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]CheckpointSummary, 0, len(ids))
	for _, id := range ids {
		m, err := d.ckpt.Load(ctx, id)
		if err != nil {
			if errors.Is(err, checkpoint.ErrNoCheckpoint) {
				continue // pruned meanwhile
			}
			return nil, err
		}
		s := CheckpointSummary{ID: m.ID, Kind: string(m.Kind), Final: m.Final, Created: m.Created}
		for _, f := range m.Files() {
			s.Files++
			s.Bytes += f.Size
		}
		out = append(out, s)
	}
	return out, nil
}

// Close cancels every running deployment and waits until all have ended.
// Their checkpoints stay.
func (r *Runner) Close() {
	r.mu.Lock()
	for _, d := range r.deps {
		d.mu.Lock()
		if d.state == StateRunning && d.stopping == "" {
			d.stopping = StateCanceled
		}
		d.mu.Unlock()
		d.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
