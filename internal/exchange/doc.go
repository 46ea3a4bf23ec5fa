// Package exchange moves batches of elements between tasks over bounded queues.
//
// A Gate is the input side of one consumer subtask: it has one channel per
// producer subtask feeding it. Each channel is a bounded FIFO of messages; a
// message is either a batch of records or one control event (watermark,
// checkpoint barrier, end of input). Order per channel is preserved. A producer
// that finds its channel full waits, which is how backpressure reaches the
// sources: nothing is dropped and memory is bounded by
// channels x capacity x batch size.
//
// A Writer is the output side of one producer subtask: it partitions records
// over the consumer channels, buffers them per channel and sends a batch when it
// is full, when Flush is called (the task flushes before it would block, and
// after the linger time), and before any control event, so events never overtake
// records.
//
// A Writer's target may instead be a Remote: the producer end of a channel
// whose gate is in another process (package netexchange sends over NATS). The
// writer hands it the same batches and events in the same order, counts its
// waiting for credit as backpressure, and reuses a batch as soon as Remote.Send
// returns. Targets in the same process cost what they cost before: the writer
// branches on Remote once per batch, not per record.
//
// Concurrency: a Gate has exactly one consumer goroutine (Poll, Wait, Block,
// Unblock, Recycle) and each of its channels exactly one producer goroutine
// (Send). A Writer belongs to one producer goroutine. Waiting always selects on
// the context, so cancelling it releases every blocked goroutine.
package exchange
