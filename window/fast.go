package window

import (
	"context"
	"fmt"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

// fastAgg is the window operator of the commonest case: tumbling or sliding
// event-time windows, the event-time trigger and incremental aggregation.
// It gives the results of core with that assigner and trigger, and keeps the
// same state ("windows"), with less work per record: it assigns windows by
// arithmetic, reads and writes the key's windows once per record (not twice
// per window), and registers a window's timer only when the window is
// created. A window fires at its MaxTimestamp timer, and again for each
// record that arrives within the allowed lateness; its state is dropped at
// its cleanup timer (the same timer when the lateness is 0).
type fastAgg[K comparable, In, Acc, Out any] struct {
	cfg config
	// the assigner's: windows of size starting at offset plus multiples of
	// slide (slide == size for tumbling windows)
	size, slide, offset dataflow.Timestamp
	lateness            dataflow.Timestamp
	agg                 operators.AggregateFunction[In, Acc, Out]
	key                 func(In) K
	out                 dataflow.Output[Result[K, Out]]

	timers dataflow.TimerService
	wins   *state.Value[[]slot[Acc]]
	late   dataflow.Output[In]
	lateN  int64
}

// newFastAgg returns the fast operator if assigner and the configuration
// allow it, else nil.
func newFastAgg[K comparable, In, Acc, Out any](c config, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out], key func(In) K, out dataflow.Output[Result[K, Out]]) dataflow.Operator[In] {
	if _, ok := c.trigger.(eventTimeTrigger); !ok || assigner == nil || assigner.Validate() != nil || c.lateness < 0 {
		return nil
	}
	o := &fastAgg[K, In, Acc, Out]{cfg: c, lateness: dataflow.Timestamp(c.lateness), agg: agg, key: key, out: out}
	switch a := assigner.(type) {
	case TumblingAssigner:
		o.size, o.slide, o.offset = a.size, a.size, a.offset
	case SlidingAssigner:
		o.size, o.slide, o.offset = a.size, a.slide, a.offset
	default:
		return nil
	}
	return o
}

func (o *fastAgg[K, In, Acc, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.timers = oc.Timers()
	if o.wins, err = newWindowsState[Acc](oc.State()); err != nil {
		return err
	}
	if o.cfg.lateID != "" {
		o.late = dataflow.NewOutputTag[In](o.cfg.lateID).Output(oc)
	}
	return nil
}

func (o *fastAgg[K, In, Acc, Out]) LateRecords() int64 { return o.lateN }

// cleanupTime is Window.CleanupTime for the operator's lateness.
func (o *fastAgg[K, In, Acc, Out]) cleanupTime(w Window) dataflow.Timestamp {
	m := w.MaxTimestamp()
	if o.lateness > 0 && m > dataflow.MaxWatermark-o.lateness {
		return dataflow.MaxWatermark
	}
	return m + o.lateness
}

func (o *fastAgg[K, In, Acc, Out]) Process(v In, ts dataflow.Timestamp) error {
	if err := checkTimestamp(ts); err != nil {
		return fmt.Errorf("record at %v: %w", ts, err)
	}
	wm := o.timers.CurrentWatermark()
	s, _, err := o.wins.Get()
	if err != nil {
		return err
	}
	added := false
	// The windows holding ts, latest start first (as AssignTo gives them):
	// d is how far ts is past a window's start.
	for d := distance(ts, o.offset, o.slide); ; d += o.slide {
		w := span(ts, d, o.size)
		if ct := o.cleanupTime(w); ct > wm {
			added = true
			i, ok := findSlot(s, w)
			if ok {
				s[i].acc = o.agg.Add(s[i].acc, v)
			} else {
				s = insertSlot(s, i, slot[Acc]{win: w, acc: o.agg.Add(o.agg.CreateAccumulator(), v)})
				// The timers exist exactly while the window's state does.
				end := w.MaxTimestamp()
				if end > wm {
					o.timers.RegisterEventTimeTimer(end)
				}
				if ct != end || end <= wm {
					o.timers.RegisterEventTimeTimer(ct)
				}
			}
			if w.MaxTimestamp() <= wm {
				// Late within the allowed lateness: fire again at once.
				o.out.Collect(Result[K, Out]{Key: o.key(v), Window: w, Value: o.agg.Result(s[i].acc)}, w.MaxTimestamp())
			}
		}
		if d >= o.size-o.slide {
			break
		}
	}
	if !added {
		o.lateN++
		if o.late != nil {
			o.late.Collect(v, ts)
		}
		return nil
	}
	return o.wins.Update(s)
}

// OnTimer fires the key's windows that end at the timer, in start order,
// then drops those whose cleanup time it is.
func (o *fastAgg[K, In, Acc, Out]) OnTimer(key K, t dataflow.Timer) error {
	if t.Domain != dataflow.EventTime {
		return nil // registers none
	}
	s, _, err := o.wins.Get()
	if err != nil || len(s) == 0 {
		return err
	}
	keep := s[:0]
	for _, x := range s {
		if x.win.MaxTimestamp() == t.Time {
			o.out.Collect(Result[K, Out]{Key: key, Window: x.win, Value: o.agg.Result(x.acc)}, t.Time)
		}
		if o.cleanupTime(x.win) != t.Time {
			keep = append(keep, x)
		}
	}
	switch {
	case len(keep) == len(s):
		return nil
	case len(keep) == 0:
		return o.wins.Clear()
	}
	clear(s[len(keep):]) // drop the accumulators' references
	return o.wins.Update(keep)
}

func (o *fastAgg[K, In, Acc, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }
func (o *fastAgg[K, In, Acc, Out]) Finish(context.Context) error              { return nil }
func (o *fastAgg[K, In, Acc, Out]) Close() error                              { return nil }
