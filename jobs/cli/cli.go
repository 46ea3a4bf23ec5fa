package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

const usage = `usage: jobrunner <verb> [flags] [args]

verbs:
  jobs                 list the registered jobs and their parameters
  run <job> [flags]    run a job in the foreground until its input ends
  plan <job> [flags]   print the job's compiled graph (--format text|dot|json)

run and plan flags:
  --parallelism N      default parallelism of every operator (default 1)
  --max-parallelism N  number of key groups (default 128)
  --set name=value     a job parameter (repeatable); see 'jobrunner jobs'
`

// Main runs the command line args against reg and returns the exit code.
func Main(ctx context.Context, reg *jobs.Registry, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	verb, rest := args[0], args[1:]
	var err error
	switch verb {
	case "jobs":
		err = listJobs(reg, rest, stdout)
	case "run":
		err = runJob(ctx, reg, rest, stdout, stderr)
	case "plan":
		err = planJob(reg, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	default:
		err = usageError{fmt.Errorf("unknown verb %q (want jobs, run or plan)", verb)}
	}
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "jobrunner %s: %s\n", verb, oneLine(err))
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailed
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// oneLine joins a multi-line error (errors.Join) with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func listJobs(reg *jobs.Registry, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("takes no arguments, got %q", args)}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, d := range reg.All() {
		fmt.Fprintf(tw, "%s\t%s\n", d.Name, d.Description)
		for _, p := range d.Params {
			fmt.Fprintf(tw, "\t  --set %s=%s\t%s\n", p.Name, p.Default, p.Usage)
		}
	}
	return tw.Flush()
}

type params map[string]string

func (p params) String() string { return fmt.Sprint(map[string]string(p)) }
func (p params) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	p[name] = value
	return nil
}

type common struct {
	def    jobs.Definition
	cfg    jobs.Config
	format string
}

func parse(reg *jobs.Registry, verb string, args []string, stdout io.Writer) (*common, error) {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &common{cfg: jobs.Config{Params: params{}, Output: stdout}}
	fs.IntVar(&c.cfg.Job.Parallelism, "parallelism", 1, "")
	fs.IntVar(&c.cfg.Job.MaxParallelism, "max-parallelism", 128, "")
	fs.Var(params(c.cfg.Params), "set", "")
	if verb == "plan" {
		fs.StringVar(&c.format, "format", "text", "")
	}
	// The job name comes first; flags follow it (flag stops at the first non-flag).
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return nil, usageError{errors.New("missing job name; see 'jobrunner jobs'")}
	}
	name := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if c.cfg.Job.Parallelism < 1 || c.cfg.Job.MaxParallelism < 1 || c.cfg.Job.Parallelism > c.cfg.Job.MaxParallelism {
		return nil, usageError{fmt.Errorf("--parallelism %d must be between 1 and --max-parallelism %d", c.cfg.Job.Parallelism, c.cfg.Job.MaxParallelism)}
	}
	def, err := reg.Lookup(name)
	if err != nil {
		return nil, usageError{err}
	}
	known := map[string]bool{}
	for _, p := range def.Params {
		known[p.Name] = true
	}
	for k := range c.cfg.Params {
		if !known[k] {
			return nil, usageError{fmt.Errorf("job %q has no parameter %q", name, k)}
		}
	}
	c.def = def
	return c, nil
}

func build(c *common) (*dataflow.Job, error) {
	job, err := c.def.Build(c.cfg)
	if err != nil {
		return nil, usageError{fmt.Errorf("job %q: %w", c.def.Name, err)}
	}
	return job, nil
}

func runJob(ctx context.Context, reg *jobs.Registry, args []string, stdout, stderr io.Writer) error {
	c, err := parse(reg, "run", args, stdout)
	if err != nil {
		return err
	}
	job, err := build(c)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := job.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			fmt.Fprintf(stderr, "job %q interrupted after %v\n", c.def.Name, time.Since(start).Round(time.Millisecond))
			return nil
		}
		return fmt.Errorf("job %q failed: %w", c.def.Name, err)
	}
	fmt.Fprintf(stderr, "job %q finished in %v\n", c.def.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

func planJob(reg *jobs.Registry, args []string, stdout io.Writer) error {
	c, err := parse(reg, "plan", args, stdout)
	if err != nil {
		return err
	}
	job, err := build(c)
	if err != nil {
		return err
	}
	plan, err := job.Plan()
	if err != nil {
		return fmt.Errorf("job %q: %w", c.def.Name, err)
	}
	switch c.format {
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
		return usageError{fmt.Errorf("--format %q: want text, dot or json", c.format)}
	}
	return nil
}
