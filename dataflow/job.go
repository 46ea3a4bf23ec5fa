package dataflow

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// Config holds job-wide settings. Zero fields take the values of DefaultConfig.
type Config struct {
	// Parallelism is the default number of subtasks per operator.
	Parallelism int
	// MaxParallelism is the number of key groups. It bounds parallelism and must
	// stay fixed for the life of a job's state.
	MaxParallelism int
	// BatchSize is the number of records sent between tasks in one batch.
	// Larger batches spread the cost of a hand-over (and of the cache
	// misses of moving a batch to another core) over more records: on 2
	// cores, a keyed running count at parallelism 2 ran 1.32x its
	// parallelism-1 rate with 1024 (the default) against 1.1-1.3x with 256
	// (BenchmarkSpeedup); beyond 1024 it gained nothing. Linger bounds the
	// latency a large batch could add.
	BatchSize int
	// Linger bounds how long a record may wait in a partly filled batch while
	// its task is busy. A task that runs out of input flushes at once.
	Linger time.Duration
	// QueueBatches is the capacity, in batches, of each channel between two
	// subtasks. Memory between tasks is bounded by channels x QueueBatches x BatchSize records.
	QueueBatches int
	// StateBackend makes the keyed state backend of one keyed operator
	// subtask; nil means state.NewHeap.
	//
	// The heap backend keeps state as Go values: use it while the state fits
	// in memory with room to spare. A tumbling-window count over 1M keys
	// (BenchmarkStateGrowth in window/) ran at 6.5-6.8 M events/s with 85
	// bytes of RSS per key (the window's buffer entry, 64 bytes, and its
	// index slot, 8), and over 10M keys at 4.1-4.3 M events/s in 597 MB.
	// The Go collector lets the heap grow past what is live: set
	// GOMEMLIMIT to hold RSS nearer the live heap.
	//
	// state.NewBadger keeps state in a local Badger store behind a bounded
	// cache (BadgerConfig.CacheEntries) and a memory limit checked at start
	// (BadgerConfig.MemoryLimit): use it when the state does not fit in
	// memory, or must not take what it would. While the live keys fit in its
	// cache it runs at about the heap's rate (0.99-1.01x, 1M keys). Beyond, a window
	// aggregation with no allowed lateness and integer or string keys keeps
	// sorted runs of partial accumulators instead of per-key state (see
	// package window): no record reads the store, and at 10M keys through a
	// 1M-entry cache it ran at 6.4-7.8x Badger's single-goroutine
	// point-read rate, in 1.4 GiB with GOMEMLIMIT=1150MiB. Other keyed
	// state reads the store on a cache miss (a window with a lateness so
	// ran at about half that rate). See the README ("Scaling up") for the
	// figures.
	StateBackend func(cfg state.Config) (state.Backend, error)
	// Clock is the processing-time clock of timers; nil means time.Now.
	// TestHarness scripts it.
	Clock func() time.Time

	// Checkpoint configures periodic checkpoints into CheckpointStorage. With
	// no storage there are no periodic checkpoints, but the job still takes a
	// final checkpoint at end of input, so that two-phase sinks commit.
	Checkpoint checkpoint.Config
	// CheckpointStorage keeps the job's checkpoints, for example
	// checkpoint.NewLocalStorage(dir).
	CheckpointStorage checkpoint.Storage
	// Restart says whether and when the job restarts after a failure: from
	// the latest completed checkpoint, or from the start (or RestoreFrom) if
	// there is none. nil means checkpoint.NoRestart().
	Restart checkpoint.RestartStrategy
	// RestoreFrom is a storage whose latest checkpoint or savepoint the job
	// starts from: a savepoint directory (checkpoint.OpenLocalStorage), or the
	// job's own CheckpointStorage to resume after the process was stopped.
	// If it holds no checkpoint the job starts fresh only when it is the
	// CheckpointStorage itself; otherwise that is an error.
	RestoreFrom checkpoint.Storage
	// Logger receives the job's events: restarts and their causes, failed
	// checkpoints. nil means slog.Default().
	Logger *slog.Logger

	// AllowNonRestoredState lets a job restore from a checkpoint that has
	// state for operators the job no longer has; that state is dropped. An
	// operator that saved no state (a stateless map, a local pre-aggregation)
	// may be gone without it.
	AllowNonRestoredState bool
}

// DefaultConfig returns the defaults: parallelism 1, 128 key groups, batches of
// 1024 records, 2 ms linger, 4 batches per channel.
func DefaultConfig() Config {
	return Config{
		Parallelism:    1,
		MaxParallelism: keygroup.DefaultMaxParallelism,
		BatchSize:      1024,
		Linger:         2 * time.Millisecond,
		QueueBatches:   4,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Parallelism == 0 {
		c.Parallelism = d.Parallelism
	}
	if c.MaxParallelism == 0 {
		c.MaxParallelism = d.MaxParallelism
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.Linger == 0 {
		c.Linger = d.Linger
	}
	if c.QueueBatches == 0 {
		c.QueueBatches = d.QueueBatches
	}
	if c.StateBackend == nil {
		c.StateBackend = state.NewHeap
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the settings.
func (c Config) Validate() error {
	if err := keygroup.Validate(c.Parallelism, c.MaxParallelism); err != nil {
		return fmt.Errorf("%w: job default: %v", ErrParallelism, err)
	}
	if c.BatchSize < 1 {
		return fmt.Errorf("dataflow: batch size %d must be at least 1", c.BatchSize)
	}
	if c.Linger < 0 {
		return fmt.Errorf("dataflow: linger %v must not be negative", c.Linger)
	}
	if c.QueueBatches < 1 {
		return fmt.Errorf("dataflow: queue capacity %d batches must be at least 1", c.QueueBatches)
	}
	return nil
}

// Job is a dataflow graph under construction, and then the handle to run it.
//
// Building functions (sources, operators, sinks) never fail on the spot: they
// record problems on the job, and Validate, Plan and Run report all of them,
// each naming its operator. Nothing starts running for an invalid job.
//
// A Job is built from one goroutine. Run may be called once at a time.
type Job struct {
	name       string
	cfg        Config
	nodes      []*node
	byName     map[string]*node
	errs       []error
	running    atomic.Bool
	restarts   atomic.Int64
	active     atomic.Pointer[activeRun]
	runMu      sync.Mutex
	runChanged chan struct{} // closed when active changes
	metrics    metricsBase
	// nextCheckpointID is where the next run's checkpoint ids start: one
	// after the last its previous run started. Used by Run's goroutine only.
	nextCheckpointID int64
}

// NewJob starts an empty job. An optional Config overrides the defaults.
func NewJob(name string, cfg ...Config) *Job {
	j := &Job{name: name, byName: map[string]*node{}}
	if len(cfg) > 0 {
		j.cfg = cfg[0]
	}
	j.cfg = j.cfg.withDefaults()
	if len(cfg) > 1 {
		j.errs = append(j.errs, errors.New("dataflow: NewJob takes at most one Config"))
	}
	return j
}

// Name is the job's name.
func (j *Job) Name() string { return j.name }

// Config is the job's effective configuration.
func (j *Job) Config() Config { return j.cfg }

func (j *Job) addErr(err error) { j.errs = append(j.errs, err) }

// ReportError records a problem that a source, operator or sink constructor
// found while building (an invalid connector configuration, say). Like every
// build error it is returned by Validate, Plan and Run, and nothing runs.
func (j *Job) ReportError(operator string, err error) {
	j.addErr(fmt.Errorf("dataflow: operator %q: %w", operator, err))
}

// Option sets a property of one operator.
type Option func(*node)

// Parallelism sets the number of subtasks of the operator.
func Parallelism(n int) Option {
	return func(nd *node) { nd.parallelism = n; nd.parallelismSet = true }
}

// ParallelismOfInput gives the operator the parallelism of its (first)
// input's operator instead of the job's, so that with a default
// partitioning it is chained to it. Operators that belong with their
// input, such as a local pre-aggregation before a keyed exchange, use it.
// It is ignored when Parallelism is also given.
func ParallelismOfInput() Option { return func(nd *node) { nd.inheritPar = true } }

// DisableChaining keeps the operator in a task of its own, connected to its
// neighbours through exchanges. Useful to isolate a slow or blocking operator.
func DisableChaining() Option { return func(nd *node) { nd.noChain = true } }

type nodeKind uint8

const (
	kindSource nodeKind = iota
	kindOperator
	kindSink
)

func (k nodeKind) String() string {
	return [...]string{"source", "operator", "sink"}[k]
}

// node is one operator in the graph. Its typed behaviour lives in closures made
// by the generic functions that created it.
type node struct {
	id             int
	name           string
	kind           nodeKind
	parallelism    int
	parallelismSet bool
	inheritPar     bool // ParallelismOfInput
	noChain        bool
	keyed          bool
	inputs         []*edge
	ports          []*port // ports[0] is the main output; others are side outputs
	in             elemType
	// build makes one subtask's operator. outs holds, per port, the typed
	// Output[T] as any. It returns the operator's typed input (an Output[In] as
	// any) for operators and sinks, nil for sources.
	build func(b *buildCtx) (input any, life lifecycle, err error)
}

type port struct {
	tag       string // "" for the main output
	typ       elemType
	consumers []*edge
}

type partitioning uint8

const (
	partDefault partitioning = iota // forward if parallelism matches, else rebalance
	partForward
	partRebalance
	partHash
	partBroadcast
)

func (p partitioning) String() string {
	return [...]string{"default", "forward", "rebalance", "hash", "broadcast"}[p]
}

type edge struct {
	from *node
	port *port
	to   *node
	part partitioning
	// hash makes a writer's keyGroupsFunc for maxParallelism key groups; set for partHash.
	hash func(maxParallelism int) any
}

// addNode registers a node, checking its name.
func (j *Job) addNode(name string, kind nodeKind, opts []Option) *node {
	n := &node{id: len(j.nodes), name: name, kind: kind}
	for _, o := range opts {
		if o != nil {
			o(n)
		}
	}
	if name == "" {
		j.addErr(fmt.Errorf("%w (operator #%d, a %s)", ErrEmptyName, n.id, kind))
	} else if prev, ok := j.byName[name]; ok {
		j.addErr(fmt.Errorf("%w: %q names operator #%d and #%d", ErrDuplicateName, name, prev.id, n.id))
	} else {
		j.byName[name] = n
	}
	if n.parallelismSet {
		if err := keygroup.Validate(n.parallelism, j.cfg.MaxParallelism); err != nil {
			j.addErr(fmt.Errorf("%w: operator %q: %v", ErrParallelism, name, err))
		}
	}
	j.nodes = append(j.nodes, n)
	return n
}

// par is n's parallelism: set, its input's (ParallelismOfInput), or the job's.
func (j *Job) par(n *node) int {
	for n.inheritPar && !n.parallelismSet && len(n.inputs) > 0 {
		n = n.inputs[0].from
	}
	if n.parallelismSet {
		return n.parallelism
	}
	return j.cfg.Parallelism
}

// ParallelismOf is the parallelism an operator added with opts would have:
// the one Parallelism sets, else the job's. Operator builders use it to
// choose a plan (see Stream.Parallelism).
func (j *Job) ParallelismOf(opts ...Option) int {
	n := &node{}
	for _, o := range opts {
		if o != nil {
			o(n)
		}
	}
	if n.parallelismSet {
		return n.parallelism
	}
	return j.cfg.Parallelism
}
