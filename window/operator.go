package window

import (
	"fmt"
	"reflect"
	"time"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
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
