package state

import (
	"encoding/binary"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// Value is a single value per key.
type Value[T any] struct{ t *table[T] }

// NewValue declares (or returns the already declared) Value state name.
func NewValue[T any](b Backend, name string, opts ...Option) (*Value[T], error) {
	t, err := declare(b, name, kindValue, reflect.TypeFor[*Value[T]](), opts, plainOpsFor[T])
	if err != nil {
		return nil, err
	}
	return &Value[T]{t}, nil
}

// Get returns the current key's value and whether it exists (and has not
// expired). The caller may change the value in place and write it back with
// Update (see the package documentation, Ownership).
func (v *Value[T]) Get() (T, bool, error) {
	e, err := v.t.readOwned()
	if e == nil {
		var zero T
		return zero, false, err
	}
	return e.v, true, nil
}

// Update sets the current key's value. x must not be modified after the
// backend's next Snapshot; read it again with Get to change it then.
func (v *Value[T]) Update(x T) error {
	e, err := v.t.forWrite(false)
	if err != nil {
		return err
	}
	e.v = x
	if err := v.t.written(e); err != nil || !v.t.through {
		return err
	}
	return v.t.writeThrough(e.key, sizeOf(x))
}

// sizeOf is about how many bytes x holds, for WithWriteThrough's batches.
func sizeOf[T any](x T) int {
	switch v := any(x).(type) {
	case []byte:
		return 64 + len(v)
	case string:
		return 64 + len(v)
	}
	return 64 + int(reflect.TypeFor[T]().Size())
}

// Clear deletes the current key's value.
func (v *Value[T]) Clear() error { return v.t.clear() }

// List is a list of elements per key.
type List[T any] struct{ t *table[[]T] }

// NewList declares (or returns the already declared) List state name.
// WithCodec sets the codec of the elements.
func NewList[T any](b Backend, name string, opts ...Option) (*List[T], error) {
	t, err := declare(b, name, kindList, reflect.TypeFor[*List[T]](), opts, func(o *declOptions) (valueOps[[]T], error) {
		c, err := codecFor[T](o)
		return listOps[T]{c: c, deep: deepType[T]()}, err
	})
	if err != nil {
		return nil, err
	}
	return &List[T]{t}, nil
}

// Get returns a copy of the current key's list (nil if empty or expired). The
// copy is shallow: elements holding references share them with the stored
// list, so the caller may change them in place and write the list back with
// Update (see the package documentation, Ownership).
func (l *List[T]) Get() ([]T, error) {
	e, err := l.t.readOwned()
	if e == nil {
		return nil, err
	}
	return slices.Clone(e.v), nil
}

// Add appends x to the current key's list.
func (l *List[T]) Add(x ...T) error {
	if len(x) == 0 {
		return nil
	}
	if _, err := l.t.read(); err != nil { // expire an old list before appending
		return err
	}
	e, err := l.t.forWrite(true)
	if err != nil {
		return err
	}
	e.v = append(e.v, x...)
	return l.t.written(e)
}

// Update replaces the current key's list with a copy of xs; an empty xs clears it.
func (l *List[T]) Update(xs []T) error {
	if len(xs) == 0 {
		return l.t.clear()
	}
	e, err := l.t.forWrite(false)
	if err != nil {
		return err
	}
	e.v = slices.Clone(xs)
	return l.t.written(e)
}

// Clear deletes the current key's list.
func (l *List[T]) Clear() error { return l.t.clear() }

// Map is a map from user keys to values per key. TTL applies to the current
// key's whole map: any write refreshes it.
type Map[K comparable, V any] struct{ t *table[map[K]V] }

// NewMap declares (or returns the already declared) Map state name. Map keys
// are encoded canonically (keygroup.EncoderFor) for the store and with msgpack
// for decoding; WithCodec sets the codec of the values.
func NewMap[K comparable, V any](b Backend, name string, opts ...Option) (*Map[K, V], error) {
	t, err := declare(b, name, kindMap, reflect.TypeFor[*Map[K, V]](), opts, func(o *declOptions) (valueOps[map[K]V], error) {
		if err := checkEncodable(typeOf[K]()); err != nil {
			return nil, fmt.Errorf("map key: %w", err)
		}
		c, err := codecFor[V](o)
		return mapOps[K, V]{enc: keygroup.EncoderFor[K](), codec: c, deep: deepType[V]()}, err
	})
	if err != nil {
		return nil, err
	}
	return &Map[K, V]{t}, nil
}

// Get returns the value of k in the current key's map. The caller may change
// the value in place and write it back with Put (see the package
// documentation, Ownership).
func (m *Map[K, V]) Get(k K) (V, bool, error) {
	e, err := m.t.readOwned()
	if e == nil {
		var zero V
		return zero, false, err
	}
	v, ok := e.v[k]
	return v, ok, nil
}

// Put sets k to v in the current key's map.
func (m *Map[K, V]) Put(k K, v V) error {
	if _, err := m.t.read(); err != nil {
		return err
	}
	e, err := m.t.forWrite(true)
	if err != nil {
		return err
	}
	if e.v == nil {
		e.v = map[K]V{}
	}
	e.v[k] = v
	return m.t.written(e)
}

// Remove deletes k from the current key's map.
func (m *Map[K, V]) Remove(k K) error {
	e, err := m.t.read()
	if e == nil || err != nil {
		return err
	}
	if _, ok := e.v[k]; !ok {
		return nil
	}
	if len(e.v) == 1 {
		return m.t.clear()
	}
	e = m.t.writable(e)
	delete(e.v, k)
	return m.t.written(e)
}

// Len returns the number of entries in the current key's map.
func (m *Map[K, V]) Len() (int, error) {
	e, err := m.t.read()
	if e == nil {
		return 0, err
	}
	return len(e.v), nil
}

// Range calls fn for each entry of the current key's map, in no particular
// order, until fn returns false. fn must not change the state; the values it
// is given may be changed in place and written back with Put after Range
// returns, as those of Get.
func (m *Map[K, V]) Range(fn func(K, V) bool) error {
	e, err := m.t.readOwned()
	if e == nil {
		return err
	}
	for k, v := range e.v {
		if !fn(k, v) {
			break
		}
	}
	return nil
}

// Clear deletes the current key's whole map.
func (m *Map[K, V]) Clear() error { return m.t.clear() }

// Reducing folds added values into one with a reduce function.
type Reducing[T any] struct {
	t      *table[T]
	reduce func(acc, x T) T
}

// NewReducing declares (or returns the already declared) Reducing state name.
func NewReducing[T any](b Backend, name string, reduce func(acc, x T) T, opts ...Option) (*Reducing[T], error) {
	if reduce == nil {
		return nil, fmt.Errorf("state %q: %w: nil reduce function", name, ErrInvalidConfig)
	}
	t, err := declare(b, name, kindReducing, reflect.TypeFor[*Reducing[T]](), opts, plainOpsFor[T])
	if err != nil {
		return nil, err
	}
	return &Reducing[T]{t, reduce}, nil
}

// Add folds x into the current key's value.
func (r *Reducing[T]) Add(x T) error {
	old, err := r.t.read()
	if err != nil {
		return err
	}
	e, err := r.t.forWrite(true)
	if err != nil {
		return err
	}
	if old == nil {
		e.v = x
	} else {
		e.v = r.reduce(e.v, x)
	}
	return r.t.written(e)
}

// Get returns the current key's reduced value. It must not be modified: it is
// the stored accumulator, and Reducing has no way to write it back.
func (r *Reducing[T]) Get() (T, bool, error) {
	e, err := r.t.read()
	if e == nil {
		var zero T
		return zero, false, err
	}
	return e.v, true, nil
}

// Clear deletes the current key's value.
func (r *Reducing[T]) Clear() error { return r.t.clear() }

// Aggregator is an incremental aggregation with an accumulator of type Acc.
type Aggregator[In, Acc, Out any] interface {
	CreateAccumulator() Acc
	Add(acc Acc, in In) Acc
	Result(acc Acc) Out
}

// Aggregating folds added inputs into an accumulator and returns its result.
type Aggregating[In, Out any] struct{ impl aggregatingImpl[In, Out] }

type aggregatingImpl[In, Out any] interface {
	add(In) error
	get() (Out, bool, error)
	clear() error
}

type aggregating[In, Acc, Out any] struct {
	t   *table[Acc]
	agg Aggregator[In, Acc, Out]
}

// NewAggregating declares (or returns the already declared) Aggregating state
// name; WithCodec sets the codec of the accumulator.
func NewAggregating[In, Acc, Out any](b Backend, name string, agg Aggregator[In, Acc, Out], opts ...Option) (*Aggregating[In, Out], error) {
	if agg == nil {
		return nil, fmt.Errorf("state %q: %w: nil aggregator", name, ErrInvalidConfig)
	}
	t, err := declare(b, name, kindAggregating, reflect.TypeFor[*aggregating[In, Acc, Out]](), opts, plainOpsFor[Acc])
	if err != nil {
		return nil, err
	}
	return &Aggregating[In, Out]{&aggregating[In, Acc, Out]{t, agg}}, nil
}

// Add folds in into the current key's accumulator.
func (a *Aggregating[In, Out]) Add(in In) error { return a.impl.add(in) }

// Get returns the result of the current key's accumulator. It must not be
// modified if it shares memory with the accumulator (Result returns part of it).
func (a *Aggregating[In, Out]) Get() (Out, bool, error) { return a.impl.get() }

// Clear deletes the current key's accumulator.
func (a *Aggregating[In, Out]) Clear() error { return a.impl.clear() }

func (a *aggregating[In, Acc, Out]) add(in In) error {
	old, err := a.t.read()
	if err != nil {
		return err
	}
	e, err := a.t.forWrite(true)
	if err != nil {
		return err
	}
	if old == nil {
		e.v = a.agg.CreateAccumulator()
	}
	e.v = a.agg.Add(e.v, in)
	return a.t.written(e)
}

func (a *aggregating[In, Acc, Out]) get() (Out, bool, error) {
	e, err := a.t.read()
	if e == nil {
		var zero Out
		return zero, false, err
	}
	return a.agg.Result(e.v), true, nil
}

func (a *aggregating[In, Acc, Out]) clear() error { return a.t.clear() }

// plainOps stores a value with its codec as is.
type plainOps[T any] struct {
	c Codec[T]
	// deep: T holds references (pointers, slices, maps, interfaces), which
	// reduce and aggregate functions and callers of Get may change in place;
	// copy-on-write then copies the value through the codec so a snapshot's
	// copy stays intact.
	deep bool
	// flat copies a T that is a slice of elements without references (a
	// copy of its array is a deep copy), much faster than the codec; nil
	// for other types.
	flat func(T) T
}

func plainOpsFor[T any](o *declOptions) (valueOps[T], error) {
	c, err := codecFor[T](o)
	p := plainOps[T]{c: c, deep: deepType[T]()}
	if p.deep {
		p.flat = flatSliceCopy[T]()
	}
	return p, err
}

// sliceHeader is the layout of every slice type.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// flatSliceCopy returns a function copying a T that is a slice of elements
// holding no pointers at all (numbers, bools, and arrays and structs of
// them; not strings or time.Time), or nil if T is not one. Their bytes are
// copied into a new array allocated without pointers: the collector has
// nothing to scan in it either way.
func flatSliceCopy[T any]() func(T) T {
	typ := typeOf[T]()
	if typ.Kind() != reflect.Slice || !pointerFree(typ.Elem()) {
		return nil
	}
	size := int(typ.Elem().Size())
	return func(v T) T {
		h := (*sliceHeader)(unsafe.Pointer(&v))
		if h.len == 0 || size == 0 {
			h.cap = h.len // an append reallocates instead of writing into a shared array
			return v
		}
		n := h.len * size
		// A []uint64 is 8-byte aligned, enough for any element type.
		buf := make([]uint64, (n+7)/8)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), n), unsafe.Slice((*byte)(h.data), n))
		var out T
		*(*sliceHeader)(unsafe.Pointer(&out)) = sliceHeader{unsafe.Pointer(&buf[0]), h.len, h.len}
		return out
	}
}

// deepType reports whether T holds references that a caller could change in
// place (hasRefs).
func deepType[T any]() bool { return hasRefs(typeOf[T](), map[reflect.Type]bool{}) }

func hasRefs(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	if t == reflect.TypeFor[time.Time]() {
		return false // its only reference, the *Location, is never changed
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return hasRefs(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if hasRefs(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// pointerFree reports whether values of t hold no pointer of any kind.
func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return t.Len() == 0 || pointerFree(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

func (plainOps[T]) isMap() bool                                      { return false }
func (p plainOps[T]) encode(dst []byte, v T) ([]byte, error)         { return p.c.Append(dst, v) }
func (p plainOps[T]) decode(b []byte) (T, error)                     { return p.c.Decode(b) }
func (plainOps[T]) mapRows(T, []byte, func(_, _ []byte) error) error { return nil }
func (plainOps[T]) mapAdd(*T, []byte) error                          { return errNotMap }
func (p plainOps[T]) refs() bool                                     { return p.deep }
func (p plainOps[T]) clone(v T) T {
	if !p.deep {
		return v
	}
	if p.flat != nil {
		return p.flat(v)
	}
	c, _ := cloneVia(p.c, nil, v)
	return c
}

// cloneVia returns a deep copy of v made by encoding and decoding it with c
// (buf is scratch space, returned for reuse). If v does not encode, it is
// returned as is: it will fail to encode in the snapshot too, with an error.
func cloneVia[T any](c Codec[T], buf []byte, v T) (T, []byte) {
	b, err := c.Append(buf[:0], v)
	if err != nil {
		return v, buf
	}
	x, err := c.Decode(b)
	if err != nil {
		return v, b
	}
	return x, b
}

var errNotMap = fmt.Errorf("%w: map row for a non-map state", ErrCorrupt)

// listOps encodes a list as a count and length-prefixed elements.
type listOps[T any] struct {
	c    Codec[T]
	deep bool // T holds references: clone copies the elements too
}

func (listOps[T]) isMap() bool { return false }

func (l listOps[T]) encode(dst []byte, v []T) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	var err error
	for _, x := range v {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		if dst, err = l.c.Append(dst, x); err != nil {
			return dst, err
		}
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst, nil
}

func (l listOps[T]) decode(b []byte) ([]T, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("bad list header")
	}
	b = b[k:]
	out := make([]T, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, fmt.Errorf("truncated list")
		}
		sz := int(binary.BigEndian.Uint32(b))
		if sz > len(b)-4 {
			return nil, fmt.Errorf("truncated list element")
		}
		x, err := l.c.Decode(b[4 : 4+sz])
		if err != nil {
			return nil, err
		}
		out = append(out, x)
		b = b[4+sz:]
	}
	return out, nil
}

func (listOps[T]) mapRows([]T, []byte, func(_, _ []byte) error) error { return nil }
func (listOps[T]) mapAdd(*[]T, []byte) error                          { return errNotMap }

func (l listOps[T]) refs() bool { return l.deep }

// clone clips the list so the owner's next append reallocates instead of
// writing into an array a snapshot may be reading. Elements holding
// references are copied through the codec, into a new array.
func (l listOps[T]) clone(v []T) []T {
	if !l.deep || len(v) == 0 {
		return slices.Clip(v)
	}
	out := make([]T, len(v))
	var buf []byte
	for i, x := range v {
		out[i], buf = cloneVia(l.c, buf, x)
	}
	return out
}

// mapOps stores one row per map entry: the canonical key orders and addresses
// it, the payload holds the msgpack key (to decode) and the value.
type mapOps[K comparable, V any] struct {
	enc   keygroup.Encoder[K]
	codec Codec[V]
	deep  bool // V holds references: clone copies the values too
}

func (mapOps[K, V]) isMap() bool                                  { return true }
func (mapOps[K, V]) encode(dst []byte, _ map[K]V) ([]byte, error) { return dst, errNotMap }
func (mapOps[K, V]) decode([]byte) (map[K]V, error)               { return nil, errNotMap }

func (o mapOps[K, V]) mapRows(v map[K]V, buf []byte, fn func(mapKey, payload []byte) error) error {
	for k, x := range v {
		buf = o.enc(buf[:0], k)
		mk := len(buf)
		kb, err := msgpack.Marshal(k)
		if err != nil {
			return fmt.Errorf("%w: map key: %v", ErrCodec, err)
		}
		buf = appendLenPrefixed(buf, kb)
		if buf, err = o.codec.Append(buf, x); err != nil {
			return fmt.Errorf("%w: %v", ErrCodec, err)
		}
		if err := fn(buf[:mk], buf[mk:]); err != nil {
			return err
		}
	}
	return nil
}

func (o mapOps[K, V]) mapAdd(v *map[K]V, payload []byte) error {
	kb, rest, ok := readLenPrefixed(payload)
	if !ok {
		return fmt.Errorf("truncated map row")
	}
	var k K
	if err := msgpack.Unmarshal(kb, &k); err != nil {
		return err
	}
	x, err := o.codec.Decode(rest)
	if err != nil {
		return err
	}
	if *v == nil {
		*v = map[K]V{}
	}
	(*v)[k] = x
	return nil
}

func (o mapOps[K, V]) refs() bool { return o.deep }

// clone copies the map; values holding references are copied through the
// codec. Keys are kept: they are compared, never changed in place.
func (o mapOps[K, V]) clone(v map[K]V) map[K]V {
	c := maps.Clone(v)
	if o.deep {
		var buf []byte
		for k, x := range c {
			c[k], buf = cloneVia(o.codec, buf, x)
		}
	}
	return c
}

func appendLenPrefixed(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func readLenPrefixed(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
