// Package keycache keeps a keyed operator's per-key values in memory between
// checkpoints, in front of keyed state: a record whose key is cached costs
// one lookup in a keyindex.Index instead of a keyed-state read and write,
// and the runtime never encodes or hashes its key (see
// state.Backend.SetKeySource).
//
// The operator reads a key's value from keyed state on a miss and Puts it;
// it changes cached values in place and marks them Dirty. Flush, which the
// operator calls from SnapshotState (the runtime captures keyed state right
// after), and whenever the cache is Full, writes the dirty values to keyed
// state and empties the cache: every checkpoint holds the values exactly. A
// cache that missed more often than it hit since it was last emptied costs
// more than it saves (more keys are live between checkpoints than it holds,
// or checkpoints come too often for keys to be seen twice): Flush then
// turns it off for good, and the operator goes on with keyed state alone.
// Before it gives up, a cache that fills up while it misses grows in
// place: it keeps what it holds and may hold 4 times as many keys, up to
// Growth times the size it was made with, since the live keys may fit in a
// bigger one (a 64K-key cache in front of 1M keys hits one record in 16;
// grown to 1M keys, all but the first of each key). Emptying it to grow
// would make every key it held miss again.
//
// In front of a backend that keeps its state in memory (state.InMemory),
// the cache owns what it holds (Owns): the operator takes a value out of
// keyed state when it caches it (reads it, then clears it) and marks the
// entry Dirty, so that Flush writes it back. Memory then holds each key's
// value once, and the cache is never Full: a bound would save no memory,
// since keyed state would hold the values it moved out.
//
// Only keys whose Go equality is their encoding's can be cached (strings,
// integers, bools, and arrays and plain structs of them; see Cacheable):
// the cache is a Go-equality index of what keyed state holds by encoded key.
//
// A Cache is used by its operator's goroutine only.
package keycache

import (
	"encoding"
	"reflect"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/internal/keyindex"
	"github.com/sluicedata/sluice/state"
)

// Entry is one cached key and its value.
type Entry[K comparable, V any] struct {
	Key   K
	Value V
	// Dirty: Value differs from keyed state; Flush writes it.
	Dirty bool
}

// Cache is a write-back cache of values by key. A nil *Cache is off.
type Cache[K comparable, V any] struct {
	idx   index[K]
	keyAt func(int32) K
	// chunks hold the entries in the order they were cached, chunkSize to
	// a chunk: a cache that grows allocates a chunk, instead of copying
	// every entry into a bigger array and leaving the old one as garbage
	// (a window operator's cache of 1M keys allocated 470 MB for 96 MB of
	// entries).
	chunks [][]Entry[K, V]
	n      int // entries
	max    int // keys it holds before it is Full
	limit  int // max grows up to limit
	off    bool
	owns   bool // the backend is in memory: see Owns
	buffer bool // NewBuffer's: never grows or turns off
	// lookups since the cache was last emptied
	hits, misses int64

	backend state.Backend
	maxP    int
	enc     keygroup.Encoder[K]
	encBuf  [2][]byte // keys given to the backend in turn: each stays valid until the next is set
	encI    int

	pf   []int32 // Prefetch's entries
	keys []K     // PrefetchRecords's
	sink byte    // what Prefetch read, so that the loads are not left out

	unc    []state.Key // Uncached's, encoded in uncBuf
	uncBuf []byte
}

// index finds a key's entry: a keyindex.Index, which holds the keys in
// its slots (the fastest lookup), while the cache holds fewer than
// smallIndexKeys keys, then a keyindex.Tagged, which compares them in the
// entries and takes 8 bytes a key (an int64 key's Index slot takes 16).
type index[K comparable] struct {
	small keyindex.Index[K]
	big   keyindex.Tagged[K]
	isBig bool
}

// smallIndexKeys is the number of keys at which an index moves to a
// Tagged: below, its Index takes at most 8 MB, and the lookup that is
// faster (BenchmarkIndex: 1.5x at 10K keys, 2x at 1M) matters more than
// the memory.
const smallIndexKeys = 1 << 18

func (x *index[K]) get(k K, keyAt func(int32) K) (int32, bool) {
	if x.isBig {
		return x.big.Get(k, keyAt)
	}
	return x.small.Get(k)
}

// candidate is Tagged.Candidate: almost always k's entry if k is held.
func (x *index[K]) candidate(k K) (int32, bool) {
	if x.isBig {
		return x.big.Candidate(k)
	}
	return x.small.Get(k)
}

// add adds k, not held, at entry v, the next one (entries 0 to v-1 are
// held).
func (x *index[K]) add(k K, v int32, keyAt func(int32) K) {
	if !x.isBig && v >= smallIndexKeys {
		for i := range v {
			x.big.Add(keyAt(i), i)
		}
		x.small, x.isBig = keyindex.Index[K]{}, true
	}
	if x.isBig {
		x.big.Add(k, v)
		return
	}
	x.small.Put(k, v)
}

func (x *index[K]) clear() {
	x.small.Clear()
	x.big.Clear()
}

// Growth is how much a cache may grow past the size it was made with (see
// Flush).
const Growth = 16

// New returns a cache of up to maxKeys keys in front of backend, growing to
// up to Growth × maxKeys while it fills up and misses, or nil if keys of type
// K cannot be cached or maxKeys is not positive.
func New[K comparable, V any](backend state.Backend, maxParallelism, maxKeys int) *Cache[K, V] {
	if maxKeys <= 0 || !Cacheable(reflect.TypeFor[K]()) {
		return nil
	}
	c := &Cache[K, V]{max: maxKeys, limit: maxKeys * Growth, owns: state.InMemory(backend),
		backend: backend, maxP: maxParallelism, enc: keygroup.EncoderFor[K]()}
	c.keyAt = func(i int32) K { return c.at(int(i)).Key }
	return c
}

// NewBuffer returns a cache of up to maxKeys keys that neither grows nor
// turns off, for an operator that keeps partial values in it and Drains
// them into keyed state of its own layout (a window operator's runs): it
// is Full at maxKeys whatever the backend, and misses do not matter. It is
// nil if keys of type K cannot be cached or maxKeys is not positive.
func NewBuffer[K comparable, V any](backend state.Backend, maxParallelism, maxKeys int) *Cache[K, V] {
	c := New[K, V](backend, maxParallelism, maxKeys)
	if c != nil {
		c.limit, c.owns, c.buffer = maxKeys, false, true
	}
	return c
}

// Owns reports whether the cache is the only holder of the values it
// caches: the backend keeps its state in memory, and the operator clears a
// key's value from keyed state when it caches it, marking the entry Dirty
// (see the package documentation).
func (c *Cache[K, V]) Owns() bool { return c != nil && c.owns }

// On reports whether the cache is in use: not nil and not turned off.
func (c *Cache[K, V]) On() bool { return c != nil && !c.off }

// Get returns the entry of key, nil if it is not cached.
func (c *Cache[K, V]) Get(key K) *Entry[K, V] {
	if i, ok := c.idx.get(key, c.keyAt); ok {
		c.hits++
		return c.at(int(i))
	}
	c.misses++
	return nil
}

// Prefetch loads the index slots of keys, then the entries of those that
// are cached, into the CPU caches, so that the Gets of keys that follow
// find them there: the loads of one pass do not depend on each other and
// overlap, where Get after Get would wait for each in turn. It changes
// nothing (the hit and miss counts neither).
func (c *Cache[K, V]) Prefetch(keys []K) {
	if !c.On() || c.n < minPrefetchKeys {
		return
	}
	at := c.pf[:0]
	for _, k := range keys {
		if i, ok := c.idx.candidate(k); ok {
			at = append(at, i)
		}
	}
	c.touch(at)
}

// touch loads the entries at into the CPU caches.
func (c *Cache[K, V]) touch(at []int32) {
	var sink byte
	last := unsafe.Sizeof(Entry[K, V]{}) - 1
	for _, i := range at {
		// The first and the last byte of the entry: both of its cache
		// lines, when it spans two.
		p := unsafe.Pointer(c.at(int(i)))
		sink += *(*byte)(p) + *(*byte)(unsafe.Add(p, last))
	}
	c.pf, c.sink = at, sink
}

// PrefetchRecords is Prefetch of the keys of records vs, for an operator's
// dataflow.Prefetcher.
func PrefetchRecords[K comparable, V, In any](c *Cache[K, V], key func(In) K, vs []In) {
	if !c.On() || c.n < minPrefetchKeys {
		return
	}
	c.keys = c.keys[:0]
	for _, v := range vs {
		c.keys = append(c.keys, key(v))
	}
	c.Prefetch(c.keys)
	clear(c.keys) // drop the references the keys hold
}

// Uncached returns those of keys the cache does not hold (all of them when
// it is off), as the backend knows them, for state.Value.Prefetch; with
// keep, only those whose encoding it keeps. It loads the entries of the
// others, as Prefetch does, in the same pass. A key counts as held when
// its index tag is (keyindex.Tagged.Candidate): one in 2^32 that is not
// is left out, and only costs its Get a read of the store. The result is
// valid until the next call.
func (c *Cache[K, V]) Uncached(keys []K, keep func(enc []byte) bool) []state.Key {
	if c == nil {
		return nil
	}
	c.unc, c.uncBuf = c.unc[:0], c.uncBuf[:0]
	held := c.pf[:0]
	for _, k := range keys {
		if c.On() {
			if i, ok := c.idx.candidate(k); ok {
				held = append(held, i)
				continue
			}
		}
		from := len(c.uncBuf)
		c.uncBuf = c.enc(c.uncBuf, k) // earlier encodings stay valid if it moves
		enc := c.uncBuf[from:len(c.uncBuf):len(c.uncBuf)]
		if keep != nil && !keep(enc) {
			c.uncBuf = c.uncBuf[:from]
			continue
		}
		c.unc = append(c.unc, state.Key{Group: keygroup.Of(enc, c.maxP), Enc: enc})
	}
	if c.n >= minPrefetchKeys {
		c.touch(held)
	} else {
		c.pf = held[:0] // kept for the next call
	}
	return c.unc
}

// minPrefetchKeys is the number of cached keys below which Prefetch does
// nothing: their entries and index fit in the CPU caches (a few MB), and a
// lookup more per record would cost without saving a miss.
const minPrefetchKeys = 1 << 15

// Full reports whether the cache holds as many keys as it may: the caller
// flushes it before it Puts another. A cache that Owns its values is never
// full. A cache that reaches its size while it missed more than it hit
// since it was last emptied grows 4 times instead (up to Growth times its
// first size), keeping its entries, and is not full.
func (c *Cache[K, V]) Full() bool {
	if c.owns || c.n < c.max {
		return false
	}
	if c.misses > c.hits && c.max < c.limit {
		c.max = min(c.limit, c.max*4)
		return false
	}
	return true
}

// chunkSize is the number of entries of a chunk (a power of two).
const chunkSize = 1 << 10

func (c *Cache[K, V]) at(i int) *Entry[K, V] { return &c.chunks[i/chunkSize][i%chunkSize] }

// Put caches v, as read from keyed state, for key, which is not cached, and
// returns its entry. The entry is valid until the next Put or Flush.
func (c *Cache[K, V]) Put(key K, v V) *Entry[K, V] {
	if c.n == len(c.chunks)*chunkSize {
		c.chunks = append(c.chunks, make([]Entry[K, V], chunkSize))
	}
	c.idx.add(key, int32(c.n), c.keyAt)
	e := c.at(c.n)
	c.n++
	*e = Entry[K, V]{Key: key, Value: v}
	return e
}

// Len returns the number of cached keys.
func (c *Cache[K, V]) Len() int { return c.n }

// Flush writes every dirty entry to keyed state, in the order the keys were
// cached, with write, the entry's key made the backend's current key; then
// it empties the cache. If the cache missed more than it hit since it was
// last emptied, it grows 4 times (up to Growth times its first size) when
// it holds as many keys as it may, and else, or when it cannot grow, it
// turns off.
// The backend's current key is then that of the last entry written: the
// caller sets its own again (SetCurrentKey) before it uses keyed state.
//
// The values written belong to keyed state from then on, whose snapshots
// may share them: the operator reads them again (as copies) before it
// changes them.
func (c *Cache[K, V]) Flush(write func(e *Entry[K, V]) error) error {
	if c == nil {
		return nil
	}
	for i := range c.n {
		e := c.at(i)
		if !e.Dirty {
			continue
		}
		c.SetCurrentKey(e.Key)
		if err := write(e); err != nil {
			return err
		}
	}
	c.empty()
	return nil
}

// Drain calls fn with every entry, its key group and its encoded key (valid
// during the call), in the order the keys were cached, then empties the
// cache. It does not touch the backend: fn writes what it keeps. A Drain
// that fails leaves the cache as it was.
func (c *Cache[K, V]) Drain(fn func(e *Entry[K, V], keyGroup int, enc []byte) error) error {
	if err := c.Each(fn); err != nil || c == nil {
		return err
	}
	c.empty()
	return nil
}

// Each calls fn with every entry, its key group and its encoded key (valid
// during the call), in the order the keys were cached; fn may change the
// entry's value. It stops at fn's first error.
func (c *Cache[K, V]) Each(fn func(e *Entry[K, V], keyGroup int, enc []byte) error) error {
	return c.Range(func(e *Entry[K, V]) error {
		kg, b := c.Encode(e.Key)
		return fn(e, kg, b)
	})
}

// Range calls fn with every entry, in the order the keys were cached; fn
// may change the entry's value. It stops at fn's first error. Unlike Each,
// it encodes no key: fn calls Encode for the entries that need it.
func (c *Cache[K, V]) Range(fn func(e *Entry[K, V]) error) error {
	if c == nil {
		return nil
	}
	for i := range c.n {
		if err := fn(c.at(i)); err != nil {
			return err
		}
	}
	return nil
}

// At returns entry i, in the order the keys were cached (0 to Len()-1).
// The entry is valid until the next Put, Retain or Flush.
func (c *Cache[K, V]) At(i int) *Entry[K, V] { return c.at(i) }

// Retain keeps the entries for which keep reports true, in the order they
// were cached, and drops the others, as if they had never been cached.
// Entries move: those returned before are no longer valid. The chunks
// stay, for the keys to come.
func (c *Cache[K, V]) Retain(keep func(e *Entry[K, V]) bool) {
	if c == nil {
		return
	}
	n := 0
	for i := range c.n {
		if e := c.at(i); keep(e) {
			if n != i {
				*c.at(n) = *e
			}
			n++
		}
	}
	for i := n; i < c.n; i++ {
		*c.at(i) = Entry[K, V]{}
	}
	c.idx.clear()
	for i := range n {
		c.idx.add(c.at(i).Key, int32(i), c.keyAt)
	}
	c.n = n
}

// Encode returns key's key group and encoding (keygroup.EncoderFor), which
// is valid until the next call of Encode, Each or SetCurrentKey.
func (c *Cache[K, V]) Encode(key K) (keyGroup int, enc []byte) {
	b := c.enc(c.encBuf[c.encI][:0], key)
	c.encBuf[c.encI] = b
	return keygroup.Of(b, c.maxP), b
}

// empty drops every entry, then grows the cache or turns it off as Flush
// says.
func (c *Cache[K, V]) empty() {
	full := !c.owns && c.n >= c.max
	c.idx.clear()
	for i := range (c.n + chunkSize - 1) / chunkSize {
		clear(c.chunks[i]) // the chunks stay, for the keys to come
	}
	c.n = 0
	switch {
	case c.buffer || c.hits >= c.misses:
	case full && c.max < c.limit:
		c.max = min(c.limit, c.max*4)
	default:
		c.off, c.chunks = true, nil
		c.idx = index[K]{}
	}
	c.hits, c.misses = 0, 0
}

// SetCurrentKey makes key the backend's current key, as the runtime does
// before each record and timer.
func (c *Cache[K, V]) SetCurrentKey(key K) {
	b := c.enc(c.encBuf[c.encI][:0], key)
	c.encBuf[c.encI], c.encI = b, 1-c.encI
	c.backend.SetCurrentKey(keygroup.Of(b, c.maxP), b)
}

var customEncoders = []reflect.Type{
	reflect.TypeFor[msgpack.CustomEncoder](),
	reflect.TypeFor[msgpack.Marshaler](),
	reflect.TypeFor[encoding.BinaryMarshaler](),
	reflect.TypeFor[encoding.TextMarshaler](),
}

// Cacheable reports whether keys of type t are equal in Go exactly when
// their encodings (keygroup.EncoderFor) are: then a Go-equality index by key
// holds what keyed state holds by encoded key. Floats are not (NaN is not
// equal to itself), nor pointers and interfaces (compared by identity,
// encoded by value), nor structs with fields the encoding leaves out, nor
// types (or fields) with an encoding of their own (msgpack or encoding
// marshalers), which may encode unequal values alike.
func Cacheable(t reflect.Type) bool {
	// A type with its own encoding may encode unequal values alike.
	for _, i := range customEncoders {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return false
		}
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Array:
		return Cacheable(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Anonymous || f.Tag.Get("msgpack") != "" || !Cacheable(f.Type) {
				return false
			}
		}
		return true
	}
	return false
}
