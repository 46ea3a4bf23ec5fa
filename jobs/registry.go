package jobs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"sync"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
)

// ErrUnknownJob is returned by Lookup for a name nobody registered.
var ErrUnknownJob = errors.New("jobs: unknown job")

// Definition describes a job that can be built by name.
type Definition struct {
	// Name is what users type: jobrunner run NAME.
	Name string
	// Description is one line shown by `jobrunner jobs`.
	Description string
	// Params documents the parameters the job reads from Config.Params, with
	// their defaults.
	Params []Param
	// Build makes the job. It must not start anything: the runner runs it.
	Build func(cfg Config) (*dataflow.Job, error)
	// Demo, if set, prepares what the job reads for `jobrunner run JOB
	// --demo` on a machine with no services: it starts them (for example an
	// embedded NATS server and an event generator), points cfg at them, and
	// returns a function that stops them. It may also start producing input
	// in the background; ready, if not nil, is closed once all demo input was
	// produced (the runner then ends a live job after it caught up).
	Demo func(ctx context.Context, cfg *Config) (stop func() error, ready <-chan struct{}, err error)
	// Backlog, if set, returns how many records the job's sources hold from
	// its start position to the end of their input now: jobrunner replay
	// shows progress against it.
	Backlog func(ctx context.Context, cfg Config) (int64, error)
	// Generate, if set, publishes generated input for the job (`jobrunner
	// generate JOB [flags]`) to the server cfg.NATS names; fs is a flag set
	// for the generator's own flags, which Generate registers and parses from
	// args. It returns how many records it published.
	Generate func(ctx context.Context, cfg Config, fs *flag.FlagSet, args []string) (published int64, err error)
}

// Param is one documented job parameter.
type Param struct {
	Name, Default, Usage string
}

// Config is what the runner passes to Build.
type Config struct {
	// Job is the dataflow configuration (parallelism and the rest).
	Job dataflow.Config
	// Params are job-specific settings given as name=value.
	Params map[string]string
	// Output is where jobs that print results write them.
	Output io.Writer

	// NATS says how jobs that read or write JetStream connect.
	NATS jetstream.ConnConfig
	// Start is where JetStream sources of a job that is not restored start.
	Start jetstream.StartPosition
	// Bounded makes sources read up to the end of their input as it is when
	// the job starts, then finish (a backfill or replay).
	Bounded bool
	// OutputDir is the directory file sinks write under, one subdirectory
	// per sink; empty means jobs do not write files.
	OutputDir string
	// Postgres is a connection string; jobs write to Postgres only if set.
	Postgres string
	// Logger receives the job's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Int reads parameter name as an integer, or def if it is unset.
func (c Config) Int(name string, def int64) (int64, error) {
	s, ok := c.Params[name]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parameter %s=%q: not an integer", name, s)
	}
	return v, nil
}

// Float reads parameter name as a number, or def if it is unset.
func (c Config) Float(name string, def float64) (float64, error) {
	s, ok := c.Params[name]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parameter %s=%q: not a number", name, s)
	}
	return v, nil
}

// Registry holds job definitions by name. It is safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	defs map[string]Definition
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{defs: map[string]Definition{}} }

// Default is the registry that Register adds to.
var Default = NewRegistry()

// Register adds d to the Default registry. It panics if d has no name or
// builder, or if the name is taken: both are programming errors.
func Register(d Definition) { Default.Register(d) }

// Register adds d to r, with the same rules as the package-level Register.
func (r *Registry) Register(d Definition) {
	if d.Name == "" || d.Build == nil {
		panic("jobs: Register needs a name and a Build function")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.defs[d.Name]; dup {
		panic("jobs: Register called twice for job " + d.Name)
	}
	r.defs[d.Name] = d
}

// Lookup returns the definition registered as name.
func (r *Registry) Lookup(name string) (Definition, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.defs[name]
	if !ok {
		names := make([]string, 0, len(r.defs))
		for n := range r.defs {
			names = append(names, n)
		}
		sort.Strings(names)
		return Definition{}, fmt.Errorf("%w %q (registered: %v)", ErrUnknownJob, name, names)
	}
	return d, nil
}

// All returns every definition, sorted by name.
func (r *Registry) All() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Definition, 0, len(r.defs))
	for _, d := range r.defs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
