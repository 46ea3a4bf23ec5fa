// Command jobrunner runs the Sluice jobs registered in package jobs.
//
//	go run ./cmd/jobrunner jobs
//	go run ./cmd/jobrunner run viewcount --parallelism 2
package main

import (
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"

	_ "github.com/sluicedata/sluice/jobs/clickstream"
	_ "github.com/sluicedata/sluice/jobs/viewcount"
)

func main() { cli.Exit(jobs.Default) }
