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
// foreground until its input ends or it is interrupted (--demo first starts
// the job's demo input; --http serves the REST API and /metrics meanwhile);
// `replay JOB --from-offset N` reads the input again from stream sequence N
// (0: the beginning) to its end at start, with a progress bar, or goes on
// live with --live; `plan JOB` prints its compiled graph. `serve` runs a
// long-lived runner (package runner) with a REST API; `deploy`, `list`,
// `status`, `savepoint`, `stop` (with a savepoint, or --drain), `cancel` and
// `checkpoints` talk to it over that API (--runner URL, default
// $SLUICE_RUNNER or http://127.0.0.1:8081).
//
// `serve --node-id ID --raft-addr ADDR --data-dir DIR [--join ADDR]` runs
// a node of a cluster (package cluster): `deploy` to any node puts the
// deployment on the cluster, which runs it whole on one node and moves it
// to another, resumed from its latest checkpoint in the JetStream object
// store of --nats, when that node dies; `list`, `status` and `cancel` on
// any node answer for the whole cluster, and `nodes` lists the members.
// `stop`, `savepoint`, `rescale` and `checkpoints` on any node are served
// by the node that runs the deployment: `stop` puts its savepoint in the
// cluster's storage, and deploying the deployment again resumes from it;
// `rescale NAME --parallelism N` stops it so and deploys it again at N (on
// a single runner too, for a deployment with checkpoints).
//
// Errors are one line on stderr and a non-zero exit code: 2 for bad usage
// (an unknown job, verb or flag, a bad flag value), 1 for a failure (a
// failed job, an unreachable runner or server, a missing savepoint, a busy
// port).
package cli
