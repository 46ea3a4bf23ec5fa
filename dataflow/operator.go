package dataflow

import (
	"context"
	"fmt"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// Output receives what an operator emits. The runtime implements it: the next
// operator in the chain is called directly, or the record is batched for an
// exchange. Collect never returns an error: if something downstream fails, the
// task is stopped and Job.Run reports that failure.
//
// An Output is used only from the goroutine of the subtask it was given to.
type Output[T any] interface {
	Collect(v T, ts Timestamp)
	EmitWatermark(wm Timestamp)
	// MarkIdle says the emitter has no data for now (for example, every
	// partition of a source is idle): downstream operators stop waiting for
	// its watermark until it emits a record or a watermark again.
	MarkIdle()
}

// Operator is the runtime form of a one-input operator, the extension point for
// operator authors (the functions of package operators are built on it). The
// runtime makes one instance per subtask and calls it from that subtask's
// goroutine only, in this order: Open; Process and ProcessWatermark any number
// of times; Finish once at end of input; Close always, also after a failure.
type Operator[In any] interface {
	// Open prepares the subtask described by oc.
	Open(ctx context.Context, oc *OperatorContext) error
	// Process handles one record with its event time (NoTimestamp if none).
	Process(v In, ts Timestamp) error
	// ProcessWatermark is called when the operator's input watermark advances
	// (it never goes backwards). Records emitted here precede the watermark,
	// which the runtime forwards after ProcessWatermark returns.
	ProcessWatermark(wm Timestamp) error
	// Finish is called at end of input, after the MaxWatermark, to emit what is
	// still pending.
	Finish(ctx context.Context) error
	// Close releases resources.
	Close() error
}

// Prefetcher is implemented by keyed operators that can start the memory
// accesses of a batch of records before the runtime calls Process for each
// of them, so that the CPU cache misses of the batch overlap instead of
// coming one after the other: a keyed operator over more keys than fit in
// the CPU caches spends most of its time waiting for its per-key state
// (BenchmarkStateGrowth in window/). The runtime calls Prefetch with up to
// a hundred or so consecutive records, then Process with each of them, in
// order, with nothing in between. Prefetch must not change what the
// operator or its state hold: it only reads what Process will read.
//
// The runtime gives a keyed operator that implements Prefetcher the
// batches of its keyed exchange, and buffers the records a chained
// upstream operator emits into it until it has a batch, until that
// operator's poll or input batch ends, or until anything else reaches the
// operator (a watermark, a checkpoint, a timer, the end of input): records
// wait a batch at most, and never overtake anything. The slice is only
// valid during the call.
type Prefetcher[In any] interface {
	Prefetch(records []In)
}

// SourceStatus tells the runtime what a source can offer next.
type SourceStatus uint8

const (
	// MoreAvailable: call Poll again straight away.
	MoreAvailable SourceStatus = iota
	// NothingAvailable: nothing right now; the runtime flushes its output
	// batches and calls Poll again. Poll should have waited a little (a few
	// milliseconds, or until data arrived) before returning this.
	NothingAvailable
	// EndOfInput: the source is exhausted. The runtime emits MaxWatermark and
	// finishes the job downstream.
	EndOfInput
)

// Source reads records into the job. The runtime makes one instance per
// subtask, calls Open once, then Poll repeatedly from the subtask's goroutine,
// then Close. Poll should emit a bounded amount (say, up to a batch) per call,
// so that the runtime can interleave its own work (flushing, and barriers for
// checkpoints), and must return promptly when ctx is cancelled.
type Source[T any] interface {
	Open(ctx context.Context, oc *OperatorContext) error
	Poll(ctx context.Context, out Output[T]) (SourceStatus, error)
	Close() error
}

// Positioner is an optional interface of a Source: the position of the last
// record emitted (for example "partition views.3 offset 1234"), used in error
// messages when processing that record fails downstream in the same task.
type Positioner interface {
	Position() string
}

// KeyGroupRange is a half-open range [Start, End) of key groups.
type KeyGroupRange = keygroup.Range

// OperatorContext describes one subtask of an operator to its Open method.
type OperatorContext struct {
	// Job and Operator name the job and the operator (its uid).
	Job, Operator string
	// Subtask is this instance's index among Parallelism instances.
	Subtask, Parallelism int
	// MaxParallelism is the job's number of key groups.
	MaxParallelism int
	// KeyGroups is the range of key groups this subtask owns (keyed operators;
	// for others it is the whole range divided the same way).
	KeyGroups KeyGroupRange
	// Restored is the operator's non-keyed state (see Snapshotter) when the job
	// was restored from a checkpoint or savepoint, nil on a fresh start.
	// Keyed state and timers are restored by the runtime before Open.
	Restored *RestoredState
	side     map[string]any
	chained  bool // every consumer of the main output is chained
	m        *opMetrics
	restore  *opRestore
	state    state.Backend
	timers   TimerService
}

// ChainedOutput reports whether every record the operator emits on its main
// output goes straight to the next operator in the same task, with no
// exchange between tasks. An operator that only pays off before an exchange
// (a local pre-aggregation) can then step aside.
func (oc *OperatorContext) ChainedOutput() bool { return oc.chained }

// State is the keyed state backend of a keyed operator subtask: declare state
// on it in Open with state.NewValue, state.NewMap and the rest; the runtime
// sets the current key before each record. It is nil for operators that are
// not keyed, and declaring state on nil fails with state.ErrNoCurrentKey.
func (oc *OperatorContext) State() state.Backend { return oc.state }

// AddSource adds a source to job. newSource is called once per subtask.
func AddSource[T any](job *Job, name string, newSource func() Source[T], opts ...Option) Stream[T] {
	n := job.addNode(name, kindSource, opts)
	n.ports = []*port{{typ: typeOf[T]()}}
	if newSource == nil {
		job.addErr(fmt.Errorf("%w: source %q", ErrNilFunction, name))
	}
	n.build = func(b *buildCtx) (any, lifecycle, error) {
		src := newSource()
		if src == nil {
			return nil, nil, fmt.Errorf("source factory returned nil")
		}
		out := &monotonicOutput[T]{Output: b.outs[0].(Output[T]), last: MinWatermark}
		return nil, &sourceNode[T]{src: src, out: out, oc: b.oc}, nil
	}
	return Stream[T]{job: job, srcs: []outRef{{n, n.ports[0]}}}
}

// AddOperator adds an operator reading in. newOp is called once per subtask with
// the Output the operator emits to.
func AddOperator[In, Out any](in Stream[In], name string, newOp func(out Output[Out]) Operator[In], opts ...Option) Stream[Out] {
	n := addConsumer(in, name, kindOperator, newOp == nil, opts)
	if n == nil {
		return Stream[Out]{}
	}
	n.ports = []*port{{typ: typeOf[Out]()}}
	n.build = func(b *buildCtx) (any, lifecycle, error) {
		op := newOp(b.outs[0].(Output[Out]))
		l := newLink(b, op)
		return l, l, nil
	}
	return Stream[Out]{job: in.job, srcs: []outRef{{n, n.ports[0]}}}
}

// AddKeyedOperator adds an operator reading a keyed stream: records are
// hash-partitioned by key group, and subtask i owns KeyGroups of its context.
func AddKeyedOperator[K comparable, In, Out any](in KeyedStream[K, In], name string, newOp func(out Output[Out]) Operator[In], opts ...Option) Stream[Out] {
	s := in.in
	if s.valid() && s.part != partDefault {
		s.job.addErr(fmt.Errorf("dataflow: operator %q: a keyed stream cannot also be repartitioned (%s)", name, s.part))
	}
	s.part = partHash
	n := addConsumer(s, name, kindOperator, newOp == nil, opts)
	if n == nil {
		return Stream[Out]{}
	}
	n.keyed = true
	key := in.key
	for _, e := range n.inputs {
		e.hash = func(maxP int) any { return keyGroupsOf(key, maxP) }
	}
	n.ports = []*port{{typ: typeOf[Out]()}}
	newBackend, clock := s.job.cfg.StateBackend, s.job.cfg.Clock
	n.build = func(b *buildCtx) (any, lifecycle, error) {
		op := newOp(b.outs[0].(Output[Out]))
		l := newLink(b, op)
		oc := b.oc
		l.openKeyed = func(ctx context.Context) (func(In, int), state.Backend, timerDriver, error) {
			be, err := newBackend(state.Config{OperatorUID: oc.Operator, KeyGroups: oc.KeyGroups, MaxParallelism: oc.MaxParallelism})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("state backend: %w", err)
			}
			h, _ := op.(TimerHandler[K])
			kt := newKeyedTimers(be, h, clock, oc.MaxParallelism)
			oc.timers = kt
			return func(v In, kg int) {
				if kg < 0 {
					kt.setRecordKey(key(v))
				} else {
					kt.setRecordKeyGroup(key(v), kg)
				}
			}, be, kt, nil
		}
		return l, l, nil
	}
	return Stream[Out]{job: s.job, srcs: []outRef{{n, n.ports[0]}}}
}

// AddSink adds an operator that ends the stream. newOp is called once per subtask.
func AddSink[T any](in Stream[T], name string, newOp func() Operator[T], opts ...Option) {
	n := addConsumer(in, name, kindSink, newOp == nil, opts)
	if n == nil {
		return
	}
	n.build = func(b *buildCtx) (any, lifecycle, error) {
		op := newOp()
		if op == nil {
			return nil, nil, fmt.Errorf("sink factory returned nil")
		}
		l := newLink(b, op)
		return l, l, nil
	}
}

func addConsumer[In any](in Stream[In], name string, kind nodeKind, nilFn bool, opts []Option) *node {
	j := in.job
	if j == nil {
		// Nothing to report to: the invalid stream was reported where it was made.
		return nil
	}
	n := j.addNode(name, kind, opts)
	if nilFn {
		j.addErr(fmt.Errorf("%w: %s %q", ErrNilFunction, kind, name))
	}
	n.in = typeOf[In]()
	if len(in.srcs) == 0 {
		j.addErr(fmt.Errorf("%w: input of %s %q", ErrInvalidStream, kind, name))
	}
	for _, r := range in.srcs {
		e := &edge{from: r.n, port: r.p, to: n, part: in.part}
		r.p.consumers = append(r.p.consumers, e)
		n.inputs = append(n.inputs, e)
	}
	return n
}

// monotonicOutput is a source's output: it drops watermarks that do not
// advance, so a watermark never goes backwards even into chained operators.
// After MarkIdle an equal watermark passes: it announces the source is back.
type monotonicOutput[T any] struct {
	Output[T]
	last Timestamp
	idle bool
	cnt  opCounters // the source's watermark, for metrics
}

func (o *monotonicOutput[T]) EmitWatermark(wm Timestamp) {
	if wm > o.last || o.idle && wm == o.last {
		o.last, o.idle = wm, false
		o.cnt.wm = wm
		o.Output.EmitWatermark(wm)
	}
}

func (o *monotonicOutput[T]) MarkIdle() {
	o.idle = true
	o.Output.MarkIdle()
}

type discard[T any] struct{}

func (discard[T]) Collect(T, Timestamp)    {}
func (discard[T]) EmitWatermark(Timestamp) {}
func (discard[T]) MarkIdle()               {}

// OperatorBase gives an Operator no-op Open, ProcessWatermark, Finish and
// Close. Embed it and implement what the operator needs.
type OperatorBase struct{}

// Open does nothing.
func (OperatorBase) Open(context.Context, *OperatorContext) error { return nil }

// ProcessWatermark does nothing; the runtime forwards the watermark.
func (OperatorBase) ProcessWatermark(Timestamp) error { return nil }

// Finish does nothing.
func (OperatorBase) Finish(context.Context) error { return nil }

// Close does nothing.
func (OperatorBase) Close() error { return nil }

// KV is a keyed result: a key and a value computed for it.
type KV[K, V any] struct {
	Key   K
	Value V
}
