package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/sluicedata/sluice/jobs"
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
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
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
	stop, err := listen(ctx, *addr, r.Handler(), stderr)
	if err != nil {
		return err
	}
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(stderr, "runner shutting down: canceling running jobs (their checkpoints stay)")
	return nil
}

var _ http.Handler = (*http.ServeMux)(nil)
