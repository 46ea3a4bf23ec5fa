package window

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

// contents is what a window holds: an accumulator (incremental aggregation)
// or the records themselves (full-window processing). Keyed state, scoped to
// the current key, indexed by the window that names the state.
type contents[K comparable, In, Out any] interface {
	open(b state.Backend) error
	// add puts v into the window; fresh reports that it created the window.
	add(w Window, v In) (fresh bool, err error)
	// fire emits the window's result for key.
	fire(key K, w, stateWin Window, out dataflow.Output[Result[K, Out]]) error
	// merge moves the contents of from into into.
	merge(into Window, from []Window) error
	clear(w Window) error
	// windows calls fn with every window of the current key.
	windows(fn func(w Window) bool) error
}

// triggerState keys the per-window trigger counters.
type triggerState struct {
	Window Window
	Name   string
}

// core is the window operator: assigner, trigger, allowed lateness, late
// output, and contents in keyed state.
type core[K comparable, In, Out any] struct {
	cfg      config
	assigner Assigner
	trigger  Trigger
	cont     contents[K, In, Out]
	key      func(In) K
	out      dataflow.Output[Result[K, Out]]

	timers   dataflow.TimerService
	counters *state.Map[triggerState, int64]
	sessions *state.Value[[]SessionWindow]
	merging  MergingSet
	late     dataflow.Output[In]
	lateN    int64
	scratch  []Window
	curKey   K
	// the window the trigger context speaks for
	ctxWin   Window
	newWin   bool
	visit    []Window
	lateness dataflow.Timestamp
}

func (o *core[K, In, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.timers = oc.Timers()
	if err = o.cont.open(oc.State()); err != nil {
		return err
	}
	if o.counters, err = state.NewMap[triggerState, int64](oc.State(), "trigger"); err != nil {
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

func (o *core[K, In, Out]) LateRecords() int64 { return o.lateN }

// TriggerContext, for the window in o.ctxWin.
func (o *core[K, In, Out]) CurrentWatermark() dataflow.Timestamp { return o.timers.CurrentWatermark() }
func (o *core[K, In, Out]) CurrentProcessingTime() dataflow.Timestamp {
	return o.timers.CurrentProcessingTime()
}
func (o *core[K, In, Out]) RegisterEventTimeTimer(t dataflow.Timestamp) {
	o.timers.RegisterEventTimeTimer(t)
}
func (o *core[K, In, Out]) RegisterProcessingTimeTimer(t dataflow.Timestamp) {
	o.timers.RegisterProcessingTimeTimer(t)
}
func (o *core[K, In, Out]) DeleteEventTimeTimer(t dataflow.Timestamp) {
	o.timers.DeleteEventTimeTimer(t)
}
func (o *core[K, In, Out]) DeleteProcessingTimeTimer(t dataflow.Timestamp) {
	o.timers.DeleteProcessingTimeTimer(t)
}
func (o *core[K, In, Out]) Counter(name string) (int64, error) {
	v, _, err := o.counters.Get(triggerState{o.ctxWin, name})
	return v, err
}
func (o *core[K, In, Out]) SetCounter(name string, v int64) error {
	if v == 0 {
		return o.counters.Remove(triggerState{o.ctxWin, name})
	}
	return o.counters.Put(triggerState{o.ctxWin, name}, v)
}
func (o *core[K, In, Out]) NewWindow() bool { return o.newWin }

// cleanupTime is when a window's state is dropped: the end of its allowed
// lateness in event time; never for windows that are not in event time.
func (o *core[K, In, Out]) cleanupTime(w Window) (dataflow.Timestamp, bool) {
	if !o.assigner.IsEventTime() {
		return 0, false
	}
	return w.CleanupTime(o.cfg.lateness), true
}

func (o *core[K, In, Out]) isLate(w Window) bool {
	t, ok := o.cleanupTime(w)
	return ok && t <= o.timers.CurrentWatermark()
}

func (o *core[K, In, Out]) Process(v In, ts dataflow.Timestamp) error {
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
		if err := o.addTo(w, w, v, ts); err != nil {
			return err
		}
	}
	if !added {
		o.dropLate(v, ts)
	}
	return nil
}

func (o *core[K, In, Out]) dropLate(v In, ts dataflow.Timestamp) {
	o.lateN++
	if o.late != nil {
		o.late.Collect(v, ts)
	}
}

// addTo adds v to window w (state under stateWin) and runs the trigger.
func (o *core[K, In, Out]) addTo(w, stateWin Window, v In, ts dataflow.Timestamp) error {
	fresh, err := o.cont.add(stateWin, v)
	if err != nil {
		return err
	}
	o.ctxWin, o.newWin = w, fresh
	r, err := o.trigger.OnElement(o, ts, w)
	o.newWin = false
	if err != nil {
		return err
	}
	if err := o.apply(r, w, stateWin); err != nil {
		return err
	}
	// The cleanup timer exists exactly while the window's state does. (When it
	// falls on the window's end it coincides with the event-time trigger's
	// timer; registering it again costs only the deduplication.)
	if t, ok := o.cleanupTime(w); ok && (fresh || o.assigner.IsMerging()) {
		o.timers.RegisterEventTimeTimer(t)
	}
	return nil
}

func (o *core[K, In, Out]) apply(r TriggerResult, w, stateWin Window) error {
	if r.fires() {
		if err := o.cont.fire(o.curKey, w, stateWin, o.out); err != nil {
			return err
		}
	}
	if r.purges() {
		return o.cont.clear(stateWin)
	}
	return nil
}

func (o *core[K, In, Out]) processMerging(v In, ts dataflow.Timestamp, ws []Window) error {
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
			if err := o.merging.Reset(saved); err != nil {
				return err
			}
			continue
		}
		mt := o.trigger.(MergingTrigger) // checked at build time
		for _, r := range m.Replaced {
			o.ctxWin = r
			if err := mt.Clear(o, r); err != nil {
				return err
			}
			if t, ok := o.cleanupTime(r); ok {
				o.timers.DeleteEventTimeTimer(t)
			}
		}
		if err := o.cont.merge(m.State, m.MergedState); err != nil {
			return err
		}
		if len(m.Replaced) > 0 {
			o.ctxWin = m.Window
			if err := mt.OnMerge(o, m.Window); err != nil {
				return err
			}
		}
		added = true
		if err := o.addTo(m.Window, m.State, v, ts); err != nil {
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

// OnTimer runs the trigger of every window of the key for the timer, then
// drops the windows whose cleanup time it is.
func (o *core[K, In, Out]) OnTimer(key K, t dataflow.Timer) error {
	o.curKey = key
	if o.assigner.IsMerging() {
		return o.onSessionTimer(t)
	}
	o.visit = o.visit[:0]
	if err := o.cont.windows(func(w Window) bool { o.visit = append(o.visit, w); return true }); err != nil {
		return err
	}
	// Windows of one key that fire together are emitted in start order.
	slices.SortFunc(o.visit, func(a, b Window) int { return cmp.Compare(a.Start, b.Start) })
	for _, w := range o.visit {
		if err := o.onWindowTimer(t, w, w); err != nil {
			return err
		}
	}
	return nil
}

func (o *core[K, In, Out]) onWindowTimer(t dataflow.Timer, w, stateWin Window) error {
	o.ctxWin = w
	var r TriggerResult
	var err error
	if t.Domain == dataflow.EventTime {
		r, err = o.trigger.OnEventTime(o, t.Time, w)
	} else {
		r, err = o.trigger.OnProcessingTime(o, t.Time, w)
	}
	if err != nil {
		return err
	}
	if err := o.apply(r, w, stateWin); err != nil {
		return err
	}
	if ct, ok := o.cleanupTime(w); ok && t.Domain == dataflow.EventTime && ct == t.Time {
		if err := o.trigger.Clear(o, w); err != nil {
			return err
		}
		return o.cont.clear(stateWin)
	}
	return nil
}

func (o *core[K, In, Out]) onSessionTimer(t dataflow.Timer) error {
	saved, _, err := o.sessions.Get()
	if err != nil {
		return err
	}
	keep := saved[:0:0]
	for _, s := range saved {
		if err := o.onWindowTimer(t, s.Window, s.State); err != nil {
			return err
		}
		if ct, ok := o.cleanupTime(s.Window); ok && t.Domain == dataflow.EventTime && ct == t.Time {
			continue
		}
		keep = append(keep, s)
	}
	if len(keep) == 0 {
		return o.sessions.Clear()
	}
	return o.sessions.Update(keep)
}

func (o *core[K, In, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }
func (o *core[K, In, Out]) Finish(context.Context) error              { return nil }
func (o *core[K, In, Out]) Close() error                              { return nil }
