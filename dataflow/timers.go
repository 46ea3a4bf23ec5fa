package dataflow

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the operator's watermark reaches them.
	EventTime TimeDomain = iota
	// ProcessingTime timers fire when the wall clock reaches them.
	ProcessingTime
)

func (d TimeDomain) String() string {
	if d == EventTime {
		return "event time"
	}
	return "processing time"
}

// Timer is a timer that fired.
type Timer struct {
	Time   Timestamp
	Domain TimeDomain
}

// TimerService registers timers for the current key of a keyed operator: the
// key of the record being processed, or of the timer being handled. A timer is
// unique per (key, time, domain): registering it again does nothing. Timers
// fire in time order (ties in the order of the keys' encodings; a timer
// registered while the timers of its time are firing fires after them), each
// with the state scoped to its key, through the operator's OnTimer (see
// TimerHandler).
// Event-time timers fire when the watermark passes them, before the watermark
// is forwarded; at end of input the MaxWatermark fires all of them. Pending
// processing-time timers are dropped at end of input.
//
// Timers are part of checkpoints: each keyed operator subtask writes its
// timers, by key group, next to its keyed state, and a restore at another
// parallelism gives each subtask the timers of the key groups it owns. Taking
// a checkpoint only marks the timers as shared (copy-on-write); they are
// encoded and written on another goroutine while processing goes on.
type TimerService interface {
	CurrentWatermark() Timestamp
	CurrentProcessingTime() Timestamp
	RegisterEventTimeTimer(t Timestamp)
	RegisterProcessingTimeTimer(t Timestamp)
	DeleteEventTimeTimer(t Timestamp)
	DeleteProcessingTimeTimer(t Timestamp)
}

// TimerHandler is implemented by keyed operators that register timers. The
// runtime calls OnTimer from the subtask's goroutine with the timer's key set
// as the current key.
type TimerHandler[K comparable] interface {
	OnTimer(key K, timer Timer) error
}

// KeyPrefetcher is implemented by keyed operators with timers that can
// load the state of keys into the CPU caches before their timers fire, as
// Prefetcher does for records: when many timers fire at once (a tumbling
// window's end gives every key a timer at the same time), the runtime calls
// PrefetchKeys with the keys of up to a hundred or so timers about to fire,
// in the order they will fire, before their OnTimer calls. It must not
// change what the operator or its state hold. The slice is only valid
// during the call.
type KeyPrefetcher[K comparable] interface {
	PrefetchKeys(keys []K)
}

// EventTimerRegistrar is implemented by the TimerService of keyed operators
// whose key type is K: it registers an event-time timer for any key, not
// only the current one, as RegisterEventTimeTimer would with key current.
// An operator that restores state kept in a layout of its own (a window
// operator's spilled runs, which hold many keys a row) into per-key state
// gives each key there the timer that per-key state needs.
type EventTimerRegistrar[K comparable] interface {
	RegisterEventTimeTimerFor(key K, t Timestamp)
}

// EventTimerProbe is implemented by the TimerService of keyed operators: it
// tells whether the current key has an event-time timer pending. An
// operator whose keyed state exists exactly while the key has a timer (a
// window operator: a window's state and its timers come and go together)
// uses it to skip reading the state of a key that has none, which in front
// of a store (Badger) is a lookup on disk saved for every new key.
//
// HasEventTimer costs a set lookup per distinct pending time: known is
// false when there are more than a few (then has is false too), and the
// operator reads its state. A timer firing now is not pending.
type EventTimerProbe interface {
	HasEventTimer() (has, known bool)
	// HasEventTimerOf is HasEventTimer for the key of encoding enc
	// (keygroup.EncoderFor), which need not be current.
	HasEventTimerOf(enc []byte) (has, known bool)
}

// maxProbeTimes is the number of distinct pending times up to which
// HasEventTimer looks: a tumbling window has one or two.
const maxProbeTimes = 8

// HasEventTimer implements EventTimerProbe.
func (s *keyedTimers[K]) HasEventTimer() (has, known bool) {
	if q := &s.event; q.n == 0 || len(q.byTime)+len(q.firing) > maxProbeTimes {
		return false, q.n == 0
	}
	_, enc := s.resolveKey()
	return s.HasEventTimerOf(enc)
}

// HasEventTimerOf implements EventTimerProbe.
func (s *keyedTimers[K]) HasEventTimerOf(enc []byte) (has, known bool) {
	q := &s.event
	if q.n == 0 {
		return false, true
	}
	if len(q.byTime)+len(q.firing) > maxProbeTimes {
		return false, false
	}
	for _, b := range q.byTime {
		if b.m.has(enc) {
			return true, true
		}
	}
	for _, f := range q.firing {
		if f.pending(enc) {
			return true, true
		}
	}
	return false, true
}

// ErrNoTimerHandler is returned when a timer fires on an operator that does not
// implement TimerHandler.
var ErrNoTimerHandler = errors.New("dataflow: a timer fired but the operator has no OnTimer")

// Timers is the timer service of a keyed operator subtask, nil for operators
// that are not keyed.
func (oc *OperatorContext) Timers() TimerService { return oc.timers }

// timerVal is what a pending timer holds besides its time and encoded key.
type timerVal[K comparable] struct {
	key K
	kg  uint16 // key groups are below keygroup.MaxMaxParallelism (1<<15)
}

// timerMap holds the timers of one time by encoded key. Integer keys,
// whose encodings are 8 bytes and decode back to the key
// (keygroup.DecoderFor), are kept in u by the encoding's big-endian value
// (see fixedSet), the others in s: an integer key's timer costs no string,
// no pointer and about a sixth of the memory.
type timerMap[K comparable] struct {
	s  map[string]timerVal[K]
	u  *fixedSet
	fk *fixedKeys[K] // with u: its keys' keys and key groups
}

// fixedKeys turns the encoding of an integer key, as a fixedSet holds it,
// back into the key and its key group.
type fixedKeys[K comparable] struct {
	decode func(enc uint64) K
	maxP   uint64
}

func (f *fixedKeys[K]) val(p uint64) timerVal[K] {
	return timerVal[K]{key: f.decode(p), kg: uint16(keygroup.HashUint64(p) % f.maxP)}
}

// newFixedKeys returns the fixedKeys of K, nil if K is not an integer type.
func newFixedKeys[K comparable](maxParallelism int) *fixedKeys[K] {
	dec := keygroup.DecoderFor[K]() // integers only, whose encodings are 8 bytes
	if dec == nil {
		return nil
	}
	return &fixedKeys[K]{decode: dec, maxP: uint64(maxParallelism)}
}

func newTimerMap[K comparable](fk *fixedKeys[K], n int) timerMap[K] {
	if fk != nil {
		return timerMap[K]{u: newFixedSet(n), fk: fk}
	}
	return timerMap[K]{s: make(map[string]timerVal[K], n)}
}

func (m timerMap[K]) len() int {
	if m.u != nil {
		return m.u.len()
	}
	return len(m.s)
}

func (m timerMap[K]) has(enc []byte) bool {
	if m.u != nil {
		return m.u.has(binary.BigEndian.Uint64(enc))
	}
	_, ok := m.s[string(enc)]
	return ok
}

// put adds the timer of enc; v is only kept for keys that are not integers.
func (m timerMap[K]) put(enc []byte, v timerVal[K]) {
	if m.u != nil {
		m.u.add(binary.BigEndian.Uint64(enc))
		return
	}
	m.s[string(enc)] = v
}

func (m timerMap[K]) del(enc []byte) {
	if m.u != nil {
		m.u.del(binary.BigEndian.Uint64(enc))
		return
	}
	delete(m.s, string(enc))
}

// all yields the timers unordered, each with its encoded key, valid until
// the next.
func (m timerMap[K]) all() iter.Seq2[[]byte, timerVal[K]] {
	return func(yield func([]byte, timerVal[K]) bool) {
		if m.u != nil {
			var b [8]byte
			if m.u.zero && !yield(b[:], m.fk.val(0)) {
				return
			}
			for _, p := range m.u.slots {
				if p == 0 {
					continue
				}
				binary.BigEndian.PutUint64(b[:], p)
				if !yield(b[:], m.fk.val(p)) {
					return
				}
			}
			return
		}
		for enc, v := range m.s {
			if !yield(unsafe.Slice(unsafe.StringData(enc), len(enc)), v) {
				return
			}
		}
	}
}

func (m timerMap[K]) clone() timerMap[K] {
	if m.u != nil {
		return timerMap[K]{u: m.u.clone(), fk: m.fk}
	}
	return timerMap[K]{s: maps.Clone(m.s)}
}

func (m timerMap[K]) clear() {
	if m.u != nil {
		m.u.clear()
		return
	}
	clear(m.s)
}

// items appends the timers of a map of keys that are not integers to dst,
// unordered.
func (m timerMap[K]) items(dst []timerItem[K]) []timerItem[K] {
	for enc, v := range m.s {
		dst = append(dst, timerItem[K]{p: prefix(enc), enc: enc, v: v})
	}
	return dst
}

// prefix is the first 8 bytes of enc, big-endian, zero-padded.
func prefix(enc string) uint64 {
	var p [8]byte
	copy(p[:], enc)
	return binary.BigEndian.Uint64(p[:])
}

// timerBucket holds the pending timers of one time, by encoded key.
type timerBucket[K comparable] struct {
	t Timestamp
	m timerMap[K]
	// ver is the queue's epoch when m was made: a map of an older epoch may
	// be read by a snapshot being written and is copied before it changes.
	ver uint32
}

// timerQueue holds the timers of one domain: a bucket per time, and a
// min-heap of the times. Registering a timer that exists (the common case:
// one per record) is two map lookups and allocates nothing. A time fires by
// taking its bucket out of the queue and sorting its keys once, instead of a
// heap operation with key comparisons per timer: a tumbling window gives
// every key the same timer time.
//
// A bucket stays in byTime, and its time in the heap exactly once, until the
// time is popped, even when its timers were deleted: peek drops empty ones.
type timerQueue[K comparable] struct {
	times  timeHeap
	byTime map[Timestamp]*timerBucket[K]
	n      int    // pending timers, firing ones included
	epoch  uint32 // advanced by every snapshot
	// firing holds the times being fired, the one firing now last: a timer
	// registered for an earlier time while a time fires goes first.
	firing []*firingTime[K]
	// spare is the order of a fired time, kept for the next one to fire;
	// spareU the same for integer keys.
	spare  []timerItem[K]
	spareU []uint64
	// scratch and scratchU are the sorts' buffers.
	scratch  []timerItem[K]
	scratchU []uint64
	// lastFired is the number of timers of the last time fired, up to
	// maxPresizedTimers: the size a new time's bucket starts with.
	lastFired int
	// spareMap is the emptied map of a fired time that no snapshot shares,
	// for the next new bucket: a tumbling window's timers go to a map of
	// the right size, already in the cache, and allocate nothing.
	spareMap *timerMap[K]
	// fk: the keys are integers, kept by their encodings (see timerMap)
	fk *fixedKeys[K]
}

// maxPresizedTimers bounds the size a new bucket starts with.
const maxPresizedTimers = 1 << 16

// maxSpareTimers bounds the timers whose order a queue keeps for reuse;
// maxSpareFixedTimers the same for integer keys, whose order and set take
// 8 and 11-16 bytes a timer (against 40 and about 40): a tumbling window
// over 10M keys then reuses its buffers from one window to the next
// instead of leaving 200 MB of garbage at each.
const (
	maxSpareTimers      = 1 << 20
	maxSpareFixedTimers = 1 << 24
)

type timeHeap []Timestamp

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(Timestamp)) }
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// firingTime is a bucket taken out of the queue to fire: its timers in
// order, order[:pos] fired. Its map is only read (a snapshot may share it).
// Timers registered for its time meanwhile go to a new bucket, which fires
// after it; those deleted meanwhile are skipped.
type firingTime[K comparable] struct {
	t     Timestamp
	m     timerMap[K]
	ver   uint32 // the bucket's
	order []timerItem[K]
	// orderU is the order of a map of integer keys (m.u): their encodings.
	// inPlace: orderU is m.u's own table, sorted (no snapshot shared it),
	// which then is no set any more: has searches orderU instead.
	orderU  []uint64
	inPlace bool
	pos     int
	deleted map[string]struct{}
}

// size is the number of timers in f's order.
func (f *firingTime[K]) size() int { return len(f.order) + len(f.orderU) }

type timerItem[K comparable] struct {
	p   uint64 // the first 8 bytes of the encoded key, big-endian: most comparisons need no more
	enc string // the encoded key
	v   timerVal[K]
}

// cmpItems orders timer items by their encoded keys, bytewise.
func cmpItems[K comparable](a, b timerItem[K]) int {
	if a.p != b.p {
		if a.p < b.p {
			return -1
		}
		return 1
	}
	return strings.Compare(a.enc, b.enc)
}

// fired reports whether the timer of enc fired already.
func (f *firingTime[K]) fired(enc []byte) bool {
	switch {
	case f.pos == 0:
		return false
	case f.orderU != nil:
		return binary.BigEndian.Uint64(enc) <= f.orderU[f.pos-1]
	}
	e := unsafe.String(unsafe.SliceData(enc), len(enc))
	return cmpItems(timerItem[K]{p: prefix(e), enc: e}, f.order[f.pos-1]) <= 0
}

// has reports whether enc has a timer at f's time, fired or not.
func (f *firingTime[K]) has(enc []byte) bool {
	if f.inPlace {
		_, ok := slices.BinarySearch(f.orderU, binary.BigEndian.Uint64(enc))
		return ok
	}
	return f.m.has(enc)
}

// pending reports whether the timer of enc, in f.m, has not fired yet.
func (f *firingTime[K]) pending(enc []byte) bool {
	if !f.has(enc) {
		return false
	}
	if _, del := f.deleted[string(enc)]; del {
		return false
	}
	return !f.fired(enc)
}

// newFiring takes b out of q to fire: its timers in the order of their
// encoded keys, in a fired time's slice if it has room.
func (q *timerQueue[K]) newFiring(b *timerBucket[K]) *firingTime[K] {
	f := &firingTime[K]{t: b.t, m: b.m, ver: b.ver}
	n := b.m.len()
	if b.m.u != nil && b.ver == q.epoch {
		// No snapshot shares the set: its own table becomes the order.
		f.orderU, f.inPlace = b.m.u.takeSorted(), true
		return f
	}
	if b.m.u != nil {
		buf := q.spareU
		if cap(buf) < n {
			buf = make([]uint64, 0, withRoom(n))
		}
		f.orderU = b.m.u.appendTo(buf[:0])
		if n < radixSortMin {
			slices.Sort(f.orderU)
		} else {
			radixSort(f.orderU, &q.scratchU, maxSpareFixedTimers, func(p *uint64) uint64 { return *p })
		}
		q.spareU = nil
		return f
	}
	buf := q.spare
	if cap(buf) < n {
		buf = make([]timerItem[K], 0, withRoom(n))
	}
	f.order = b.m.items(buf[:0])
	sortTimerItems(f.order, &q.scratch)
	q.spare = nil
	return f
}

// withRoom is the capacity of a buffer of n timers that is kept for the
// next time to fire: an eighth more, since the next window's keys are
// about as many, and a buffer of exactly n would be made anew for n+1.
func withRoom(n int) int { return n + n/8 }

// radixSortMin is the number of timers from which sortTimerItems sorts the
// prefixes by radix: below it a comparison sort is as fast.
const radixSortMin = 256

// sortTimerItems sorts items into the bytewise order of their encoded keys.
// The 8-byte prefixes order them unless equal: many timers of one time (a
// tumbling window gives every key the same end) are sorted by radix on the
// prefix, skipping the bytes that all prefixes share (the high bytes of
// small integer keys), then runs of equal prefixes by the whole key.
// scratch holds a buffer it reuses.
func sortTimerItems[K comparable](items []timerItem[K], scratch *[]timerItem[K]) {
	cmp := cmpItems[K]
	if len(items) < radixSortMin {
		slices.SortFunc(items, cmp)
		return
	}
	radixSort(items, scratch, maxSpareTimers, func(it *timerItem[K]) uint64 { return it.p })
	// Equal prefixes: order by the whole key.
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].p == items[i].p {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(items[i:j], cmp)
		}
		i = j
	}
}

// radixSort sorts items by prefix, an LSD radix sort byte by byte, skipping
// the bytes that every prefix shares (the high bytes of small integer keys).
// Items of equal prefixes keep their order. scratch holds a buffer it
// reuses, up to maxSpare items.
func radixSort[T any](items []T, scratch *[]T, maxSpare int, prefix func(*T) uint64) {
	if len(items) < 2 {
		return
	}
	var counts [8][256]int
	for i := range items {
		p := prefix(&items[i])
		for d := range 8 {
			counts[d][byte(p>>(8*d))]++
		}
	}
	if cap(*scratch) < len(items) {
		*scratch = make([]T, withRoom(len(items)))
	}
	src, dst := items, (*scratch)[:len(items)]
	for d := range 8 {
		c := &counts[d]
		if c[byte(prefix(&src[0])>>(8*d))] == len(src) {
			continue // every prefix has this byte
		}
		at := 0
		for i := range c {
			at, c[i] = at+c[i], at
		}
		for i := range src {
			b := byte(prefix(&src[i]) >> (8 * d))
			dst[c[b]] = src[i]
			c[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &items[0] {
		copy(items, src) // an odd number of passes left the order in the buffer
	}
	clear((*scratch)[:len(items)]) // drop the references items hold
	if cap(*scratch) > maxSpare {
		*scratch = nil
	}
}

// firingAt returns the time being fired at t, if any.
func (q *timerQueue[K]) firingAt(t Timestamp) *firingTime[K] {
	for _, f := range q.firing {
		if f.t == t {
			return f
		}
	}
	return nil
}

// own makes b's map safe to change: a copy if a snapshot may read it.
func (q *timerQueue[K]) own(b *timerBucket[K]) {
	if b.ver != q.epoch {
		b.m = b.m.clone()
		b.ver = q.epoch
	}
}

// reserve makes room for n timers at t (a restore knows how many come).
func (q *timerQueue[K]) reserve(t Timestamp, n int) {
	if b := q.byTime[t]; b == nil && len(q.firing) == 0 {
		if q.byTime == nil {
			q.byTime = map[Timestamp]*timerBucket[K]{}
		}
		q.byTime[t] = &timerBucket[K]{t: t, m: newTimerMap(q.fk, n), ver: q.epoch}
		heap.Push(&q.times, t)
	}
}

// checkEnc checks a restored encoded key: the keys of a fixed-size type
// encode to 8 bytes.
func (q *timerQueue[K]) checkEnc(enc []byte) error {
	if q.fk != nil && len(enc) != 8 {
		return fmt.Errorf("encoded key of %d bytes, keys of this operator encode to 8 (was the key type changed?)", len(enc))
	}
	return nil
}

// add registers a timer at t for the key (enc, key, kg) unless it exists.
func (q *timerQueue[K]) add(t Timestamp, enc []byte, key K, kg int) {
	b := q.byTime[t]
	if b != nil && b.m.u != nil && b.ver == q.epoch && len(q.firing) == 0 {
		// An integer key in a map no snapshot shares, no time firing. The
		// first registration's key stays (0.0 and -0.0 encode alike).
		if b.m.u.add(binary.BigEndian.Uint64(enc)) {
			q.n++
		}
		return
	}
	if b != nil && b.m.has(enc) {
		return
	}
	if len(q.firing) > 0 {
		if f := q.firingAt(t); f != nil {
			if f.has(enc) {
				if _, del := f.deleted[string(enc)]; del && !f.fired(enc) {
					delete(f.deleted, string(enc)) // deleted, not fired: pending again
					q.n++
					return
				}
				if f.pending(enc) {
					return
				}
			}
		}
	}
	if b == nil {
		if q.byTime == nil {
			q.byTime = map[Timestamp]*timerBucket[K]{}
		}
		// Sized as the last time that fired: a tumbling window gives every
		// key a timer at its end, and growing a map is most of the cost.
		var m timerMap[K]
		if q.spareMap != nil {
			m, q.spareMap = *q.spareMap, nil
		} else {
			m = newTimerMap(q.fk, q.lastFired)
		}
		b = &timerBucket[K]{t: t, m: m, ver: q.epoch}
		q.byTime[t] = b
		heap.Push(&q.times, t)
	}
	q.own(b)
	b.m.put(enc, timerVal[K]{key: key, kg: uint16(kg)})
	q.n++
}

func (q *timerQueue[K]) remove(t Timestamp, enc []byte) {
	if b := q.byTime[t]; b != nil {
		if b.m.has(enc) {
			q.own(b)
			b.m.del(enc)
			q.n--
			return
		}
	}
	if len(q.firing) > 0 {
		if f := q.firingAt(t); f != nil && f.pending(enc) {
			if f.deleted == nil {
				f.deleted = map[string]struct{}{}
			}
			f.deleted[string(enc)] = struct{}{}
			q.n--
		}
	}
}

// peek returns the bucket of the earliest time with pending timers, dropping
// empty buckets before it.
func (q *timerQueue[K]) peek() *timerBucket[K] {
	for len(q.times) > 0 {
		b := q.byTime[q.times[0]]
		if b.m.len() > 0 {
			return b
		}
		heap.Pop(&q.times)
		delete(q.byTime, b.t)
	}
	return nil
}

// keyedTimers is the TimerService of one keyed operator subtask, and the
// driver the runtime uses to fire its timers.
type keyedTimers[K comparable] struct {
	event, proc timerQueue[K]
	wm          Timestamp
	// the current key, set before every record and timer. Before a record
	// only key is set: enc and kg are computed when first needed (resolved
	// is false until then), by a timer call or by the backend, whose key
	// source is seq and resolveKey.
	key      K
	enc      []byte
	kg       int
	resolved bool
	kgKnown  bool // kg came with the record (setRecordKeyGroup)
	encode   keygroup.Encoder[K]
	maxP     uint64
	buf      []byte
	forBuf   []byte     // RegisterEventTimeTimerFor's encoding
	seq      uint64     // records seen: the backend's key source (see state.Backend.SetKeySource)
	fixedBuf [2][8]byte // see itemEnc
	fixedI   int

	backend state.Backend
	handler TimerHandler[K] // nil if the operator has none
	pf      KeyPrefetcher[K]
	pfKeys  []K
	clock   func() time.Time
	codec   state.Codec[K] // keys in snapshots; see keyCodec
}

// newKeyedTimers returns the timer service of a keyed operator subtask
// with keys of type K.
func newKeyedTimers[K comparable](backend state.Backend, handler TimerHandler[K], clock func() time.Time, maxParallelism int) *keyedTimers[K] {
	s := &keyedTimers[K]{backend: backend, handler: handler, wm: MinWatermark, clock: clock, maxP: uint64(maxParallelism)}
	s.pf, _ = handler.(KeyPrefetcher[K])
	fk := newFixedKeys[K](maxParallelism)
	s.event.fk, s.proc.fk = fk, fk
	backend.SetKeySource(&s.seq, s.resolveKey)
	return s
}

// keyCodec encodes keys in snapshots (msgpack, without reflection for the
// common key types).
func (s *keyedTimers[K]) keyCodec() state.Codec[K] {
	if s.codec == nil {
		s.codec = state.Msgpack[K]()
	}
	return s.codec
}

func (s *keyedTimers[K]) setCurrent(key K, enc []byte, kg int) {
	s.key, s.enc, s.kg, s.resolved = key, enc, kg, true
	s.backend.SetCurrentKey(kg, enc)
}

// setRecordKey makes key, of the record about to be processed, current; its
// encoding and key group are computed only if the operator registers a
// timer or reads keyed state for it. The backend learns of it by seq.
func (s *keyedTimers[K]) setRecordKey(key K) {
	s.key, s.resolved, s.kgKnown = key, false, false
	s.seq++
}

// setRecordKeyGroup is setRecordKey for a record whose key group the
// exchange carried: resolving the key then only encodes it.
func (s *keyedTimers[K]) setRecordKeyGroup(key K, kg int) {
	s.key, s.kg, s.resolved, s.kgKnown = key, kg, false, true
	s.seq++
}

// resolveKey computes the current key's encoding and key group.
func (s *keyedTimers[K]) resolveKey() (int, []byte) {
	if !s.resolved {
		if s.encode == nil {
			s.encode = keygroup.EncoderFor[K]()
		}
		s.buf = s.encode(s.buf[:0], s.key)
		s.enc, s.resolved = s.buf, true
		if !s.kgKnown {
			s.kg = int(keygroup.Hash(s.buf) % s.maxP)
		}
	}
	return s.kg, s.enc
}

func (s *keyedTimers[K]) CurrentWatermark() Timestamp { return s.wm }
func (s *keyedTimers[K]) CurrentProcessingTime() Timestamp {
	return TimestampOf(s.clock())
}

func (s *keyedTimers[K]) RegisterEventTimeTimer(t Timestamp) {
	s.resolveKey()
	s.event.add(t, s.enc, s.key, s.kg)
}
func (s *keyedTimers[K]) RegisterEventTimeTimerFor(key K, t Timestamp) {
	if s.encode == nil {
		s.encode = keygroup.EncoderFor[K]()
	}
	s.forBuf = s.encode(s.forBuf[:0], key)
	s.event.add(t, s.forBuf, key, int(keygroup.Hash(s.forBuf)%s.maxP))
}
func (s *keyedTimers[K]) RegisterProcessingTimeTimer(t Timestamp) {
	s.resolveKey()
	s.proc.add(t, s.enc, s.key, s.kg)
}
func (s *keyedTimers[K]) DeleteEventTimeTimer(t Timestamp) {
	s.resolveKey()
	s.event.remove(t, s.enc)
}
func (s *keyedTimers[K]) DeleteProcessingTimeTimer(t Timestamp) {
	s.resolveKey()
	s.proc.remove(t, s.enc)
}

// fixedEnc returns the encoded key of a timer of an integer key about to
// fire: p, written to the one of two buffers the backend's current key is
// not in (the backend copies the key if it keeps it).
func (s *keyedTimers[K]) fixedEnc(p uint64) []byte {
	s.fixedI = 1 - s.fixedI
	b := s.fixedBuf[s.fixedI][:]
	binary.BigEndian.PutUint64(b, p)
	return b
}

// fire runs every timer of q due at or before t, in order, including timers
// registered while firing. A timer registered for an earlier time than the
// one firing fires next.
func (s *keyedTimers[K]) fire(q *timerQueue[K], t Timestamp, domain TimeDomain) error {
	for {
		var f *firingTime[K]
		if n := len(q.firing); n > 0 {
			f = q.firing[n-1]
		}
		if f == nil || len(q.times) > 0 && q.times[0] < f.t {
			if b := q.peek(); b != nil && b.t <= t && (f == nil || b.t < f.t) {
				if s.handler == nil {
					return fmt.Errorf("%w: %s timer at %v", ErrNoTimerHandler, domain, b.t)
				}
				heap.Pop(&q.times)
				delete(q.byTime, b.t)
				q.firing = append(q.firing, q.newFiring(b))
				q.lastFired = min(b.m.len(), maxPresizedTimers)
				continue
			}
		}
		if f == nil {
			return nil
		}
		if f.pos == f.size() {
			q.firing[len(q.firing)-1] = nil
			q.firing = q.firing[:len(q.firing)-1]
			if !f.inPlace && cap(f.orderU) > cap(q.spareU) && cap(f.orderU) <= maxSpareFixedTimers {
				q.spareU = f.orderU[:0]
			}
			if cap(f.order) > cap(q.spare) && cap(f.order) <= maxSpareTimers {
				clear(f.order) // drop the references to the keys
				q.spare = f.order[:0]
			}
			// Snapshots are taken between calls of fire: if none was
			// since the map was made, none shares it.
			if f.ver == q.epoch && q.spareMap == nil && (f.m.len() <= maxSpareTimers || f.m.u != nil && f.m.len() <= maxSpareFixedTimers) {
				f.m.clear()
				q.spareMap = &f.m
			}
			continue
		}
		if s.pf != nil && f.pos%prefetchBatch == 0 {
			s.prefetch(f)
		}
		var v timerVal[K]
		var enc []byte
		if f.orderU != nil {
			p := f.orderU[f.pos]
			enc, v = s.fixedEnc(p), f.m.fk.val(p)
		} else {
			it := &f.order[f.pos]
			enc, v = unsafe.Slice(unsafe.StringData(it.enc), len(it.enc)), it.v
		}
		f.pos++
		if len(f.deleted) > 0 {
			if _, del := f.deleted[string(enc)]; del {
				continue
			}
		}
		q.n--
		s.setCurrent(v.key, enc, int(v.kg))
		if err := s.handler.OnTimer(v.key, Timer{Time: f.t, Domain: domain}); err != nil {
			return fmt.Errorf("%s timer at %v: %w", domain, f.t, err)
		}
	}
}

// prefetch gives the operator the keys of the next timers of f to fire.
func (s *keyedTimers[K]) prefetch(f *firingTime[K]) {
	end := min(f.pos+prefetchBatch, f.size())
	s.pfKeys = s.pfKeys[:0]
	if f.orderU != nil {
		for _, p := range f.orderU[f.pos:end] {
			s.pfKeys = append(s.pfKeys, f.m.fk.decode(p))
		}
	} else {
		for i := f.pos; i < end; i++ {
			s.pfKeys = append(s.pfKeys, f.order[i].v.key)
		}
	}
	s.pf.PrefetchKeys(s.pfKeys)
	clear(s.pfKeys) // drop the references the keys hold
}

func (s *keyedTimers[K]) fireEvent(wm Timestamp) error {
	s.wm = wm
	return s.fire(&s.event, wm, EventTime)
}

func (s *keyedTimers[K]) fireProcessing(now Timestamp) error {
	return s.fire(&s.proc, now, ProcessingTime)
}

// nextProcessing is the time of the earliest processing-time timer.
func (s *keyedTimers[K]) nextProcessing() (Timestamp, bool) {
	b := s.proc.peek()
	if b == nil {
		return 0, false
	}
	return b.t, true
}

// timerDriver is the untyped side of keyedTimers that the task drives.
type timerDriver interface {
	fireEvent(wm Timestamp) error
	fireProcessing(now Timestamp) error
	nextProcessing() (Timestamp, bool)
	// snapshot captures every pending timer, nil if there is none. It is
	// cheap: the timers are shared with the capture until they change.
	snapshot() (timerSnapshot, error)
	// restore adds the timers of r whose key group is in rng; r holds the
	// timers of the key groups in from (an old subtask's).
	restore(r io.Reader, rng, from keygroup.Range) error
}

// timerSnapshot is captured timers, written once on any goroutine.
type timerSnapshot interface {
	write(ctx context.Context, w io.Writer) (int64, error)
}

// timerFileMagic starts a timer snapshot; the version follows it.
//
// Version 2, written now: after the magic and the version byte, the uvarint
// number of timers and the uvarint number of groups; each group is the
// domain (one byte), the time (8 bytes big-endian) and the uvarint number of
// its timers, each timer its key group (2 bytes big-endian), the
// uvarint-length-prefixed encoded key (its identity and order) and the
// uvarint-length-prefixed key in msgpack (what OnTimer receives). Version 1,
// still read, was the count and msgpack timerRow values.
const timerFileMagic = "SLTIMERS"

// timerRow is one timer in a version 1 snapshot.
type timerRow[K comparable] struct {
	Domain uint8  `msgpack:"d"`
	KG     uint16 `msgpack:"g"`
	Time   int64  `msgpack:"t"`
	Enc    []byte `msgpack:"e"`
	Key    K      `msgpack:"k"`
}

type timerGroup[K comparable] struct {
	domain TimeDomain
	t      Timestamp
	m      timerMap[K]
}

type timerCapture[K comparable] struct {
	n      int
	groups []timerGroup[K]
	codec  state.Codec[K]
}

// snapshot captures the timers: it shares every bucket's map with the
// capture and advances the epochs, so the owner copies a map before it next
// changes it. The cost is one entry per distinct timer time. No time is
// firing: timers fire within one call of fire, between checkpoints.
func (s *keyedTimers[K]) snapshot() (timerSnapshot, error) {
	n := s.event.n + s.proc.n
	if n == 0 {
		return nil, nil
	}
	c := &timerCapture[K]{n: n, codec: s.keyCodec()}
	for d, q := range []*timerQueue[K]{&s.event, &s.proc} {
		for _, t := range q.times {
			if b := q.byTime[t]; b.m.len() > 0 {
				c.groups = append(c.groups, timerGroup[K]{domain: TimeDomain(d), t: t, m: b.m})
			}
		}
		q.epoch++
	}
	return c, nil
}

func (c *timerCapture[K]) write(ctx context.Context, w io.Writer) (int64, error) {
	var written int64
	buf := make([]byte, 0, 64<<10)
	flush := func() error {
		n, err := w.Write(buf)
		written += int64(n)
		buf = buf[:0]
		return err
	}
	buf = append(buf, timerFileMagic...)
	buf = append(buf, 2)
	buf = binary.AppendUvarint(buf, uint64(c.n))
	buf = binary.AppendUvarint(buf, uint64(len(c.groups)))
	var kb []byte
	for _, g := range c.groups {
		buf = append(buf, byte(g.domain))
		buf = binary.BigEndian.AppendUint64(buf, uint64(g.t))
		buf = binary.AppendUvarint(buf, uint64(g.m.len()))
		for enc, v := range g.m.all() {
			var err error
			if kb, err = c.codec.Append(kb[:0], v.key); err != nil {
				return written, fmt.Errorf("timers: encode key %v: %w", v.key, err)
			}
			buf = binary.BigEndian.AppendUint16(buf, v.kg)
			buf = binary.AppendUvarint(buf, uint64(len(enc)))
			buf = append(buf, enc...)
			buf = binary.AppendUvarint(buf, uint64(len(kb)))
			buf = append(buf, kb...)
			if len(buf) >= 60<<10 {
				if err := ctx.Err(); err != nil {
					return written, err
				}
				if err := flush(); err != nil {
					return written, err
				}
			}
		}
	}
	return written, flush()
}

func (s *keyedTimers[K]) restore(r io.Reader, rng, from keygroup.Range) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(timerFileMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("timers: read header: %w", err)
	}
	if string(head[:len(timerFileMagic)]) != timerFileMagic {
		return fmt.Errorf("timers: not a timer snapshot (header %q)", head)
	}
	var err error
	switch v := head[len(head)-1]; v {
	case 1:
		err = s.restoreV1(br, rng)
	case 2:
		err = s.restoreV2(br, rng, from)
	default:
		return fmt.Errorf("timers: snapshot version %d, this program reads versions 1 and 2", v)
	}
	if err != nil {
		return err
	}
	// Read to the end, so that the storage's reader checks the checksum.
	if n, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("timers: %w", err)
	} else if n > 0 && head[len(head)-1] == 2 {
		return fmt.Errorf("timers: %d bytes after the last timer", n)
	}
	return nil
}

func (s *keyedTimers[K]) queue(d TimeDomain) *timerQueue[K] {
	if d == ProcessingTime {
		return &s.proc
	}
	return &s.event
}

func (s *keyedTimers[K]) restoreV2(br *bufio.Reader, rng, from keygroup.Range) error {
	// The share of the file's timers this subtask takes, to size the maps.
	share := 1.0
	if lo, hi := max(rng.Start, from.Start), min(rng.End, from.End); from.End > from.Start && hi-lo < from.End-from.Start {
		share = float64(max(hi-lo, 0)) / float64(from.End-from.Start)
	}
	total, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("timers: read count: %w", noEOF(err))
	}
	groups, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("timers: read group count: %w", noEOF(err))
	}
	var seen uint64
	var enc, kb []byte
	var fixed [8]byte
	for g := uint64(0); g < groups; g++ {
		d, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("timers: group %d of %d: %w", g+1, groups, noEOF(err))
		}
		if d > byte(ProcessingTime) {
			return fmt.Errorf("timers: group %d of %d: unknown time domain %d", g+1, groups, d)
		}
		if _, err := io.ReadFull(br, fixed[:]); err != nil {
			return fmt.Errorf("timers: group %d of %d: %w", g+1, groups, noEOF(err))
		}
		t := Timestamp(binary.BigEndian.Uint64(fixed[:]))
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("timers: group %d of %d: %w", g+1, groups, noEOF(err))
		}
		if seen += n; seen > total {
			return fmt.Errorf("timers: more timers than the %d the header says", total)
		}
		q := s.queue(TimeDomain(d))
		if n <= total {
			q.reserve(t, int(float64(n)*share))
		}
		for i := uint64(0); i < n; i++ {
			if _, err := io.ReadFull(br, fixed[:2]); err != nil {
				return fmt.Errorf("timers: timer %d at %v: %w", i+1, t, noEOF(err))
			}
			kg := int(binary.BigEndian.Uint16(fixed[:2]))
			if enc, err = readChunk(br, enc); err != nil {
				return fmt.Errorf("timers: timer %d at %v: key: %w", i+1, t, err)
			}
			if kb, err = readChunk(br, kb); err != nil {
				return fmt.Errorf("timers: timer %d at %v: key value: %w", i+1, t, err)
			}
			if err := q.checkEnc(enc); err != nil {
				return fmt.Errorf("timers: timer %d at %v: %w", i+1, t, err)
			}
			if kg < rng.Start || kg >= rng.End {
				continue
			}
			key, err := s.keyCodec().Decode(kb)
			if err != nil {
				return fmt.Errorf("timers: timer %d at %v: decode key: %w", i+1, t, err)
			}
			q.add(t, enc, key, kg)
		}
	}
	if seen != total {
		return fmt.Errorf("timers: %d timers, the header says %d", seen, total)
	}
	return nil
}

// readChunk reads a uvarint-length-prefixed byte string into buf.
func readChunk(br *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return buf, noEOF(err)
	}
	if n > 1<<20 {
		return buf, fmt.Errorf("length %d is implausible", n)
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(br, buf); err != nil {
		return buf, noEOF(err)
	}
	return buf, nil
}

// noEOF turns a clean EOF inside the data into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (s *keyedTimers[K]) restoreV1(br *bufio.Reader, rng keygroup.Range) error {
	dec := msgpack.NewDecoder(br)
	n, err := dec.DecodeInt64()
	if err != nil {
		return fmt.Errorf("timers: read count: %w", err)
	}
	for i := int64(0); i < n; i++ {
		var row timerRow[K]
		if err := dec.Decode(&row); err != nil {
			return fmt.Errorf("timers: read timer %d of %d: %w", i+1, n, err)
		}
		if int(row.KG) < rng.Start || int(row.KG) >= rng.End {
			continue
		}
		q := s.queue(TimeDomain(row.Domain))
		if err := q.checkEnc(row.Enc); err != nil {
			return fmt.Errorf("timers: timer %d of %d: %w", i+1, n, err)
		}
		q.add(Timestamp(row.Time), row.Enc, row.Key, int(row.KG))
	}
	return nil
}
