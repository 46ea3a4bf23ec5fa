package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicedata/sluice/jobs"
)

// Exit runs the process's command line (os.Args) against reg, as a
// jobrunner's main does: SIGINT and SIGTERM cancel it, and the process
// exits with Main's code.
func Exit(reg *jobs.Registry) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, reg, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
