// Package jobs is the registry of named jobs that jobrunner can start.
//
// A job registers itself by name from an init function, like a database/sql
// driver:
//
//	func init() {
//		jobs.Register(jobs.Definition{Name: "viewcount", Description: "...", Build: build})
//	}
//
// A program includes a job by importing its package (for its side effect), and
// passes the registry to the CLI entry point in package jobs/cli: that is all a
// user's own jobrunner binary needs. NewRegistry makes an isolated registry for
// tests.
package jobs
