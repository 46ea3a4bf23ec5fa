package window

import (
	"context"
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
	lateness time.Duration
	lateID   string
	lateType reflect.Type
	opts     []dataflow.Option
}

// AllowedLateness keeps a window's state for d after its end has passed the
// watermark: a record that arrives in that time is added and the window fires
// again with the updated result. The default is 0.
func AllowedLateness(d time.Duration) Option { return func(c *config) { c.lateness = d } }

// LateOutput sends records that arrive after their windows' allowed lateness
// to tag; read them with dataflow.SideOutput on the operator's output. Without
// it such records are dropped; either way they are counted (LateRecords).
func LateOutput[In any](tag dataflow.OutputTag[In]) Option {
	return func(c *config) { c.lateID, c.lateType = tag.ID(), reflect.TypeFor[In]() }
}

// With passes dataflow options (dataflow.Parallelism, ...) to the operator.
func With(opts ...dataflow.Option) Option {
	return func(c *config) { c.opts = append(c.opts, opts...) }
}

// Aggregate puts the records of each key into the windows that assigner gives
// them and folds each window incrementally with agg; a window fires when the
// watermark passes its end (event-time trigger), emitting its Result with the
// window's MaxTimestamp as event time. Windows that received no record do not
// exist and never fire. At end of input every window fires.
//
// Window contents are keyed state (a Map from window to accumulator, named
// "windows", and for sessions the key's sessions, named "sessions"), and the
// firing times are keyed timers.
//
// The operator folds records into an accumulator read from state and writes
// it back. Accumulators that hold references (the maps of TopN and
// CountDistinct) are changed in place, which state.Map does not yet guard
// against a snapshot captured before the change; before checkpoints take
// snapshots of running jobs, state.Map must copy such values on their first
// write after a capture, as Reducing and Aggregating already do.
//
// A record without a timestamp fails the job (event time is required), and so
// does one at dataflow.MaxWatermark. A timestamp of 0 is an ordinary time,
// 1970-01-01T00:00:00Z.
func Aggregate[K comparable, In, Acc, Out any](in dataflow.KeyedStream[K, In], name string, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out], opts ...Option) dataflow.Stream[Result[K, Out]] {
	var c config
	for _, o := range opts {
		o(&c)
	}
	job := in.Stream().Job()
	if job != nil {
		if assigner == nil {
			job.ReportError(name, fmt.Errorf("%w: nil assigner", ErrInvalidWindow))
		} else if err := assigner.Validate(); err != nil {
			job.ReportError(name, err)
		}
		if err := ValidateLateness(c.lateness); err != nil {
			job.ReportError(name, err)
		}
		if v, ok := agg.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				job.ReportError(name, err)
			}
		}
		if c.lateType != nil && c.lateType != reflect.TypeFor[In]() {
			job.ReportError(name, fmt.Errorf("%w: late output of %s records, but the operator reads %s", ErrInvalidWindow, c.lateType, reflect.TypeFor[In]()))
		}
		if assigner != nil && !assigner.IsEventTime() && assigner != (GlobalAssigner{}) {
			job.ReportError(name, fmt.Errorf("%w: %v is not an event-time assigner; only event-time triggers exist yet", ErrInvalidWindow, assigner))
		}
	}
	var newOp func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In]
	if agg != nil {
		newOp = func(out dataflow.Output[Result[K, Out]]) dataflow.Operator[In] {
			return &windowOp[K, In, Acc, Out]{cfg: c, assigner: assigner, agg: agg, key: in.KeyFunc(), out: out}
		}
	}
	return dataflow.AddKeyedOperator(in, name, newOp, c.opts...)
}

// LateRecords is implemented by the window operators' subtasks: the number of
// records dropped or sent to the late output because every window they
// belonged to was past its allowed lateness.
type LateRecords interface{ LateRecords() int64 }

type windowOp[K comparable, In, Acc, Out any] struct {
	cfg      config
	assigner Assigner
	agg      operators.AggregateFunction[In, Acc, Out]
	key      func(In) K
	out      dataflow.Output[Result[K, Out]]

	timers   dataflow.TimerService
	accs     *state.Map[Window, Acc]
	sessions *state.Value[[]SessionWindow]
	merging  MergingSet
	late     dataflow.Output[In]
	lateN    int64
	scratch  []Window
	curKey   K
}

func (o *windowOp[K, In, Acc, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.timers = oc.Timers()
	if o.accs, err = state.NewMap[Window, Acc](oc.State(), "windows"); err != nil {
		return err
	}
	if o.assigner.IsMerging() {
		if o.sessions, err = state.NewValue[[]SessionWindow](oc.State(), "sessions"); err != nil {
			return err
		}
	}
	if o.cfg.lateID != "" {
		o.late = dataflow.NewOutputTag[In](o.cfg.lateID).Output(oc)
	}
	return nil
}

func (o *windowOp[K, In, Acc, Out]) LateRecords() int64 { return o.lateN }

// isLate reports whether w's allowed lateness has passed.
func (o *windowOp[K, In, Acc, Out]) isLate(w Window) bool {
	return o.assigner.IsEventTime() && w.CleanupTime(o.cfg.lateness) <= o.timers.CurrentWatermark()
}

func (o *windowOp[K, In, Acc, Out]) Process(v In, ts dataflow.Timestamp) error {
	ws, err := o.assigner.AssignTo(o.scratch[:0], ts)
	if err != nil {
		return fmt.Errorf("record at %v: %w", ts, err)
	}
	o.scratch = ws
	o.curKey = o.key(v)
	if o.assigner.IsMerging() {
		return o.processMerging(v, ts, ws)
	}
	added := false
	for _, w := range ws {
		if o.isLate(w) {
			continue
		}
		added = true
		if err := o.add(w, w, v); err != nil {
			return err
		}
	}
	if !added {
		o.dropLate(v, ts)
	}
	return nil
}

func (o *windowOp[K, In, Acc, Out]) dropLate(v In, ts dataflow.Timestamp) {
	o.lateN++
	if o.late != nil {
		o.late.Collect(v, ts)
	}
}

// add folds v into the accumulator kept under stateWin and fires or schedules
// window w.
func (o *windowOp[K, In, Acc, Out]) add(w, stateWin Window, v In) error {
	acc, ok, err := o.accs.Get(stateWin)
	if err != nil {
		return err
	}
	if !ok {
		acc = o.agg.CreateAccumulator()
	}
	acc = o.agg.Add(acc, v)
	if err := o.accs.Put(stateWin, acc); err != nil {
		return err
	}
	if w.MaxTimestamp() <= o.timers.CurrentWatermark() {
		// Late within the allowed lateness: fire again with the update.
		o.emit(w, acc)
	} else if !ok || o.assigner.IsMerging() {
		// A window's timers exist exactly while its state does, so they are
		// registered when the state is created; a session's extent may have
		// changed with this record, so its timers are registered every time.
		o.timers.RegisterEventTimeTimer(w.MaxTimestamp())
	}
	if o.cfg.lateness > 0 && (!ok || o.assigner.IsMerging()) {
		o.timers.RegisterEventTimeTimer(w.CleanupTime(o.cfg.lateness))
	}
	return nil
}

func (o *windowOp[K, In, Acc, Out]) emit(w Window, acc Acc) {
	o.out.Collect(Result[K, Out]{Key: o.keyOf(), Window: w, Value: o.agg.Result(acc)}, w.MaxTimestamp())
}

// keyOf is the current key: set by Process (from the record) or OnTimer.
func (o *windowOp[K, In, Acc, Out]) keyOf() K { return o.curKey }

func (o *windowOp[K, In, Acc, Out]) processMerging(v In, ts dataflow.Timestamp, ws []Window) error {
	saved, _, err := o.sessions.Get()
	if err != nil {
		return err
	}
	if err := o.merging.Reset(saved); err != nil {
		return err
	}
	added := false
	for _, w := range ws {
		m := o.merging.Add(w)
		if o.isLate(m.Window) {
			// The merged session is already past its lateness: undo.
			if err := o.merging.Reset(saved); err != nil {
				return err
			}
			continue
		}
		for _, r := range m.Replaced {
			o.timers.DeleteEventTimeTimer(r.MaxTimestamp())
			if o.cfg.lateness > 0 {
				o.timers.DeleteEventTimeTimer(r.CleanupTime(o.cfg.lateness))
			}
		}
		for _, sw := range m.MergedState {
			acc, ok, err := o.accs.Get(sw)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			into, ok, err := o.accs.Get(m.State)
			if err != nil {
				return err
			}
			if ok {
				acc = o.agg.Merge(into, acc)
			}
			if err := o.accs.Put(m.State, acc); err != nil {
				return err
			}
			if err := o.accs.Remove(sw); err != nil {
				return err
			}
		}
		added = true
		if err := o.add(m.Window, m.State, v); err != nil {
			return err
		}
		saved = o.merging.Sessions()
	}
	if !added {
		o.dropLate(v, ts)
		return nil
	}
	return o.sessions.Update(saved)
}

// OnTimer fires the windows ending at the timer and drops those whose allowed
// lateness ends at it.
func (o *windowOp[K, In, Acc, Out]) OnTimer(key K, t dataflow.Timer) error {
	o.curKey = key
	if o.assigner.IsMerging() {
		return o.onSessionTimer(t.Time)
	}
	var fire []Window
	var fireAccs []Acc
	var drop []Window
	err := o.accs.Range(func(w Window, acc Acc) bool {
		if w.MaxTimestamp() == t.Time {
			fire = append(fire, w)
			fireAccs = append(fireAccs, acc)
		}
		if w.CleanupTime(o.cfg.lateness) == t.Time {
			drop = append(drop, w)
		}
		return true
	})
	if err != nil {
		return err
	}
	sortWindows(fire, fireAccs)
	for i, w := range fire {
		o.emit(w, fireAccs[i])
	}
	for _, w := range drop {
		if err := o.accs.Remove(w); err != nil {
			return err
		}
	}
	return nil
}

func (o *windowOp[K, In, Acc, Out]) onSessionTimer(t dataflow.Timestamp) error {
	saved, _, err := o.sessions.Get()
	if err != nil {
		return err
	}
	keep := saved[:0:0]
	for _, s := range saved {
		acc, ok, err := o.accs.Get(s.State)
		if err != nil {
			return err
		}
		if s.Window.MaxTimestamp() == t && ok {
			o.emit(s.Window, acc)
		}
		if s.Window.CleanupTime(o.cfg.lateness) == t {
			if err := o.accs.Remove(s.State); err != nil {
				return err
			}
			continue
		}
		keep = append(keep, s)
	}
	if len(keep) == 0 {
		return o.sessions.Clear()
	}
	return o.sessions.Update(keep)
}

func (o *windowOp[K, In, Acc, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }
func (o *windowOp[K, In, Acc, Out]) Finish(context.Context) error              { return nil }
func (o *windowOp[K, In, Acc, Out]) Close() error                              { return nil }

// sortWindows orders windows (and their accumulators) by start, so windows of
// one key that fire together are emitted in a deterministic order.
func sortWindows[A any](ws []Window, accs []A) {
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].Start < ws[j-1].Start; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
			accs[j], accs[j-1] = accs[j-1], accs[j]
		}
	}
}
