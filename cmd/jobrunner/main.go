// Command jobrunner runs the Sluice jobs registered in package jobs.
//
//	go run ./cmd/jobrunner jobs
//	go run ./cmd/jobrunner run viewcount --parallelism 2
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"

	_ "github.com/sluicedata/sluice/jobs/clickstream"
	_ "github.com/sluicedata/sluice/jobs/viewcount"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, jobs.Default, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
