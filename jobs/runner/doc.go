// Package runner runs Sluice jobs and manages them while they run: it is
// what `jobrunner serve` (a long-lived runner with a REST API) and `jobrunner
// run` (one job in the foreground) are made of, and a program can embed it.
//
// A Runner deploys jobs of a jobs.Registry from a Spec (job, parameters,
// parallelism, checkpoint directory and interval, start position, savepoint
// to start from, restarts). Each deployment has a name, unique among the
// running ones, and a state: RUNNING, then FINISHED (its input ended, or it
// was drained), STOPPED (stopped with a savepoint), CANCELED or FAILED.
//
// Checkpoints. With a checkpoint directory (the runner's, one subdirectory
// per deployment name, or the spec's), a deployment checkpoints periodically
// and resumes from its latest checkpoint when it is deployed again: after a
// cancel, a crash of the process, or a restart of the runner. Savepoint
// takes a savepoint on demand; Stop stops with one, or drains (the sources
// end their input where they are, every window fires, and the final
// checkpoint commits all output). A spec's FromSavepoint starts a new
// deployment from a savepoint, also at another parallelism.
//
// REST API. Handler serves JSON under /v1 (see Handler for the routes) and
// Prometheus metrics under /metrics: records in and out per operator
// subtask, watermark lag, backpressure, checkpoint counts, duration and size,
// sink commit counts and latency, and Go runtime and process metrics.
// Errors are JSON with 400 for a bad spec, 404 for an unknown deployment and
// 409 for a conflict.
//
// Concurrency. A Runner's methods are safe for concurrent use; a deployment's
// job runs on goroutines of its own. Close cancels the running deployments
// and waits for them.
package runner
