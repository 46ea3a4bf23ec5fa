// Command soaknode is jobrunner with the cluster tests' jobs (package
// testjobs) registered besides the default ones: the soak test builds it
// and runs it as real node processes, which it kills with SIGKILL.
package main

import (
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
	"github.com/sluicedata/sluice/jobs/cluster/internal/testjobs"
)

func main() {
	testjobs.Register(jobs.Default)
	cli.Exit(jobs.Default)
}
