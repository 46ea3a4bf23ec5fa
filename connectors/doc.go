// Package connectors groups Sluice's sources and sinks, one sub-package per
// system. Today: memory (slices, generators, collecting, print and log sinks,
// for tests and demos). Planned, each in its own issue: jetstream (NATS
// JetStream source and sink with offsets in checkpoints), postgres, file
// (JSON Lines, CSV, Parquet) and search.
//
// A source implements dataflow.Source and a sink is a dataflow.Operator added
// with dataflow.AddSink; see those for the concurrency contract.
package connectors
