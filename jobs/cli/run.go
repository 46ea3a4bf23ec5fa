package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/runner"
)

// jobFlags are the flags that describe a job to run: run, replay, deploy
// and plan share them.
type jobFlags struct {
	spec       runner.Spec
	params     params
	config     string
	demo       bool
	httpAddr   string
	fromOffset int64
	live       bool
	format     string
	set        map[string]bool // flags given on the command line
}

func newFlagSet(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseJob parses "JOB [flags]" for verb.
func parseJob(verb string, args []string) (*jobFlags, error) {
	jf := &jobFlags{params: params{}}
	fs := newFlagSet(verb)
	sp := &jf.spec
	fs.IntVar(&sp.Parallelism, "parallelism", 1, "")
	fs.IntVar(&sp.MaxParallelism, "max-parallelism", 128, "")
	fs.Var(jf.params, "set", "")
	fs.StringVar(&jf.config, "config", "", "")
	fs.StringVar(&sp.Name, "name", "", "")
	if verb == "plan" {
		fs.StringVar(&jf.format, "format", "text", "")
	} else {
		fs.StringVar(&sp.CheckpointDir, "checkpoint-dir", "", "")
		fs.StringVar(&sp.CheckpointInterval, "checkpoint-interval", "", "")
		fs.StringVar(&sp.Start, "start", "", "")
		fs.StringVar(&sp.FromSavepoint, "from-savepoint", "", "")
		fs.BoolVar(&sp.Bounded, "bounded", false, "")
		fs.IntVar(&sp.Restarts, "restarts", 0, "")
		fs.StringVar(&sp.NATS, "nats", "", "")
		fs.StringVar(&sp.OutputDir, "output", "", "")
		fs.StringVar(&sp.Postgres, "postgres", "", "")
	}
	switch verb {
	case "run":
		fs.BoolVar(&jf.demo, "demo", false, "")
		fs.StringVar(&jf.httpAddr, "http", "", "")
	case "replay":
		fs.Int64Var(&jf.fromOffset, "from-offset", -1, "")
		fs.BoolVar(&jf.live, "live", false, "")
	}
	// The job name comes first; flags follow it (flag stops at the first non-flag).
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return nil, usageError{errors.New("missing job name; see 'jobrunner jobs'")}
	}
	sp.Job = args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	jf.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { jf.set[f.Name] = true })
	if jf.config != "" {
		if err := jf.applyConfig(); err != nil {
			return nil, usageError{err}
		}
	}
	if len(jf.params) > 0 {
		if sp.Params == nil {
			sp.Params = map[string]string{}
		}
		for k, v := range jf.params {
			sp.Params[k] = v
		}
	}
	if sp.Parallelism < 1 || sp.MaxParallelism < 1 || sp.Parallelism > sp.MaxParallelism {
		return nil, usageError{fmt.Errorf("--parallelism %d must be between 1 and --max-parallelism %d", sp.Parallelism, sp.MaxParallelism)}
	}
	if sp.CheckpointInterval != "" {
		if d, err := time.ParseDuration(sp.CheckpointInterval); err != nil || d < 0 {
			return nil, usageError{fmt.Errorf("--checkpoint-interval %q: want a duration such as 10s", sp.CheckpointInterval)}
		}
	}
	if sp.Restarts < 0 {
		return nil, usageError{fmt.Errorf("--restarts %d: must be >= 0", sp.Restarts)}
	}
	if verb == "replay" {
		if !jf.set["from-offset"] {
			return nil, usageError{errors.New("replay needs --from-offset N (0 is the beginning of the stream)")}
		}
		if jf.fromOffset < 0 {
			return nil, usageError{fmt.Errorf("--from-offset %d: must be >= 0", jf.fromOffset)}
		}
		if sp.Start != "" {
			return nil, usageError{errors.New("replay takes --from-offset, not --start")}
		}
		if jf.fromOffset == 0 {
			sp.Start = "earliest"
		} else {
			sp.Start = "seq:" + strconv.FormatInt(jf.fromOffset, 10)
		}
		sp.Bounded = !jf.live
	}
	if jf.demo && sp.NATS != "" {
		return nil, usageError{errors.New("--demo starts its own NATS server: drop --nats")}
	}
	return jf, nil
}

// applyConfig reads the --config file; flags given on the command line win.
func (jf *jobFlags) applyConfig() error {
	b, err := os.ReadFile(jf.config)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var file runner.Spec
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("--config %s: %w", jf.config, err)
	}
	if file.Job != "" && file.Job != jf.spec.Job {
		return fmt.Errorf("--config %s is for job %q, not %q", jf.config, file.Job, jf.spec.Job)
	}
	flagged := jf.spec
	jf.spec = file
	jf.spec.Job = flagged.Job
	over := map[string]func(){
		"parallelism":         func() { jf.spec.Parallelism = flagged.Parallelism },
		"max-parallelism":     func() { jf.spec.MaxParallelism = flagged.MaxParallelism },
		"name":                func() { jf.spec.Name = flagged.Name },
		"checkpoint-dir":      func() { jf.spec.CheckpointDir = flagged.CheckpointDir },
		"checkpoint-interval": func() { jf.spec.CheckpointInterval = flagged.CheckpointInterval },
		"start":               func() { jf.spec.Start = flagged.Start },
		"from-savepoint":      func() { jf.spec.FromSavepoint = flagged.FromSavepoint },
		"bounded":             func() { jf.spec.Bounded = flagged.Bounded },
		"restarts":            func() { jf.spec.Restarts = flagged.Restarts },
		"nats":                func() { jf.spec.NATS = flagged.NATS },
		"output":              func() { jf.spec.OutputDir = flagged.OutputDir },
		"postgres":            func() { jf.spec.Postgres = flagged.Postgres },
	}
	for name, apply := range over {
		if jf.set[name] {
			apply()
		}
	}
	if jf.spec.Parallelism == 0 {
		jf.spec.Parallelism = 1
	}
	if jf.spec.MaxParallelism == 0 {
		jf.spec.MaxParallelism = 128
	}
	return nil
}

// defaults are the settings a spec leaves to the environment.
func defaults(stdout io.Writer) jobs.Config {
	cfg := jobs.Config{Output: stdout, OutputDir: "sluice-output"}
	cfg.NATS.URL = os.Getenv("SLUICE_NATS_URL")
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = "nats://127.0.0.1:4222"
	}
	cfg.Postgres = os.Getenv("SLUICE_POSTGRES")
	return cfg
}

// runJob runs one job in the foreground: `run` and `replay`.
func runJob(ctx context.Context, reg *jobs.Registry, verb string, args []string, stdout, stderr io.Writer) error {
	jf, err := parseJob(verb, args)
	if err != nil {
		return err
	}
	def, err := reg.Lookup(jf.spec.Job)
	if err != nil {
		return usageError{err}
	}
	if jf.demo && def.Demo == nil {
		return usageError{fmt.Errorf("job %q has no --demo", def.Name)}
	}
	r := runner.New(runner.Options{Registry: reg, Defaults: defaults(stdout), Logger: logger(stderr)})
	defer r.Close()
	if jf.httpAddr != "" {
		stop, err := listen(ctx, jf.httpAddr, r.Handler(), stderr)
		if err != nil {
			return err
		}
		defer stop()
	}
	var backlog int64 = -1
	if verb == "replay" && def.Backlog != nil {
		cfg := defaults(stdout)
		if jf.spec.NATS != "" {
			cfg.NATS.URL = jf.spec.NATS
		}
		cfg.Params = jf.spec.Params
		if cfg.Start, err = jetstream.ParseStartPosition(jf.spec.Start); err != nil {
			return usageError{err}
		}
		if backlog, err = def.Backlog(ctx, cfg); err != nil {
			return fmt.Errorf("job %q: %w", def.Name, err)
		}
	}
	var d *runner.Deployment
	if jf.demo {
		d, err = r.DeployDemo(ctx, jf.spec)
	} else {
		d, err = r.Deploy(ctx, jf.spec)
	}
	if err != nil {
		if errors.Is(err, runner.ErrBadSpec) {
			return usageError{err}
		}
		return err
	}
	if jf.demo {
		fmt.Fprintf(stderr, "demo: job %q reading NATS at %s, writing results under %s\n", def.Name, d.Spec.NATS, d.Spec.OutputDir)
	}
	var progress *progressBar
	if verb == "replay" {
		progress = newProgress(stderr, backlog)
		go progress.follow(d)
	}
	start := time.Now()
	select {
	case <-d.Done():
	case <-ctx.Done():
		_ = r.Cancel(context.Background(), d.Name)
		fmt.Fprintf(stderr, "job %q interrupted after %v\n", def.Name, time.Since(start).Round(time.Millisecond))
		return nil
	}
	if progress != nil {
		progress.finish(d, d.Err() == nil && d.State() == runner.StateFinished)
	}
	st := d.Status()
	if err := d.Err(); err != nil {
		return fmt.Errorf("job %q failed: %w", def.Name, err)
	}
	fmt.Fprintf(stderr, "job %q %s in %v: %d records read\n", def.Name, strings.ToLower(st.State),
		time.Since(start).Round(time.Millisecond), st.RecordsIn)
	return nil
}

// listen serves h on addr until the returned function is called or ctx ends.
// A busy port is an error at once.
func listen(ctx context.Context, addr string, h http.Handler, stderr io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	return serveOn(ctx, ln, h, stderr), nil
}

// serveOn serves h on ln until the returned stop is called.
func serveOn(ctx context.Context, ln net.Listener, h http.Handler, stderr io.Writer) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stderr, "REST API and /metrics on http://%s\n", ln.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}

// logger writes the runner's and the jobs' logs to stderr as text.
func logger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func planJob(reg *jobs.Registry, args []string, stdout io.Writer) error {
	jf, err := parseJob("plan", args)
	if err != nil {
		return err
	}
	def, err := reg.Lookup(jf.spec.Job)
	if err != nil {
		return usageError{err}
	}
	known := map[string]bool{}
	for _, p := range def.Params {
		known[p.Name] = true
	}
	for k := range jf.spec.Params {
		if !known[k] {
			return usageError{fmt.Errorf("job %q has no parameter %q", def.Name, k)}
		}
	}
	cfg := defaults(io.Discard)
	cfg.Params = jf.spec.Params
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Job = dataflow.Config{Parallelism: jf.spec.Parallelism, MaxParallelism: jf.spec.MaxParallelism}
	job, err := def.Build(cfg)
	if err != nil {
		return usageError{fmt.Errorf("job %q: %w", def.Name, err)}
	}
	plan, err := job.Plan()
	if err != nil {
		return fmt.Errorf("job %q: %w", def.Name, err)
	}
	switch jf.format {
	case "text":
		fmt.Fprint(stdout, plan)
	case "dot":
		fmt.Fprint(stdout, plan.DOT())
	case "json":
		js, err := plan.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", js)
	default:
		return usageError{fmt.Errorf("--format %q: want text, dot or json", jf.format)}
	}
	return nil
}

// generate runs a job's generator: `jobrunner generate JOB [--nats URL]
// [generator flags]`.
func generate(ctx context.Context, reg *jobs.Registry, args []string, stdout io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError{errors.New("missing job name; see 'jobrunner jobs'")}
	}
	def, err := reg.Lookup(args[0])
	if err != nil {
		return usageError{err}
	}
	if def.Generate == nil {
		return usageError{fmt.Errorf("job %q has no generator", def.Name)}
	}
	cfg := defaults(stdout)
	var rest []string
	args = args[1:]
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--nats" || a == "-nats":
			if i+1 >= len(args) {
				return usageError{errors.New("--nats needs a URL")}
			}
			cfg.NATS.URL = args[i+1]
			i++
		case strings.HasPrefix(a, "--nats=") || strings.HasPrefix(a, "-nats="):
			cfg.NATS.URL = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	fs := newFlagSet("generate " + def.Name)
	start := time.Now()
	n, err := def.Generate(ctx, cfg, fs, rest)
	if err != nil {
		if n == 0 && !errors.Is(err, context.Canceled) && strings.Contains(err.Error(), "flag") {
			return usageError{err}
		}
		return fmt.Errorf("job %q: generator: %w (published %d)", def.Name, err, n)
	}
	fmt.Fprintf(stdout, "published %d records for %q to %s in %v\n", n, def.Name, cfg.NATS.URL, time.Since(start).Round(time.Millisecond))
	return nil
}
