// Package operators holds the record-at-a-time operators of Sluice: Map,
// FlatMap, Filter, Process (with side outputs), and on keyed streams the running
// Reduce and Aggregate.
//
// Every operator takes a stable, user-given name: state and checkpoints are
// keyed by it, so keep it when the job's code changes. Every operator takes
// dataflow options, such as dataflow.Parallelism.
//
// # Concurrency
//
// The runtime runs each operator as one instance per subtask, each on its own
// goroutine. Plain functions given to Map, FlatMap, Filter, Process, Reduce and
// Aggregate are shared by all subtasks and may be called concurrently when the
// parallelism is above one: keep them free of shared mutable state. For
// per-subtask fields, use RichProcess, which makes one function value per
// subtask.
//
// # Time and order
//
// A record keeps its event time through Map, FlatMap, Filter, Reduce and
// Aggregate; Process may set another. Order is preserved per key through hash
// exchanges and per subtask through forward exchanges.
//
// # Failure
//
// An error returned by a function, or a panic in it, fails the job: Job.Run
// returns a *dataflow.OperatorError naming the operator and its subtask.
package operators
