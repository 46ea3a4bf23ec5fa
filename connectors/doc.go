// Package connectors groups Sluice's sources and sinks, one sub-package per
// system:
//
//   - memory: slices, generators, collecting, print and log sinks, for tests
//     and demos;
//   - jetstream: a NATS JetStream source with offsets in checkpoints (replay
//     from offset zero, bounded backfills, decode-failure policies) and an
//     exactly-once sink; jetstream/embedded runs a nats-server in process;
//   - postgres: append (COPY), upsert and exactly-once sinks (an epoch's rows
//     and a marker row commit in one transaction);
//   - file: JSON Lines, CSV and Parquet part files, compressed, rolled and
//     partitioned by event time, committed on checkpoint;
//   - search: an embedded Bleve index and an OpenSearch/Elasticsearch bulk
//     sink, with deterministic document ids.
//
// A source implements dataflow.Source and a sink is a dataflow.Operator added
// with dataflow.AddSink; exactly-once sinks implement
// dataflow.TwoPhaseCommitter and are added through dataflow.TwoPhaseCommitSink.
// See those for the concurrency contract.
package connectors
