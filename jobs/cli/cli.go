package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

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
  jobs                    list the registered jobs and their parameters
  run <job> [flags]       run a job in the foreground until its input ends or ^C
  replay <job> [flags]    read the input again from an offset, to its end (or on live)
  plan <job> [flags]      print the job's compiled graph (--format text|dot|json)
  generate <job> [flags]  publish generated input for a job (--nats URL; see -h)
  serve [flags]           run a long-lived runner with a REST API and /metrics
  deploy <job> [flags]    start a job on a runner
  list                    the runner's deployments
  status <name>           a deployment's state, uptime, rate, lag, last checkpoint
  savepoint <name>        take a savepoint (--dir DIR)
  stop <name>             stop with a savepoint (--dir DIR), or --drain
  cancel <name>           cancel without a savepoint
  rescale <name>          stop with a savepoint, start again at --parallelism N
  checkpoints <name>      list a deployment's completed checkpoints
  nodes                   a cluster's members, their slots and the leader

job flags (run, replay, deploy, plan):
  --parallelism N          default parallelism of every operator (default 1)
  --max-parallelism N      number of key groups (default 128)
  --set name=value         a job parameter (repeatable); see 'jobrunner jobs'
  --config FILE            a JSON job spec (see runner.Spec); flags override it
  --checkpoint-dir DIR     keep checkpoints there and resume from the latest
  --checkpoint-interval D  time between checkpoints (default 10s)
  --start P                where sources start: earliest|latest|seq:N|time:RFC3339
  --from-savepoint DIR     start from a savepoint
  --bounded                read the input up to its end at start, then finish
  --restarts N             restart up to N times after a failure (default 0)
  --nats URL               NATS server (default $SLUICE_NATS_URL or nats://127.0.0.1:4222)
  --output DIR             where file sinks write (default ./sluice-output)
  --postgres URL           also write to Postgres (default $SLUICE_POSTGRES)
  --name NAME              deployment name (default the job's name)
run only:
  --demo                   start the job's demo input (embedded NATS and a generator)
  --http ADDR              also serve the REST API and /metrics on ADDR
replay only:
  --from-offset N          stream sequence to start at; 0 is the beginning
  --live                   go on reading live after catching up
serve:
  --http ADDR              listen address (default 127.0.0.1:8081)
  --checkpoint-dir DIR     where deployments keep checkpoints
  --savepoint-dir DIR      where savepoints go (default CHECKPOINT-DIR/savepoints)
  --node-id ID             be a node of a cluster (raft); needs --raft-addr and --data-dir;
                           it runs what the cluster assigns it, with checkpoints in the
                           JetStream object store of --nats
  --raft-addr ADDR         the node's raft address (host:port other nodes dial)
  --data-dir DIR           the node's raft log, snapshots and cluster id (one node at a time)
  --join ADDR              the REST API address of a member to join (none: a new cluster)
  --join-timeout D         how long --join retries a member that does not answer (default 5s)
  --slots N                subtasks the node runs at most (default: the number of CPUs)
  --node-timeout D         how long the leader waits for a node's heartbeats before it
                           moves the node's deployments (default 5s; the same on every node)
management verbs (deploy, list, status, savepoint, stop, cancel, rescale, checkpoints, nodes):
  --runner URL             the runner (default $SLUICE_RUNNER or http://127.0.0.1:8081)
  --json                   print JSON as the API returns it
`

// DefaultRunnerAddr is where serve listens and the management verbs look.
const DefaultRunnerAddr = "127.0.0.1:8081"

// Main runs the command line args against reg and returns the exit code.
func Main(ctx context.Context, reg *jobs.Registry, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	verb, rest := args[0], args[1:]
	// Jobs print and log from their own goroutines.
	stdout, stderr = &lockedWriter{w: stdout}, &lockedWriter{w: stderr}
	var err error
	switch verb {
	case "jobs":
		err = listJobs(reg, rest, stdout)
	case "run", "replay":
		err = runJob(ctx, reg, verb, rest, stdout, stderr)
	case "plan":
		err = planJob(reg, rest, stdout)
	case "generate":
		err = generate(ctx, reg, rest, stdout)
	case "serve":
		err = serve(ctx, reg, rest, stderr)
	case "deploy", "list", "status", "savepoint", "stop", "cancel", "rescale", "checkpoints", "nodes":
		err = manage(ctx, verb, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	default:
		err = usageError{fmt.Errorf("unknown verb %q (see 'jobrunner help')", verb)}
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

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
