package window

import (
	"fmt"
	"time"

	"github.com/sluicedata/sluice/dataflow"
)

// TriggerResult is what a trigger decides for a window.
type TriggerResult uint8

const (
	// Continue does nothing.
	Continue TriggerResult = iota
	// Fire emits the window's result and keeps its contents.
	Fire
	// Purge drops the window's contents without emitting.
	Purge
	// FireAndPurge emits the window's result, then drops its contents.
	FireAndPurge
)

func (r TriggerResult) fires() bool  { return r == Fire || r == FireAndPurge }
func (r TriggerResult) purges() bool { return r == Purge || r == FireAndPurge }

// Trigger decides when a window emits its result. The operator calls it per
// (key, window) from the subtask's goroutine: on every record added to the
// window, and on every timer of the key (a trigger recognises its own timers
// by their time, for example the window's MaxTimestamp). Triggers keep what
// they need between calls in the context's per-window counters, which are
// keyed state, and register timers through the context. Clear runs when the
// window's state is dropped and must delete the trigger's timers and counters.
type Trigger interface {
	OnElement(ctx TriggerContext, ts dataflow.Timestamp, w Window) (TriggerResult, error)
	OnEventTime(ctx TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error)
	OnProcessingTime(ctx TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error)
	Clear(ctx TriggerContext, w Window) error
}

// TriggerContext is what a trigger can do for the current key and window.
type TriggerContext interface {
	CurrentWatermark() dataflow.Timestamp
	CurrentProcessingTime() dataflow.Timestamp
	RegisterEventTimeTimer(t dataflow.Timestamp)
	RegisterProcessingTimeTimer(t dataflow.Timestamp)
	DeleteEventTimeTimer(t dataflow.Timestamp)
	DeleteProcessingTimeTimer(t dataflow.Timestamp)
	// Counter reads a named per-window counter (0 if unset).
	Counter(name string) (int64, error)
	// SetCounter sets it; 0 deletes it.
	SetCounter(name string, v int64) error
	// NewWindow reports, in OnElement, whether this record created the
	// window's contents: a trigger whose timer is fixed per window (its end)
	// needs to register it only then.
	NewWindow() bool
}

// MergingTrigger is a trigger usable with merging (session) windows: OnMerge
// runs for the window that sessions merged into, after the triggers of the
// replaced windows were cleared.
type MergingTrigger interface {
	Trigger
	OnMerge(ctx TriggerContext, w Window) error
}

// EventTimeTrigger fires a window once the watermark passes its end, and
// again for every record added within the allowed lateness. It is the
// default trigger of event-time windows.
func EventTimeTrigger() Trigger { return eventTimeTrigger{} }

type eventTimeTrigger struct{}

func (eventTimeTrigger) OnElement(ctx TriggerContext, _ dataflow.Timestamp, w Window) (TriggerResult, error) {
	if w.MaxTimestamp() <= ctx.CurrentWatermark() {
		return Fire, nil // late within the allowed lateness: fire again at once
	}
	if ctx.NewWindow() {
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	}
	return Continue, nil
}

func (eventTimeTrigger) OnMerge(ctx TriggerContext, w Window) error {
	if w.MaxTimestamp() > ctx.CurrentWatermark() {
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	}
	return nil
}

func (eventTimeTrigger) OnEventTime(_ TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error) {
	if t == w.MaxTimestamp() {
		return Fire, nil
	}
	return Continue, nil
}

func (eventTimeTrigger) OnProcessingTime(TriggerContext, dataflow.Timestamp, Window) (TriggerResult, error) {
	return Continue, nil
}

func (eventTimeTrigger) Clear(ctx TriggerContext, w Window) error {
	ctx.DeleteEventTimeTimer(w.MaxTimestamp())
	return nil
}

// ProcessingTimeTrigger fires a window when processing time reaches its end.
func ProcessingTimeTrigger() Trigger { return processingTimeTrigger{} }

type processingTimeTrigger struct{}

func (processingTimeTrigger) OnElement(ctx TriggerContext, _ dataflow.Timestamp, w Window) (TriggerResult, error) {
	if ctx.NewWindow() {
		ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	}
	return Continue, nil
}

func (processingTimeTrigger) OnMerge(ctx TriggerContext, w Window) error {
	ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	return nil
}

func (processingTimeTrigger) OnEventTime(TriggerContext, dataflow.Timestamp, Window) (TriggerResult, error) {
	return Continue, nil
}

func (processingTimeTrigger) OnProcessingTime(_ TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error) {
	if t == w.MaxTimestamp() {
		return Fire, nil
	}
	return Continue, nil
}

func (processingTimeTrigger) Clear(ctx TriggerContext, w Window) error {
	ctx.DeleteProcessingTimeTimer(w.MaxTimestamp())
	return nil
}

// CountTrigger fires a window every n records.
func CountTrigger(n int64) Trigger { return countTrigger{n: n} }

type countTrigger struct{ n int64 }

const countName = "count"

func (c countTrigger) OnElement(ctx TriggerContext, _ dataflow.Timestamp, _ Window) (TriggerResult, error) {
	got, err := ctx.Counter(countName)
	if err != nil {
		return Continue, err
	}
	got++
	if got >= c.n {
		return Fire, ctx.SetCounter(countName, 0)
	}
	return Continue, ctx.SetCounter(countName, got)
}

func (countTrigger) OnEventTime(TriggerContext, dataflow.Timestamp, Window) (TriggerResult, error) {
	return Continue, nil
}
func (countTrigger) OnProcessingTime(TriggerContext, dataflow.Timestamp, Window) (TriggerResult, error) {
	return Continue, nil
}
func (countTrigger) Clear(ctx TriggerContext, _ Window) error { return ctx.SetCounter(countName, 0) }

func (c countTrigger) Validate() error {
	if c.n <= 0 {
		return fmt.Errorf("%w: count trigger of %d records", ErrInvalidWindow, c.n)
	}
	return nil
}

// ContinuousEventTimeTrigger fires a window early every interval of event
// time (as the watermark passes each multiple of interval), and at its end:
// early results for long windows.
func ContinuousEventTimeTrigger(interval time.Duration) Trigger {
	return continuousTrigger{interval: dataflow.Timestamp(interval)}
}

type continuousTrigger struct{ interval dataflow.Timestamp }

const nextFireName = "next-fire"

func (c continuousTrigger) OnElement(ctx TriggerContext, ts dataflow.Timestamp, w Window) (TriggerResult, error) {
	if w.MaxTimestamp() <= ctx.CurrentWatermark() {
		return Fire, nil
	}
	ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	next, err := ctx.Counter(nextFireName)
	if err != nil || next != 0 {
		return Continue, err
	}
	// The first early firing: the next multiple of interval after ts.
	start := ts - (ts%c.interval+c.interval)%c.interval
	first := min(start+c.interval-1, w.MaxTimestamp())
	ctx.RegisterEventTimeTimer(first)
	return Continue, ctx.SetCounter(nextFireName, int64(first))
}

func (c continuousTrigger) OnEventTime(ctx TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error) {
	if t == w.MaxTimestamp() {
		return Fire, nil
	}
	next, err := ctx.Counter(nextFireName)
	if err != nil || dataflow.Timestamp(next) != t {
		return Continue, err
	}
	following := min(t+c.interval, w.MaxTimestamp())
	ctx.RegisterEventTimeTimer(following)
	return Fire, ctx.SetCounter(nextFireName, int64(following))
}

func (continuousTrigger) OnProcessingTime(TriggerContext, dataflow.Timestamp, Window) (TriggerResult, error) {
	return Continue, nil
}

func (continuousTrigger) Clear(ctx TriggerContext, w Window) error {
	ctx.DeleteEventTimeTimer(w.MaxTimestamp())
	if next, err := ctx.Counter(nextFireName); err == nil && next != 0 {
		ctx.DeleteEventTimeTimer(dataflow.Timestamp(next))
	}
	return ctx.SetCounter(nextFireName, 0)
}

func (c continuousTrigger) Validate() error {
	if c.interval <= 0 {
		return fmt.Errorf("%w: continuous trigger interval %v must be positive", ErrInvalidWindow, time.Duration(c.interval))
	}
	return nil
}

// Purging makes every firing of t also drop the window's contents, so each
// result covers only the records since the previous firing.
func Purging(t Trigger) Trigger { return purging{t} }

type purging struct{ Trigger }

func purge(r TriggerResult, err error) (TriggerResult, error) {
	if r == Fire {
		r = FireAndPurge
	}
	return r, err
}

func (p purging) OnElement(ctx TriggerContext, ts dataflow.Timestamp, w Window) (TriggerResult, error) {
	return purge(p.Trigger.OnElement(ctx, ts, w))
}
func (p purging) OnEventTime(ctx TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error) {
	return purge(p.Trigger.OnEventTime(ctx, t, w))
}
func (p purging) OnProcessingTime(ctx TriggerContext, t dataflow.Timestamp, w Window) (TriggerResult, error) {
	return purge(p.Trigger.OnProcessingTime(ctx, t, w))
}
func (p purging) Validate() error {
	if v, ok := p.Trigger.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// CountWindows groups each key's records into windows of n records: a global
// window with a purging count trigger. Results carry the global window. As in
// Flink, the records of a window that has fewer than n at end of input are not
// emitted.
func CountWindows(n int64) (Assigner, Trigger) { return Global(), Purging(CountTrigger(n)) }
