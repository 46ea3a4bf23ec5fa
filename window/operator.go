package window

import (
	"fmt"
	"reflect"
	"time"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

// Result is the result of one window of one key.
type Result[K comparable, V any] struct {
	Key    K
	Window Window
	Value  V
}

// Option configures a window operator.
type Option func(*config)

type config struct {
	preAgg   preAggMode
	lateness time.Duration
	lateID   string
	lateType reflect.Type
	trigger  Trigger
	opts     []dataflow.Option
}

// AllowedLateness keeps a window's state for d after its end has passed the
// watermark: a record that arrives in that time is added and, with the
// event-time trigger, the window fires again with the updated result. The
// default is 0.
func AllowedLateness(d time.Duration) Option { return func(c *config) { c.lateness = d } }

// LateOutput sends records that arrive after their windows' allowed lateness
// to tag; read them with dataflow.SideOutput on the operator's output. Without
// it such records are dropped; either way they are counted (LateRecords).
func LateOutput[In any](tag dataflow.OutputTag[In]) Option {
	return func(c *config) { c.lateID, c.lateType = tag.ID(), reflect.TypeFor[In]() }
}

type preAggMode uint8

const (
	preAggAuto preAggMode = iota // when Merge is exact (operators.ExactMerger)
	preAggOn
	preAggOff
)

// PreAggregate turns the local pre-aggregation of Aggregate on or off. By
// default it is on where it cannot change results: an aggregation whose
// Merge is exact (operators.ExactMerger: Count, integer Sum and Avg, Min,
// Max, TopN, CountDistinct), tumbling or sliding windows, the event-time
// trigger, no allowed lateness and no late output. PreAggregate(true) turns
// it on for an aggregation that does not say its Merge is exact (its Merge
// must then be exact for results not to change); with other windows,
// triggers, lateness or a late output there is none either way.
//
// With it, an operator named after the window operator plus "/local",
// chained to the window operator's input (with its parallelism), folds the
// records of each key into partial accumulators before the keyed exchange,
// and the window operator merges them: fewer records cross between tasks
// and the window operator adds fewer. It holds nothing across checkpoints
// (it sends its partials before the barrier), so savepoints taken with or
// without it restore into either. It steps aside by itself where there is
// no exchange (parallelism 1) and while keys do not repeat often enough
// between two of its flushes.
func PreAggregate(on bool) Option {
	return func(c *config) {
		c.preAgg = preAggOff
		if on {
			c.preAgg = preAggOn
		}
	}
}

// WithTrigger replaces the default trigger (EventTimeTrigger) with t.
func WithTrigger(t Trigger) Option { return func(c *config) { c.trigger = t } }

// With passes dataflow options (dataflow.Parallelism, ...) to the operator.
func With(opts ...dataflow.Option) Option {
	return func(c *config) { c.opts = append(c.opts, opts...) }
}

// LateRecords is implemented by the window operators' subtasks: the number of
// records dropped or sent to the late output because every window they
// belonged to was past its allowed lateness.
type LateRecords interface{ LateRecords() int64 }

// Aggregate puts the records of each key into the windows that assigner gives
// them and folds each window incrementally with agg. By default a window
// fires when the watermark passes its end (EventTimeTrigger), emitting its
// Result with the window's MaxTimestamp as event time; WithTrigger changes
// that. Windows that received no record do not exist and never fire. At end
// of input every event-time window fires.
//
// Window contents are keyed state (per key, a Value named "windows" that
// lists the key's windows with their accumulators; trigger counters, a Map
// named "trigger"; for sessions the key's sessions, named "sessions"), and
// firing times are keyed timers. With the default trigger and a tumbling or
// sliding assigner, a specialized operator does the same with less work per
// record: one read and one write of the key's windows per record whatever
// the number of windows, and a window's timer registered only when the
// window is created. For keys of plain types (strings, integers, bools, and
// arrays and structs of them) it also keeps the windows of up to 65536 keys
// in a Go map between checkpoints, and writes the changed ones to keyed
// state when a checkpoint captures it (and when the map is full); a map
// that misses more often than it hits (more live keys than it holds) is
// turned off.
//
// A record without a timestamp fails the job (event time is required), and so
// does one at dataflow.MaxWatermark. A timestamp of 0 is an ordinary time,
// 1970-01-01T00:00:00Z.
func Aggregate[K comparable, In, Acc, Out any](in dataflow.KeyedStream[K, In], name string, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out], opts ...Option) dataflow.Stream[Result[K, Out]] {
	job := in.Stream().Job()
	c := build[In](job, name, assigner, opts)
	if v, ok := agg.(interface{ Validate() error }); ok && job != nil {
		if err := v.Validate(); err != nil {
			job.ReportError(name, err)
		}
	}
	// Between single subtasks the keyed edge is chained: there is no
	// exchange for a pre-aggregation to save.
	exchanged := job != nil && (in.Stream().Parallelism() > 1 || job.ParallelismOf(c.opts...) > 1)
	if slide, offset, ok := preAggregates(c, assigner, agg); ok && exchanged {
		return aggregateLocalGlobal(in, name, c, assigner, agg, slide, offset)
	}
	var newOp func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In]
	if agg != nil {
		newOp = func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In] {
			if op := newFastAgg(c, assigner, agg, in.KeyFunc(), out); op != nil {
				return op
			}
			return &core[K, In, Out]{cfg: c, assigner: assigner, trigger: c.trigger, key: in.KeyFunc(), out: out,
				cont: &aggContents[K, In, Acc, Out]{agg: agg}}
		}
	}
	return dataflow.AddKeyedOperator(in, name, newOp, c.opts...)
}

// preAggregates reports whether Aggregate pre-aggregates locally (see
// PreAggregate), and with which panes: slide long, starting at offset.
func preAggregates[In, Acc, Out any](c config, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out]) (slide, offset dataflow.Timestamp, ok bool) {
	if agg == nil || c.preAgg == preAggOff || c.lateness != 0 || c.lateID != "" {
		return 0, 0, false
	}
	if _, ok := c.trigger.(eventTimeTrigger); !ok || assigner == nil || assigner.Validate() != nil {
		return 0, 0, false
	}
	if c.preAgg == preAggAuto {
		if m, ok := agg.(operators.ExactMerger); !ok || !m.MergesExactly() {
			return 0, 0, false
		}
	}
	switch a := assigner.(type) {
	case TumblingAssigner:
		return a.size, a.offset, true
	case SlidingAssigner:
		// A partial of a sliding window's pane is merged into every window
		// holding the pane; Merge may change either accumulator in place and
		// return it, so one holding references would end up shared.
		if state.HoldsReferences[Acc]() {
			return 0, 0, false
		}
		return a.slide, a.offset, true
	}
	return 0, 0, false
}

// aggregateLocalGlobal is Aggregate with a local pre-aggregation: see local.go.
func aggregateLocalGlobal[K comparable, In, Acc, Out any](in dataflow.KeyedStream[K, In], name string, c config, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out], slide, offset dataflow.Timestamp) dataflow.Stream[Result[K, Out]] {
	key := in.KeyFunc()
	partials := dataflow.AddOperator(in.Stream(), localName(name), func(out dataflow.Output[partial[K, Acc]]) dataflow.Operator[In] {
		return newLocalAgg(agg, key, slide, offset, out)
	}, dataflow.ParallelismOfInput())
	merge := mergeAgg[K, In, Acc, Out]{agg: agg}
	return dataflow.AddKeyedOperator(dataflow.KeyBy(partials, partialKey[K, Acc]), name, func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[partial[K, Acc]] {
		return newFastAgg(c, assigner, merge, partialKey[K, Acc], out)
	}, c.opts...)
}

// Process puts the records of each key into windows like Aggregate, keeps all
// of a window's records, and when the window fires calls fn with them (in
// arrival order); fn emits the window's results. Prefer Aggregate when the
// result can be computed incrementally: it keeps one accumulator per window
// instead of every record.
func Process[K comparable, In, Out any](in dataflow.KeyedStream[K, In], name string, assigner Assigner, fn ProcessWindowFunction[K, In, Out], opts ...Option) dataflow.Stream[Result[K, Out]] {
	c := build[In](in.Stream().Job(), name, assigner, opts)
	var newOp func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In]
	if fn != nil {
		newOp = func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In] {
			return &core[K, In, Out]{cfg: c, assigner: assigner, trigger: c.trigger, key: in.KeyFunc(), out: out,
				cont: &listContents[K, In, Out]{fn: fn}}
		}
	}
	return dataflow.AddKeyedOperator(in, name, newOp, c.opts...)
}

// build applies the options and reports invalid settings on the job.
func build[In any](job *dataflow.Job, name string, assigner Assigner, opts []Option) config {
	c := config{trigger: EventTimeTrigger()}
	for _, o := range opts {
		o(&c)
	}
	if job == nil {
		return c
	}
	report := func(err error) { job.ReportError(name, err) }
	if assigner == nil {
		report(fmt.Errorf("%w: nil assigner", ErrInvalidWindow))
	} else if err := assigner.Validate(); err != nil {
		report(err)
	}
	if err := ValidateLateness(c.lateness); err != nil {
		report(err)
	}
	if c.lateType != nil && c.lateType != reflect.TypeFor[In]() {
		report(fmt.Errorf("%w: late output of %s records, but the operator reads %s", ErrInvalidWindow, c.lateType, reflect.TypeFor[In]()))
	}
	if c.trigger == nil {
		report(fmt.Errorf("%w: nil trigger", ErrInvalidWindow))
		c.trigger = EventTimeTrigger()
	} else if v, ok := c.trigger.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			report(err)
		}
	}
	if assigner != nil && assigner.IsMerging() {
		if _, ok := c.trigger.(MergingTrigger); !ok {
			report(fmt.Errorf("%w: trigger %T cannot be used with merging windows (%v)", ErrInvalidWindow, c.trigger, assigner))
		}
	}
	return c
}
