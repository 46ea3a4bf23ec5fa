// Package cli is jobrunner's command line, callable from any program so that
// users can build their own jobrunner binary with their own jobs:
//
//	import (
//		"github.com/sluicedata/sluice/jobs"
//		"github.com/sluicedata/sluice/jobs/cli"
//		_ "example.com/myjobs/fraud" // registers "fraud" in jobs.Default
//	)
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		os.Exit(cli.Main(ctx, jobs.Default, os.Args[1:], os.Stdout, os.Stderr))
//	}
//
// Verbs: `jobs` lists the registered jobs; `run JOB` runs one in the
// foreground until its input ends or it is interrupted; `plan JOB` prints its
// compiled graph. Errors are one line on stderr and a non-zero exit code: 2
// for bad usage, 1 for a failed job.
package cli
