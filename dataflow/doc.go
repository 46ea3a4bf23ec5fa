// Package dataflow is Sluice's typed graph API and its local parallel runtime.
//
// A Job is built from sources, operators and sinks joined by typed streams:
// Stream[T], and KeyedStream[K,T] after KeyBy. Go has no generic methods, so
// transformations are generic free functions (package operators has Map,
// Filter, Reduce and the rest; package connectors has sources and sinks):
//
//	job := dataflow.NewJob("views")
//	views := memory.FromSlice(job, "views", []View{...})
//	byVideo := dataflow.KeyBy(views, func(v View) string { return v.Video })
//	counts := operators.Aggregate(byVideo, "count", operators.Count[View]())
//	memory.Print(counts, "print", nil)
//	err := job.Run(ctx)
//
// # Names
//
// Every operator has a stable, user-given name, its uid: state and checkpoints
// are keyed by it, so a changed job can still restore. A name used twice is a
// build error.
//
// # Building and validation
//
// Building functions never fail on the spot. Problems (a duplicate or empty
// name, a nil function, parallelism out of range, a stream nothing consumes, a
// job with no sink, a cycle) are collected and reported by Validate, Plan and
// Run, each naming its operator. Nothing runs for an invalid job. Plan shows the
// compiled graph as text, DOT and JSON.
//
// # Runtime
//
// Run compiles the graph into tasks. Consecutive operators joined by a forward
// edge with equal parallelism are chained: they run in one goroutine per
// subtask and call each other directly. An edge between two operators of
// parallelism 1 is chained whatever its partitioning, since every exchange
// between single subtasks is a forward one. Between tasks, records move over
// bounded queues in batches (Config.BatchSize); a batch is sent when full, when
// the task runs out of input, and at the latest after Config.Linger. A full
// queue makes its producer wait, so a slow sink slows the source: nothing is
// dropped and memory stays bounded.
//
// Exchanges: forward, rebalance (round-robin), hash by key group (KeyBy) and
// broadcast. Order is preserved per channel, hence per key through a hash
// exchange when each key comes from one upstream subtask.
//
// # Keys
//
// A key maps to one of Config.MaxParallelism key groups, kg = hash(encode(key))
// mod maxParallelism, and key group kg to subtask kg*parallelism/maxParallelism.
// The hash is fixed across processes, restarts and versions (see KeyGroupOf),
// so state written under one parallelism is found under another.
//
// # Time
//
// Records carry an event time (Timestamp, nanoseconds since the epoch, or
// NoTimestamp). A source's WatermarkStrategy (BoundedOutOfOrderness, Monotonic
// or CustomWatermarks) assigns timestamps and generates a watermark per source
// partition; PartitionWatermarks combines them as the minimum over the
// partitions that are not idle (WithIdleness). Watermarks travel in order with
// the records; a task's watermark is the minimum over its input channels that
// are not idle, and never goes backwards. A source whose partitions are all
// idle marks its output idle (Output.MarkIdle), so it does not stall
// downstream windows; it counts again from its next record or watermark.
// Exchanges send a watermark with the next flush of their batches, so
// watermarks never break batching and are late by at most Config.Linger. At
// end of input a source emits MaxWatermark, every operator's Finish runs in
// chain order, and Run returns after every downstream task has finished.
//
// # Failure and cancellation
//
// An error returned by user code, or a panic in it, stops the job: Run returns
// an *OperatorError naming the operator, its subtask and, when known, the source
// position of the record. Cancelling Run's context stops every goroutine; Run
// returns only after all of them have returned and every opened operator has
// been closed.
//
// # Concurrency
//
// Building a Job is not safe for concurrent use. At run time each subtask is one
// goroutine: an Operator or Source instance is only ever called from its own
// subtask's goroutine, and Outputs must not be used from other goroutines.
package dataflow
