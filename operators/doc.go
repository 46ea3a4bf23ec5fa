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
// # State
//
// Reduce and Aggregate keep each key's value in keyed state ("reduce",
// "aggregate"), so checkpoints and savepoints hold it. Between checkpoints
// the values of keys seen since the last one stay in memory, in front of
// keyed state (up to 65536 keys, for key types whose Go equality is their
// encoding's: strings, integers, bools, and arrays and plain structs of
// them): a record costs one lookup instead of a keyed-state read and write.
// The operator writes them to keyed state when a checkpoint is taken; a
// cache that misses more often than it hits turns itself off.
//
// # Failure
//
// An error returned by a function, or a panic in it, fails the job: Job.Run
// returns a *dataflow.OperatorError naming the operator and its subtask.
package operators
