package state

import (
	"fmt"
	"math"
	"reflect"
	"time"
	"unsafe"
)

type kind uint8

const (
	kindValue kind = 1 + iota
	kindList
	kindMap
	kindReducing
	kindAggregating
)

func (k kind) String() string {
	switch k {
	case kindValue:
		return "Value"
	case kindList:
		return "List"
	case kindMap:
		return "Map"
	case kindReducing:
		return "Reducing"
	case kindAggregating:
		return "Aggregating"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// entry is one key's value of one state. Fields a snapshot reads (key, kg, v,
// ts, absent) never change while a snapshot not yet written may reference the
// entry (core.frozen): the owner copies it first. A copy (ops.clone) is
// deep for values holding references, so an entry of the current epoch shares
// nothing changeable with older entries: its value may be changed in place,
// by the backend or by a caller that read it (table.readOwned). dirty, chg
// and chgIdx are only touched by the owner. On the heap, absent marks an
// entry of the current epoch that was deleted: it is out of the map, and the
// next delta writes its key as deleted.
type entry[S any] struct {
	key    string
	v      S
	ts     int64 // last write (or read, with OnReadAndWrite) in Unix ns, for TTL
	kg     uint16
	absent bool // badger: known to be absent, or deleted and not yet flushed; heap: see above

	// kbuf holds a short key inline so that the key the map compares and the
	// entry share one allocation (and cache line): one memory access less per lookup.
	kbuf [24]byte

	dirty  bool   // badger only: differs from the store
	ref    bool   // badger only: used since the last eviction sweep
	ver    uint32 // epoch this object was created in (copy-on-write)
	chg    uint32 // epoch in which the key was last recorded as changed
	chgIdx int32  // then, its index in table.changed (for badger's evictions)
}

// setKey sets e.key to a copy of k, inline in kbuf when it fits.
func (e *entry[S]) setKey(k []byte) {
	if len(k) > len(e.kbuf) {
		e.key = string(k)
		return
	}
	n := copy(e.kbuf[:], k)
	e.key = unsafe.String(&e.kbuf[0], n)
}

func (e *entry[S]) setKeyString(k string) {
	if len(k) > len(e.kbuf) {
		e.key = k
		return
	}
	n := copy(e.kbuf[:], k)
	e.key = unsafe.String(&e.kbuf[0], n)
}

// valueOps turns a state's stored value S into snapshot/store payloads and back.
type valueOps[S any] interface {
	isMap() bool
	// encode appends the payload of a non-map value.
	encode(dst []byte, v S) ([]byte, error)
	decode(b []byte) (S, error)
	// mapRows calls fn with each map entry's canonical key and payload.
	mapRows(v S, buf []byte, fn func(mapKey, payload []byte) error) error
	// mapAdd decodes one map row into *v, creating the map if needed.
	mapAdd(v *S, payload []byte) error
	// clone returns a copy the owner may change without touching v: deep (a
	// round trip through the codec) for the parts that hold references.
	clone(v S) S
	// refs reports whether values handed to callers (a Value's value, a Map's
	// values, a List's elements) hold references, so that changing them in
	// place would change the stored value: readOwned copies such entries.
	refs() bool
}

// tableAny is the untyped view of a table used by snapshots, restore and the cache.
type tableAny interface {
	meta() *tableMeta
	reset()
	// captureFull/captureDelta run on the owner at Snapshot; the parts they
	// return are written later on any goroutine.
	captureFull(now int64) snapPart
	captureDelta() snapPart
	// endEpoch resets changed-key tracking after a snapshot.
	endEpoch(track bool)
	// applyRow applies one restored row (heap, or decoding pending rows).
	applyRow(op byte, kg uint16, key string, ts int64, payload []byte) error
	// evict drops up to n cache entries, writing dirty ones to w and keeping
	// them in the flushing set until settled (badger).
	evict(n int, w *batchWriter) (int, error)
	// spillKey evicts the entry of key, if cached (badger).
	spillKey(key string, w *batchWriter) error
	settled()
}

type tableMeta struct {
	name string
	kind kind
	typ  reflect.Type
	ttl  int64 // ns; 0 = none
	rw   bool  // TTL refreshed on read too
	// through: values written go to the store at once (WithWriteThrough)
	through bool
}

type table[S any] struct {
	tableMeta
	c        *core
	ops      valueOps[S]
	m        map[string]*entry[S]
	flushing map[string]*entry[S] // badger: evicted, in the batch being committed
	// Changes in this epoch, for the next delta (see markChanged).
	changed []*entry[S] // entries changed, in order; nil where evicted since (badger)
	removed []keyRef    // heap: keys deleted whose entry had not changed in the epoch
	evicted []keyRef    // badger: keys evicted from the cache after changing
	dropped bool        // a key was deleted (heap) or evicted: it may be in the lists again
	seq     uint64      // c.keySeq when cur was looked up
	cur     *entry[S]
	bname   []byte // badger: encoded state name
	deep    bool   // ops.refs(): reads that hand out the value own the entry first
	// badger: Prefetch's buffers
	pfReads   []prefetchRead
	pfSeen    map[string]struct{}
	pfReaders []*prefetchReader
}

func (t *table[S]) meta() *tableMeta { return &t.tableMeta }

func (t *table[S]) reset() {
	t.c.entries -= len(t.m)
	t.m = map[string]*entry[S]{}
	t.flushing = map[string]*entry[S]{}
	t.changed, t.removed, t.evicted = nil, nil, nil
	t.seq, t.cur = math.MaxUint64, nil
}

func (t *table[S]) settled() {
	if len(t.flushing) > 0 {
		t.flushing = map[string]*entry[S]{}
	}
}

// current returns the cached entry of the current key, or nil (heap: absent).
func (t *table[S]) current() (*entry[S], error) {
	e, _, err := t.lookup(false)
	return e, err
}

// lookup is current. With blind, a key that is not cached in front of a
// store gets an entry without a lookup in the store, marked absent: for a
// write that replaces the value whatever it was (Value.Update, Clear),
// which makes the entry what it says and dirty before anything reads it;
// made reports such an entry.
func (t *table[S]) lookup(blind bool) (e *entry[S], made bool, err error) {
	c := t.c
	if c.keyChanged() {
		c.resolveKey()
	}
	if t.seq == c.keySeq {
		return t.cur, false, nil
	}
	if c.keyErr != nil {
		if c.closed {
			return nil, false, c.errf(t.name, ErrClosed)
		}
		return nil, false, c.errf(t.name, c.keyErr)
	}
	e = t.m[string(c.key)]
	if c.store != nil {
		switch {
		case e != nil:
			e.ref = true
		case blind:
			e, err = t.blindEntry()
			made = true
		default:
			e, err = t.load()
		}
		if err != nil {
			return nil, false, c.errf(t.name, err)
		}
	}
	t.seq, t.cur = c.keySeq, e
	return e, made, nil
}

// read returns the live entry of the current key for reading, nil if absent
// or expired. With OnReadAndWrite TTL it refreshes the timestamp.
func (t *table[S]) read() (*entry[S], error) {
	e, err := t.current()
	if e == nil || err != nil || e.absent {
		return nil, err
	}
	if t.ttl > 0 {
		now := t.c.nowNanos()
		if now-e.ts >= t.ttl {
			t.remove(e)
			return nil, nil
		}
		if t.rw && e.ts != now {
			e = t.writable(e)
			e.ts = now
		}
	}
	return e, nil
}

// readOwned is read for handles that hand the stored value (or values or
// elements inside it) to the caller, who may change it in place and write it
// back. When the value holds references and a snapshot may still reference
// the entry (ver older than the epoch), the entry is copied first, deeply:
// at most once per key per snapshot, as the copy belongs to the current
// epoch. Values without references are returned by value and never copied.
// The copy is not a change: the key is not marked changed or dirty.
func (t *table[S]) readOwned() (*entry[S], error) {
	e, err := t.read()
	if t.deep && e != nil && t.c.frozen(e.ver) {
		e = t.copyEntry(e, true)
	}
	return e, err
}

// copyEntry replaces e in the table with a copy of the current epoch, with a
// copy of its value if keep (else the caller replaces it), and returns it.
func (t *table[S]) copyEntry(e *entry[S], keep bool) *entry[S] {
	ne := new(entry[S])
	*ne = *e
	if keep {
		ne.v = t.ops.clone(e.v)
	}
	ne.ver = t.c.epoch
	ne.setKeyString(e.key) // the map takes the new key, so e can be freed
	t.m[ne.key] = ne
	if t.cur == e {
		t.cur = ne
	}
	return ne
}

// writable returns e, copied first if a snapshot may reference it, and records
// the key as changed and dirty.
func (t *table[S]) writable(e *entry[S]) *entry[S] { return t.writableKeep(e, true) }

// writableKeep is writable; keep=false skips copying a value the caller replaces.
func (t *table[S]) writableKeep(e *entry[S], keep bool) *entry[S] {
	c := t.c
	if c.frozen(e.ver) {
		e = t.copyEntry(e, keep)
	}
	if e.chg != c.epoch {
		e.chg = c.epoch
		t.markChanged(e)
	}
	e.dirty = true
	return e
}

// markChanged records e, of the current epoch and just marked with it (chg),
// for the next delta: once per entry and epoch, an append, no hashing. The
// entry then stays as it is when the next snapshot advances the epoch, so the
// delta reads it on the writing goroutine. A key deleted, or created again,
// in the epoch may be in the lists more than once (dropped is set): the
// delta writes its last change (a deleted entry, absent, as a delete).
//
// Past the core's limit of changes, tracking stops and the next snapshot is a
// full base: a delta would not be cheaper, and the lists would hold memory
// the cache bound does not.
func (t *table[S]) markChanged(e *entry[S]) {
	if !t.c.tracking {
		return
	}
	e.chgIdx = int32(len(t.changed))
	t.changed = append(t.changed, e)
	t.noteChange()
}

func (t *table[S]) noteChange() {
	c := t.c
	c.changedCount++
	if c.maxChanged > 0 && c.changedCount > c.maxChanged {
		c.stopTracking()
	}
}

// forWrite returns a writable entry for the current key, creating it if needed.
// The caller sets v (and absent=false is done here). keep=false: the caller
// replaces the value without reading it, and a key that is not cached in
// front of a store is not looked up (lookup's blind).
func (t *table[S]) forWrite(keep bool) (*entry[S], error) {
	e, _, err := t.lookup(!keep)
	if err != nil {
		return nil, err
	}
	c := t.c
	if e == nil {
		e = &entry[S]{kg: c.kg, ver: c.epoch, chg: c.epoch, dirty: true}
		e.setKey(c.key)
		t.m[e.key] = e
		c.entries++
		t.markChanged(e)
		t.cur = e
		return e, nil
	}
	e = t.writableKeep(e, keep)
	if e.absent {
		e.absent = false
		var zero S
		e.v = zero
	}
	return e, nil
}

// written finishes a write: the TTL timestamp. (The badger cache grows only
// in load and blindEntry, which make room first.)
func (t *table[S]) written(e *entry[S]) error {
	if t.ttl > 0 {
		e.ts = t.c.nowNanos()
	}
	return nil
}

// remove deletes e's key: from the map on the heap, as a dirty tombstone in the
// badger cache.
func (t *table[S]) remove(e *entry[S]) {
	c := t.c
	if c.store == nil {
		delete(t.m, e.key)
		c.entries--
		if t.cur == e {
			t.cur = nil
		}
		t.dropped = true
		switch {
		case e.chg == c.epoch:
			// In this epoch's changes (if tracking), and of this epoch: no
			// snapshot reads it.
			e.absent = true
		case c.tracking:
			t.removed = append(t.removed, keyRef{e.key, e.kg})
			t.noteChange()
		}
		return
	}
	e = t.writableKeep(e, false)
	e.absent = true
	var zero S
	e.v = zero
}

func (t *table[S]) clear() error {
	e, made, err := t.lookup(true)
	if err != nil || e == nil || e.absent && !made {
		return err
	}
	// made: not cached in front of a store, which may hold the key; a
	// delete costs no lookup.
	t.remove(e)
	return nil
}

func (t *table[S]) expired(e *entry[S], now int64) bool {
	return t.ttl > 0 && now-e.ts >= t.ttl
}

// endEpoch starts the change lists of the next epoch. Those a delta took
// are nil already; others are emptied for reuse.
func (t *table[S]) endEpoch(bool) {
	clear(t.changed)
	clear(t.removed)
	clear(t.evicted)
	t.changed, t.removed, t.evicted = t.changed[:0], t.removed[:0], t.evicted[:0]
	t.dropped = false
}

// applyRow applies a restored row to the typed table.
func (t *table[S]) applyRow(op byte, kg uint16, key string, ts int64, payload []byte) error {
	c := t.c
	e := t.m[key]
	switch op {
	case opDel:
		if e != nil {
			delete(t.m, key)
			c.entries--
		}
		return nil
	case opPut, opMapPut:
		if (op == opMapPut) != t.ops.isMap() {
			return fmt.Errorf("%w: row kind does not match %s state", ErrStateMismatch, t.kind)
		}
		if e == nil {
			e = &entry[S]{key: key, kg: kg, ver: c.epoch, chg: c.epoch}
			t.m[key] = e
			c.entries++
		}
		if ts > e.ts {
			e.ts = ts
		}
		if op == opMapPut {
			if err := t.ops.mapAdd(&e.v, payload); err != nil {
				return fmt.Errorf("%w: %v", ErrCodec, err)
			}
			return nil
		}
		v, err := t.ops.decode(payload)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCodec, err)
		}
		e.v = v
		return nil
	}
	return fmt.Errorf("%w: unknown row op %d", ErrCorrupt, op)
}

// declOptions of a state declaration.
type declOptions struct {
	codec   any
	ttl     time.Duration
	ttlRW   bool
	ttlSet  bool
	through bool
	invalid error
}

// Option configures one state declaration.
type Option interface{ apply(*declOptions) }

type optionFunc func(*declOptions)

func (f optionFunc) apply(o *declOptions) { f(o) }

// WithCodec sets the codec of the state's values (for List, of its elements;
// for Map, of its values; for Aggregating, of its accumulator). Its type must
// match the state's, or the declaration fails with ErrInvalidConfig.
func WithCodec[T any](c Codec[T]) Option {
	return optionFunc(func(o *declOptions) { o.codec = c })
}

// WithWriteThrough makes a Value's writes go to the store soon after they
// are made, in batches, instead of staying in the write-back cache until it
// is full: for large values written once and read back once or never (an
// operator's spilled runs), which would otherwise fill the cache with bytes
// its entry count does not bound. A value read back with Get is cached as
// any other until it is written or evicted. Keep such values well under
// BadgerConfig.ValueThreshold (16 KiB is safe with the defaults): a longer
// one goes to Badger's value log, whose space the backend does not
// reclaim. The heap backend ignores the option. Only Value takes it.
func WithWriteThrough() Option {
	return optionFunc(func(o *declOptions) { o.through = true })
}

// TTLUpdate says which accesses refresh a TTL timestamp.
type TTLUpdate uint8

const (
	// OnWrite: the value expires ttl after it was last written.
	OnWrite TTLUpdate = iota
	// OnReadAndWrite: the value expires ttl after it was last read or written.
	OnReadAndWrite
)

// WithTTL makes values expire ttl after their last write (or read and write).
// An expired value is never returned; it is deleted when next accessed, and
// left out of (and swept by) the next full snapshot.
func WithTTL(ttl time.Duration, update TTLUpdate) Option {
	return optionFunc(func(o *declOptions) {
		if ttl <= 0 {
			o.invalid = fmt.Errorf("%w: TTL %v must be positive", ErrInvalidConfig, ttl)
		}
		o.ttl, o.ttlRW, o.ttlSet = ttl, update == OnReadAndWrite, true
	})
}

func codecFor[T any](o *declOptions) (Codec[T], error) {
	if o.codec == nil {
		if err := checkEncodable(typeOf[T]()); err != nil {
			return nil, err
		}
		return Msgpack[T](), nil
	}
	c, ok := o.codec.(Codec[T])
	if !ok {
		return nil, fmt.Errorf("%w: codec %T does not encode %s", ErrInvalidConfig, o.codec, typeOf[T]())
	}
	return c, nil
}

// declare returns the table named name, creating it with ops from mk.
func declare[S any](b Backend, name string, k kind, typ reflect.Type, opts []Option, mk func(*declOptions) (valueOps[S], error)) (*table[S], error) {
	if b == nil {
		return nil, fmt.Errorf("state %q: %w", name, ErrNoCurrentKey)
	}
	c := b.base()
	if c.closed {
		return nil, c.errf(name, ErrClosed)
	}
	if name == "" || len(name) > 1<<15 {
		return nil, c.errf(name, fmt.Errorf("%w: state name must be 1..32768 bytes", ErrInvalidConfig))
	}
	if old, ok := c.states[name]; ok {
		m := old.meta()
		if m.kind != k || m.typ != typ {
			return nil, c.errf(name, fmt.Errorf("%w: declared as %s of %s, now as %s of %s", ErrStateMismatch, m.kind, m.typ, k, typ))
		}
		return old.(*table[S]), nil
	}
	var o declOptions
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.invalid == nil && o.through && k != kindValue {
		o.invalid = fmt.Errorf("%w: WithWriteThrough is for Value, not %s", ErrInvalidConfig, k)
	}
	if o.invalid != nil {
		return nil, c.errf(name, o.invalid)
	}
	ops, err := mk(&o)
	if err != nil {
		return nil, c.errf(name, err)
	}
	t := &table[S]{
		tableMeta: tableMeta{name: name, kind: k, typ: typ, ttl: int64(o.ttl), rw: o.ttlRW, through: o.through},
		c:         c,
		ops:       ops,
		deep:      ops.refs(),
	}
	t.reset()
	t.bname = appendLenPrefixed(nil, []byte(name))
	if rk, ok := c.known[name]; ok && rk != k {
		return nil, c.errf(name, fmt.Errorf("%w: restored as %s, declared as %s", ErrStateMismatch, rk, k))
	}
	if raw, ok := c.pending[name]; ok {
		if raw.kind != k {
			return nil, c.errf(name, fmt.Errorf("%w: restored as %s, declared as %s", ErrStateMismatch, raw.kind, k))
		}
		if c.store == nil {
			t.m = make(map[string]*entry[S], len(raw.rows)) // no growing on the way
		}
		if err := raw.replay(t); err != nil {
			t.reset()
			return nil, c.errf(name, err)
		}
		delete(c.pending, name)
	}
	c.states[name] = t
	c.order = append(c.order, t)
	return t, nil
}
