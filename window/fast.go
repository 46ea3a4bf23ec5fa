package window

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keycache"
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
// For keys whose Go equality is their encoding's (keycache.Cacheable), the
// key's windows are kept between checkpoints in a write-back cache
// (keycache): a record costs one lookup instead of a keyed-state read and
// write, and a key whose windows all fired keeps its (empty) entry instead
// of leaving keyed state and coming back with its next record.
// SnapshotState, which the runtime calls right before it captures keyed
// state, writes the changed keys to keyed state and empties the cache, so
// every checkpoint holds the windows exactly; so does a cache in front of
// Badger that outgrows maxCachedKeys. In front of the heap backend the
// cache takes a key's windows out of keyed state when it caches them, so
// that memory holds them once, and has no bound. A cache that misses more
// than it hits is turned off. A cached key's windows are a slotList: a
// tumbling window's sit in the cache entry itself.
//
// With no allowed lateness and keys of integer or string type, the
// operator keeps runs instead (see runs.go): the cache is a buffer of
// partial accumulators (bounded in front of a store, unbounded on the
// heap), written out as sorted runs without reading anything, and a window
// fires from ProcessWatermark from the buffer's partials, merged with the
// window's runs if it has any; no per-key timer is kept.
type fastAgg[K comparable, In, Acc, Out any] struct {
	cfg config
	// the assigner's: windows of size starting at offset plus multiples of
	// slide (slide == size for tumbling windows)
	size, slide, offset dataflow.Timestamp
	grid                grid // the windows by number
	lateness            dataflow.Timestamp
	agg                 operators.AggregateFunction[In, Acc, Out]
	key                 func(In) K
	out                 dataflow.Output[Result[K, Out]]

	timers dataflow.TimerService
	// probe, in front of a store or with runs: whether a key has a timer,
	// and so windows (see windows)
	probe  dataflow.EventTimerProbe
	store  bool // the backend is a store (not state.InMemory)
	pfKeys []K  // Prefetch's
	wins   *state.Value[[]gslot[Acc]]
	late   dataflow.Output[In]
	lateN  int64
	weight func(In) int64 // records an input stands for (partials); nil: one

	// cache holds the windows of the keys seen since the last checkpoint;
	// when it is off (nil: keys not cacheable) each record reads and writes
	// keyed state, through direct.
	cache   *keycache.Cache[K, slotList[Acc]]
	direct  keyWindows[K, Acc]
	directS []gslot[Acc] // direct's windows

	// runs, in front of a store with no allowed lateness and keys of
	// integer or string type (see runs.go): the cache is a buffer of
	// partial accumulators written out as runs, and windows fire from
	// ProcessWatermark, with no per-key timers. nil otherwise.
	runs *runStore[K, Acc]
}

// keyWindows is one key's windows as the operator works on them: Value is
// the list, Dirty (cached entries) that it differs from keyed state.
type keyWindows[K comparable, Acc any] = keycache.Entry[K, slotList[Acc]]

// maxCachedKeys bounds the write-back cache: when it holds this many keys
// it is written to keyed state and emptied, so a job with more keys than
// memory (the Badger backend) keeps its windows in the backend. Tests lower
// it.
var maxCachedKeys = 1 << 16

// runBufferKeys, when positive, is the size of the runs' buffer instead of
// the backend's cache size (state.CacheEntries). Tests lower it.
var runBufferKeys = 0

// heapRuns: the operator keeps runs on the heap backend too, where it may
// (see runs.go). Tests turn it off to restore runs into per-key windows.
var heapRuns = true

// newFastAgg returns the fast operator if assigner and the configuration
// allow it, else nil.
func newFastAgg[K comparable, In, Acc, Out any](c config, assigner Assigner, agg operators.AggregateFunction[In, Acc, Out], key func(In) K, out dataflow.Output[Result[K, Out]]) dataflow.Operator[In] {
	if _, ok := c.trigger.(eventTimeTrigger); !ok || assigner == nil || assigner.Validate() != nil || c.lateness < 0 {
		return nil
	}
	o := &fastAgg[K, In, Acc, Out]{cfg: c, lateness: dataflow.Timestamp(c.lateness), agg: agg, key: key, out: out}
	if w, ok := agg.(interface{ records(In) int64 }); ok {
		o.weight = w.records
	}
	switch a := assigner.(type) {
	case TumblingAssigner:
		o.size, o.slide, o.offset = a.size, a.size, a.offset
	case SlidingAssigner:
		o.size, o.slide, o.offset = a.size, a.slide, a.offset
	default:
		return nil
	}
	o.grid = newGrid(o.size, o.slide, o.offset)
	return o
}

func (o *fastAgg[K, In, Acc, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	o.timers = oc.Timers()
	o.store = !state.InMemory(oc.State())
	p, probes := o.timers.(dataflow.EventTimerProbe)
	if probes && o.store {
		o.probe = p
	}
	if o.wins, err = newWindowsState[gslot[Acc], Acc](oc.State(), gridSlots[Acc]{o.grid}); err != nil {
		return err
	}
	runs, err := openRuns[K, Acc](oc.State(), oc.KeyGroups, o.grid)
	if err != nil {
		return err
	}
	if probes && (o.store || heapRuns) && o.lateness == 0 && runs.decode != nil && keycache.Cacheable(reflect.TypeFor[K]()) {
		// With runs, only restored per-key windows have timers: a key
		// without one has no windows in keyed state.
		o.runs, o.probe = runs, p
		// On the heap the buffer has no bound: it is written out as runs
		// at checkpoints only.
		size := math.MaxInt32
		if o.store {
			size = state.CacheEntries(oc.State())
		}
		if runBufferKeys > 0 {
			size = runBufferKeys
		}
		o.cache = keycache.NewBuffer[K, slotList[Acc]](oc.State(), oc.MaxParallelism, max(size, 1))
	} else {
		o.cache = keycache.New[K, slotList[Acc]](oc.State(), oc.MaxParallelism, maxCachedKeys)
		if len(runs.pending) > 0 {
			if err := o.moveRuns(runs, oc.KeyGroups); err != nil {
				return err
			}
		}
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
	if o.cache.On() {
		key = o.key(v)
	}
	kw, err := o.windows(key, true)
	if err != nil {
		return err
	}
	added := false
	// The windows holding ts, latest start first (as AssignTo gives them):
	// window k, d past its start.
	for k, d := o.grid.latest(ts); ; k, d = k-1, d+o.slide {
		w := o.grid.window(k)
		if ct := o.cleanupTime(w); ct > wm {
			added = true
			s := kw.Value.view()
			i, ok := findGslot(s, k)
			if ok {
				s[i].acc = o.agg.Add(s[i].acc, v)
			} else {
				kw.Value.insert(i, gslot[Acc]{k: k, acc: o.agg.Add(o.agg.CreateAccumulator(), v)})
				if o.runs != nil {
					o.runs.note(k) // fired from ProcessWatermark
				} else {
					// The timers exist exactly while the window's state does.
					o.registerTimers(w, wm, o.timers.RegisterEventTimeTimer)
				}
			}
			if w.MaxTimestamp() <= wm {
				// Late within the allowed lateness: fire again at once.
				o.out.Collect(Result[K, Out]{Key: o.key(v), Window: w, Value: o.agg.Result(kw.Value.view()[i].acc)}, w.MaxTimestamp())
			}
		}
		if d >= o.size-o.slide {
			break
		}
	}
	if !added {
		if o.weight != nil {
			o.lateN += o.weight(v) // a partial stands for its records
		} else {
			o.lateN++
		}
		if o.late != nil {
			o.late.Collect(v, ts)
		}
		return nil
	}
	return o.changed(kw)
}

// registerTimers registers, with reg, the timers of window w, created at
// watermark wm: at its end, and at its cleanup time if that differs or the
// end is past.
func (o *fastAgg[K, In, Acc, Out]) registerTimers(w Window, wm dataflow.Timestamp, reg func(dataflow.Timestamp)) {
	end, ct := w.MaxTimestamp(), o.cleanupTime(w)
	if end > wm {
		reg(end)
	}
	if ct != end || end <= wm {
		reg(ct)
	}
}

// OnTimer fires the key's windows that end at the timer, in start order,
// then drops those whose cleanup time it is. With runs, only keys restored
// with windows of their own ("windows") have timers: their windows join
// the buffer, and fire with the runs in ProcessWatermark.
func (o *fastAgg[K, In, Acc, Out]) OnTimer(key K, t dataflow.Timer) error {
	if t.Domain != dataflow.EventTime {
		return nil // registers none
	}
	kw, err := o.windows(key, false)
	if err != nil || o.runs != nil {
		return err
	}
	s := kw.Value.view()
	if len(s) == 0 {
		return nil
	}
	keep := s[:0]
	for _, x := range s {
		w := o.grid.window(x.k)
		if w.MaxTimestamp() == t.Time {
			o.out.Collect(Result[K, Out]{Key: key, Window: w, Value: o.agg.Result(x.acc)}, t.Time)
		}
		if o.cleanupTime(w) != t.Time {
			keep = append(keep, x)
		}
	}
	if len(keep) == len(s) {
		return nil
	}
	kw.Value.truncate(len(keep))
	return o.changed(kw)
}

// Prefetch loads the cache entries of the records' keys (see
// dataflow.Prefetcher); in front of a store, it also reads the windows of
// those that are not cached and have a timer (those without have none)
// from the store, from several goroutines at once (state.Value.Prefetch).
func (o *fastAgg[K, In, Acc, Out]) Prefetch(vs []In) {
	if !o.store || o.probe == nil || o.cache == nil || o.runs != nil {
		// With runs, a record reads the store only for a key restored with
		// per-key windows (a timer): once after a restore of that layout.
		keycache.PrefetchRecords(o.cache, o.key, vs)
		return
	}
	o.pfKeys = o.pfKeys[:0]
	for _, v := range vs {
		o.pfKeys = append(o.pfKeys, o.key(v))
	}
	o.wins.Prefetch(o.cache.Uncached(o.pfKeys, o.timerOf))
	clear(o.pfKeys) // drop the references the keys hold
}

// timerOf reports whether the key of enc may have a timer, for Prefetch.
func (o *fastAgg[K, In, Acc, Out]) timerOf(enc []byte) bool {
	has, known := o.probe.HasEventTimerOf(enc)
	return has || !known
}

// PrefetchKeys loads the cache entries of keys whose timers fire next (see
// dataflow.KeyPrefetcher), and in front of a store reads the windows of
// those that are not cached, as Prefetch does.
func (o *fastAgg[K, In, Acc, Out]) PrefetchKeys(keys []K) {
	if !o.store || o.probe == nil {
		o.cache.Prefetch(keys)
		return
	}
	o.wins.Prefetch(o.cache.Uncached(keys, nil))
}

// windows returns the windows of key, the backend's current key (key is
// only used with the cache). The result is valid until the next call.
//
// For a record (record), a key without a timer has no windows: each window
// in keyed state has a timer pending, at its end or its cleanup time, from
// when it is created until it is dropped, and a record comes when no timer
// fires. In front of a store, its windows are then not read (probe). A
// timer's key has its windows read: the one firing is no longer pending.
func (o *fastAgg[K, In, Acc, Out]) windows(key K, record bool) (*keyWindows[K, Acc], error) {
	if o.runs != nil && o.runs.mirrored {
		if err := o.runs.dropMirror(); err != nil {
			return nil, err
		}
		o.cache.SetCurrentKey(key) // dropping moved the backend to other keys
	}
	if o.cache.On() {
		if kw := o.cache.Get(key); kw != nil {
			return kw, nil
		}
		if o.cache.Full() {
			if err := o.flush(); err != nil {
				return nil, err
			}
			o.cache.SetCurrentKey(key) // the flush moved the backend to other keys
		}
	}
	var s []gslot[Acc]
	var err error
	if has, known := o.hasTimer(record); has || !known {
		s, _, err = o.wins.Get()
	}
	if err != nil || !o.cache.On() { // off, or the flush turned it off
		o.directS = s
		o.direct.Value.wrap(&o.directS)
		return &o.direct, err
	}
	taken := len(s) > 0 && (o.cache.Owns() || o.runs != nil)
	if o.runs != nil {
		for _, x := range s {
			o.runs.note(x.k)
		}
	}
	if taken {
		if err := o.wins.Clear(); err != nil {
			return nil, err
		}
	}
	kw := o.cache.Put(key, slotList[Acc]{})
	kw.Value.set(s)
	kw.Dirty = taken // written back at the next flush
	return kw, nil
}

// hasTimer reports whether the current key has a timer pending, for a
// record, when the probe knows; known is false otherwise.
func (o *fastAgg[K, In, Acc, Out]) hasTimer(record bool) (has, known bool) {
	if o.probe == nil || !record {
		return false, false
	}
	return o.probe.HasEventTimer()
}

// changed records that kw, the windows of the current key, changed.
func (o *fastAgg[K, In, Acc, Out]) changed(kw *keyWindows[K, Acc]) error {
	switch {
	case o.cache.On():
		kw.Dirty = true
		return nil
	case len(kw.Value.view()) == 0:
		return o.wins.Clear()
	}
	return o.wins.Update(kw.Value.slice())
}

// flush writes the cache's changed keys to keyed state and empties it (see
// keycache.Cache.Flush).
func (o *fastAgg[K, In, Acc, Out]) flush() error {
	if o.runs != nil {
		return o.spill()
	}
	err := o.cache.Flush(func(kw *keyWindows[K, Acc]) error {
		if len(kw.Value.view()) == 0 {
			return o.wins.Clear()
		}
		return o.wins.Update(kw.Value.slice())
	})
	if err != nil {
		return fmt.Errorf("write window cache to keyed state: %w", err)
	}
	return nil
}

// SnapshotState writes the cache to keyed state, which the runtime captures
// next. The operator has no other state.
func (o *fastAgg[K, In, Acc, Out]) SnapshotState(context.Context, int64) ([]byte, error) {
	return nil, o.flush()
}

// ProcessWatermark fires, with runs, the windows whose end wm reached:
// their partials leave the buffer (the windows due are the first of each
// key's), and are merged with the windows' runs.
func (o *fastAgg[K, In, Acc, Out]) ProcessWatermark(wm dataflow.Timestamp) error {
	if o.runs == nil {
		return nil
	}
	due, spilled := o.runs.due(wm)
	if len(due) == 0 {
		return nil
	}
	if err := o.runs.dropMirror(); err != nil {
		return err
	}
	last := due[len(due)-1]
	mem := &o.runs.mem
	if len(spilled) > 0 {
		mem.grow(o.cache.Len(), o.cache.Len()*8)
	}
	idle := 0 // keys left with no window
	err := o.cache.Range(func(kw *keyWindows[K, Acc]) error {
		s := kw.Value.view()
		n := 0
		for ; n < len(s) && s[n].k <= last; n++ {
			if slices.Contains(spilled, s[n].k) {
				// merged with the window's runs below
				kg, enc := o.cache.Encode(kw.Key)
				mem.add(kg, s[n].k, enc, s[n].acc)
				continue
			}
			// a window with no runs fires from the buffer alone
			w := o.grid.window(s[n].k)
			o.out.Collect(Result[K, Out]{Key: kw.Key, Window: w, Value: o.agg.Result(s[n].acc)}, w.MaxTimestamp())
		}
		if n > 0 {
			kw.Value.dropFirst(n)
		}
		if len(kw.Value.view()) == 0 {
			idle++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if idle > o.cache.Len()/2 {
		// Keys without windows leave the buffer, which then holds the keys
		// of windows not yet fired, not every key seen since the last
		// checkpoint (on the heap the buffer has no bound).
		o.cache.Retain(func(kw *keyWindows[K, Acc]) bool { return len(kw.Value.view()) > 0 })
	}
	if len(spilled) == 0 {
		return nil
	}
	mem.sortDistinct() // a key's windows are distinct
	defer mem.reset()
	for _, k := range spilled {
		w := o.grid.window(k)
		end := w.MaxTimestamp()
		err := o.runs.fire(k, o.agg.Merge, func(enc []byte, acc Acc) {
			o.out.Collect(Result[K, Out]{Key: o.runs.decode(enc), Window: w, Value: o.agg.Result(acc)}, end)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// spill writes the buffer's partial accumulators as runs and, in front of
// a store, empties it. On the heap, where the buffer has no bound and is
// written out at checkpoints only, the runs are a mirror of the buffer for
// the checkpoint (see runStore.mirror): the buffer keeps its keys, and its
// windows fire from it alone, in one pass.
func (o *fastAgg[K, In, Acc, Out]) spill() error {
	err := o.runs.dropMirror()
	switch {
	case err != nil:
	case o.store:
		o.runs.q.grow(o.cache.Len(), o.cache.Len()*8)
		err = o.cache.Drain(func(kw *keyWindows[K, Acc], kg int, enc []byte) error {
			o.runs.add(kw.Value.view(), kg, enc)
			return nil
		})
		if err == nil {
			err = o.runs.write()
		}
	default:
		err = o.runs.mirror(o.cache.Len(), func(i int) (int, []byte, []gslot[Acc]) {
			kw := o.cache.At(i)
			kg, enc := o.cache.Encode(kw.Key)
			return kg, enc, kw.Value.view()
		})
	}
	if err != nil {
		return fmt.Errorf("write window buffer as runs: %w", err)
	}
	return nil
}

// moveRuns moves restored runs into keyed state ("windows"), for an
// operator without runs, and registers each key's timers.
func (o *fastAgg[K, In, Acc, Out]) moveRuns(r *runStore[K, Acc], kgs dataflow.KeyGroupRange) error {
	reg, ok := o.timers.(dataflow.EventTimerRegistrar[K])
	if !ok || r.decode == nil {
		return fmt.Errorf("window state holds runs, which this operator (key type %v) cannot restore", reflect.TypeFor[K]())
	}
	wm := o.timers.CurrentWatermark()
	b := r.be
	for kg := kgs.Start; kg < kgs.End; kg++ {
		items, err := r.take(kg, 0, true, o.agg.Merge)
		if err != nil {
			return err
		}
		for i := range items {
			it := &items[i]
			enc := r.q.enc(it)
			b.SetCurrentKey(kg, enc)
			s, _, err := o.wins.Get()
			if err != nil {
				return err
			}
			if j, found := findGslot(s, it.k); found {
				s[j].acc = o.agg.Merge(s[j].acc, it.acc)
			} else {
				s = insertSlot(s, j, gslot[Acc]{k: it.k, acc: it.acc})
			}
			if err := o.wins.Update(s); err != nil {
				return err
			}
			key := r.decode(enc)
			o.registerTimers(o.grid.window(it.k), wm, func(t dataflow.Timestamp) { reg.RegisterEventTimeTimerFor(key, t) })
		}
	}
	return nil
}
func (o *fastAgg[K, In, Acc, Out]) Finish(context.Context) error { return nil }
func (o *fastAgg[K, In, Acc, Out]) Close() error                 { return nil }
