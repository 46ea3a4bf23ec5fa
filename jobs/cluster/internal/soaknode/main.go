// Command soaknode is jobrunner with the cluster tests' jobs (package
// testjobs) registered besides the default ones: the soak test builds it
// and runs it as real node processes, which it kills with SIGKILL.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
	"github.com/sluicedata/sluice/jobs/cluster/internal/testjobs"
)

func main() {
	testjobs.Register(jobs.Default)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, jobs.Default, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
