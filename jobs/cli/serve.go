package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cluster"
	"github.com/sluicedata/sluice/jobs/runner"
)

// serve runs a runner with its REST API until ctx ends; then it cancels the
// running jobs (their checkpoints stay, and deploying them again resumes).
func serve(ctx context.Context, reg *jobs.Registry, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve")
	addr := fs.String("http", DefaultRunnerAddr, "")
	ckDir := fs.String("checkpoint-dir", "", "")
	spDir := fs.String("savepoint-dir", "", "")
	nats := fs.String("nats", "", "")
	out := fs.String("output", "", "")
	pg := fs.String("postgres", "", "")
	var cc cluster.Config
	fs.StringVar(&cc.NodeID, "node-id", "", "")
	fs.StringVar(&cc.RaftAddr, "raft-addr", "", "")
	fs.StringVar(&cc.DataDir, "data-dir", "", "")
	fs.StringVar(&cc.Join, "join", "", "")
	fs.IntVar(&cc.Slots, "slots", runtime.NumCPU(), "")
	fs.DurationVar(&cc.JoinTimeout, "join-timeout", 5*time.Second, "")
	fs.DurationVar(&cc.NodeTimeout, "node-timeout", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	clustered := cc.NodeID != ""
	switch {
	case !clustered && (cc.RaftAddr != "" || cc.DataDir != "" || cc.Join != ""):
		return usageError{errors.New("--raft-addr, --data-dir and --join make a cluster node: give --node-id too")}
	case cc.JoinTimeout <= 0:
		return usageError{fmt.Errorf("--join-timeout %s: want more than 0", cc.JoinTimeout)}
	case cc.NodeTimeout <= 0:
		return usageError{fmt.Errorf("--node-timeout %s: want more than 0", cc.NodeTimeout)}
	case clustered && (cc.RaftAddr == "" || cc.DataDir == ""):
		return usageError{errors.New("--node-id needs --raft-addr ADDR and --data-dir DIR")}
	case clustered && *ckDir != "":
		return usageError{errors.New("--checkpoint-dir: a cluster node keeps checkpoints in the JetStream object store of --nats, which every node reaches")}
	case cc.Slots < 1:
		return usageError{fmt.Errorf("--slots %d: want at least 1", cc.Slots)}
	}
	def := defaults(os.Stdout)
	if *nats != "" {
		def.NATS.URL = *nats
	}
	if *out != "" {
		def.OutputDir = *out
	}
	if *pg != "" {
		def.Postgres = *pg
	}
	r := runner.New(runner.Options{Registry: reg, CheckpointDir: *ckDir, SavepointDir: *spDir, Defaults: def, Logger: logger(stderr)})
	defer r.Close()
	if !clustered {
		stop, err := listen(ctx, *addr, r.Handler(), stderr)
		if err != nil {
			return err
		}
		defer stop()
		<-ctx.Done()
		fmt.Fprintln(stderr, "runner shutting down: canceling running jobs (their checkpoints stay)")
		return nil
	}
	// A cluster node: the API address must be known before the node
	// starts (it is the address other nodes call), so listen first and
	// answer the cluster's paths once the node runs.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", *addr, err)
	}
	// The jobs API is the cluster's: a deploy goes to the cluster, which
	// assigns it to a node, and a status comes from the node that runs it.
	// The runner's other paths (metrics, registry) stay this node's.
	var clusterAPI, jobsAPI lateHandler
	mux := http.NewServeMux()
	mux.Handle("/v1/cluster/", &clusterAPI)
	mux.Handle("/v1/nodes", &clusterAPI)
	mux.Handle(runner.PathJobs, &jobsAPI)
	mux.Handle(runner.PathJobs+"/", &jobsAPI)
	mux.Handle("/", r.Handler())
	stop := serveOn(ctx, ln, mux, stderr)
	defer stop()
	cc.APIAddr = ln.Addr().String()
	cc.Logger = logger(stderr)
	node, err := cluster.Start(ctx, cc)
	if err != nil {
		return err
	}
	defer node.Close()
	clusterAPI.h.Store(ptr(node.Handler()))
	// The node runs the deployments assigned to it, with their
	// checkpoints in the JetStream object store of --nats, which every
	// node reaches.
	store := cluster.NewJetStreamStorage(def.NATS)
	defer store.Close()
	exec, err := cluster.StartExecutor(node, cluster.ExecutorConfig{Runtime: r, Storage: store.Open, Logger: cc.Logger})
	if err != nil {
		return err
	}
	defer exec.Close()
	jobsAPI.h.Store(ptr(exec.JobsHandler()))
	fmt.Fprintf(stderr, "cluster node %s: raft on %s, data in %s, checkpoints on %s\n", cc.NodeID, node.RaftAddr(), cc.DataDir, def.NATS.URL)
	<-ctx.Done()
	fmt.Fprintln(stderr, "runner shutting down: canceling running jobs (their checkpoints stay)")
	return nil
}

// lateHandler answers 503 (which other nodes retry) until h is set.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, `{"error":"cluster node starting"}`+"\n")
}

func ptr[T any](v T) *T { return &v }
