// Package memory has in-process sources and sinks for tests, demos and
// benchmarks: a slice source, a generator (bounded or unbounded, full speed or
// rate-limited), a collecting sink, print and log sinks, and a discarding sink.
//
// Sources split their input over their subtasks: with parallelism p, subtask i
// of a slice source reads the i-th of p contiguous parts of the slice (so order
// is kept within each part), and subtask i of a generator produces sequence
// numbers i, i+p, i+2p, ... so the union is every number exactly once.
//
// None of these take part in checkpoints: they are not replayable across
// processes. Use them where the input is recreated by the program.
package memory
