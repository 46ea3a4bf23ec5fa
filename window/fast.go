package window

import (
	"context"
	"fmt"
	"reflect"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/internal/keyindex"
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
//
// For keys whose Go equality is their encoding's (strings, integers, bools,
// and arrays and plain structs of them; see cacheableKey), the key's windows
// are kept between checkpoints in a write-back cache, a Go map by key: a
// record costs one lookup (a keyindex.Index) instead of a keyed-state read and write, and a
// key whose windows all fired keeps its (empty) entry instead of leaving
// keyed state and coming back with its next record. SnapshotState, which the
// runtime calls right before it captures keyed state, writes the changed
// keys to keyed state and empties the cache, so every checkpoint holds the
// windows exactly; so does a cache that outgrows maxCachedKeys. A cache that
// misses more than it hits is turned off (see flush).
type fastAgg[K comparable, In, Acc, Out any] struct {
	cfg config
	// the assigner's: windows of size starting at offset plus multiples of
	// slide (slide == size for tumbling windows)
	size, slide, offset dataflow.Timestamp
	lateness            dataflow.Timestamp
	agg                 operators.AggregateFunction[In, Acc, Out]
	key                 func(In) K
	out                 dataflow.Output[Result[K, Out]]

	timers  dataflow.TimerService
	backend state.Backend
	wins    *state.Value[[]slot[Acc]]
	late    dataflow.Output[In]
	lateN   int64

	// cache is nil when keys are not cacheable: each record then reads and
	// writes keyed state, through direct. Else cache indexes cached, which
	// keeps the cached keys' windows side by side.
	cache     *keyindex.Index[K]
	cached    []keyWindows[K, Acc]
	maxCached int
	// lookups in the cache since it was last emptied
	hits, misses int64
	direct       keyWindows[K, Acc]
	enc          keygroup.Encoder[K]
	maxP         int
	encBuf       [2][]byte // keys given to the backend in turn: each stays valid until the next is set
	encI         int
}

// keyWindows is one key's windows as the operator works on them.
type keyWindows[K comparable, Acc any] struct {
	s     []slot[Acc]
	key   K    // cached: the key
	dirty bool // cached: s differs from keyed state
}

// maxCachedKeys bounds the write-back cache: when it holds this many keys
// it is written to keyed state and emptied, so a job with more keys than
// memory (the Badger backend) keeps its windows in the backend. Tests lower
// it.
var maxCachedKeys = 1 << 16

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
	o.timers, o.backend, o.maxP = oc.Timers(), oc.State(), oc.MaxParallelism
	if o.wins, err = newWindowsState[Acc](oc.State()); err != nil {
		return err
	}
	if o.maxCached = maxCachedKeys; o.maxCached > 0 && cacheableKey(reflect.TypeFor[K]()) {
		o.cache = new(keyindex.Index[K])
		o.enc = keygroup.EncoderFor[K]()
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
	var key K
	if o.cache != nil {
		key = o.key(v)
	}
	kw, err := o.windows(key)
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
			i, ok := findSlot(kw.s, w)
			if ok {
				kw.s[i].acc = o.agg.Add(kw.s[i].acc, v)
			} else {
				kw.s = insertSlot(kw.s, i, slot[Acc]{win: w, acc: o.agg.Add(o.agg.CreateAccumulator(), v)})
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
				o.out.Collect(Result[K, Out]{Key: o.key(v), Window: w, Value: o.agg.Result(kw.s[i].acc)}, w.MaxTimestamp())
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
	return o.changed(kw)
}

// OnTimer fires the key's windows that end at the timer, in start order,
// then drops those whose cleanup time it is.
func (o *fastAgg[K, In, Acc, Out]) OnTimer(key K, t dataflow.Timer) error {
	if t.Domain != dataflow.EventTime {
		return nil // registers none
	}
	kw, err := o.windows(key)
	if err != nil || len(kw.s) == 0 {
		return err
	}
	s := kw.s
	keep := s[:0]
	for _, x := range s {
		if x.win.MaxTimestamp() == t.Time {
			o.out.Collect(Result[K, Out]{Key: key, Window: x.win, Value: o.agg.Result(x.acc)}, t.Time)
		}
		if o.cleanupTime(x.win) != t.Time {
			keep = append(keep, x)
		}
	}
	if len(keep) == len(s) {
		return nil
	}
	clear(s[len(keep):]) // drop the accumulators' references
	kw.s = keep
	return o.changed(kw)
}

// windows returns the windows of key, the backend's current key (key is
// only used with the cache). The result is valid until the next call.
func (o *fastAgg[K, In, Acc, Out]) windows(key K) (*keyWindows[K, Acc], error) {
	if o.cache == nil {
		s, _, err := o.wins.Get()
		o.direct.s = s
		return &o.direct, err
	}
	if i, ok := o.cache.Get(key); ok {
		o.hits++
		return &o.cached[i], nil
	}
	o.misses++
	if len(o.cached) >= o.maxCached {
		if err := o.flush(); err != nil {
			return nil, err
		}
		o.setCurrentKey(key) // flush moved the backend to other keys
	}
	s, _, err := o.wins.Get()
	if err != nil || o.cache == nil { // the flush turned the cache off
		o.direct.s = s
		return &o.direct, err
	}
	o.cache.Put(key, int32(len(o.cached)))
	o.cached = append(o.cached, keyWindows[K, Acc]{s: s, key: key})
	return &o.cached[len(o.cached)-1], nil
}

// changed records that kw, the windows of the current key, changed.
func (o *fastAgg[K, In, Acc, Out]) changed(kw *keyWindows[K, Acc]) error {
	switch {
	case o.cache != nil:
		kw.dirty = true
		return nil
	case len(kw.s) == 0:
		return o.wins.Clear()
	}
	return o.wins.Update(kw.s)
}

// flush writes the cache's changed keys to keyed state, in the order they
// were cached, and empties the cache: the lists now belong to keyed state,
// whose snapshots may share them, so the cache must read them again (as
// copies) before changing them.
//
// A cache that missed more often than it hit since it was last emptied
// costs more than it saves (a miss reads keyed state and the flush writes
// it: more keys are live between checkpoints than the cache holds, or
// checkpoints come too often for keys to be seen twice): flush then turns
// it off, and the operator goes on with keyed state alone.
func (o *fastAgg[K, In, Acc, Out]) flush() error {
	for i := range o.cached {
		kw := &o.cached[i]
		if !kw.dirty {
			continue
		}
		o.setCurrentKey(kw.key)
		var err error
		if len(kw.s) == 0 {
			err = o.wins.Clear()
		} else {
			err = o.wins.Update(kw.s)
		}
		if err != nil {
			return fmt.Errorf("write window cache to keyed state: %w", err)
		}
	}
	if o.cache == nil {
		return nil
	}
	o.cache.Clear()
	clear(o.cached)
	o.cached = o.cached[:0]
	if o.hits < o.misses {
		o.cache, o.cached = nil, nil
	}
	o.hits, o.misses = 0, 0
	return nil
}

// setCurrentKey makes key the backend's current key, as the runtime does
// before each record and timer.
func (o *fastAgg[K, In, Acc, Out]) setCurrentKey(key K) {
	b := o.enc(o.encBuf[o.encI][:0], key)
	o.encBuf[o.encI], o.encI = b, 1-o.encI
	o.backend.SetCurrentKey(keygroup.Of(b, o.maxP), b)
}

// SnapshotState writes the cache to keyed state, which the runtime captures
// next. The operator has no other state.
func (o *fastAgg[K, In, Acc, Out]) SnapshotState(context.Context, int64) ([]byte, error) {
	return nil, o.flush()
}

// cacheableKey reports whether keys of type t are equal in Go exactly when
// their encodings (keygroup.EncoderFor) are: then a Go map by key holds what
// keyed state holds by encoded key. Floats are not (NaN is not equal to
// itself), nor pointers and interfaces (compared by identity, encoded by
// value), nor structs with fields the encoding leaves out.
func cacheableKey(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Array:
		return cacheableKey(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Anonymous || f.Tag.Get("msgpack") != "" || !cacheableKey(f.Type) {
				return false
			}
		}
		return true
	}
	return false
}

func (o *fastAgg[K, In, Acc, Out]) ProcessWatermark(dataflow.Timestamp) error { return nil }
func (o *fastAgg[K, In, Acc, Out]) Finish(context.Context) error              { return nil }
func (o *fastAgg[K, In, Acc, Out]) Close() error                              { return nil }
