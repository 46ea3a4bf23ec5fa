// Package keyindex maps keys to small integers: the index of a key in a
// slice its user keeps. It is a Go map[K]int32 for the one thing a keyed
// operator does per record, look its key up, in about half the time (1.6x
// to 2x as many lookups per second, BenchmarkIndex): one probe sequence in
// one array of (key, index) pairs, and for integer keys a multiplication
// for a hash.
//
// An Index is not safe for concurrent use.
package keyindex

import (
	"hash/maphash"
	"reflect"
	"unsafe"
)

// fib is 2^64 divided by the golden ratio: multiplying by it and keeping
// the high bits spreads any keys, including evenly spaced ones, over the
// table (Fibonacci hashing).
const fib = 0x9E3779B97F4A7C15

// minSize is the number of slots of a table's first array.
const minSize = 16

// Index maps keys to int32 values (indexes). The zero Index is empty and
// ready to use.
type Index[K comparable] struct {
	slots []slot[K] // len is a power of two, or 0
	shift uint8     // 64 - log2(len(slots))
	n     int
	h     hasher[K]
}

// hasher hashes keys of type K, spread by Fibonacci hashing: the high bits
// of its hashes are as good as the low.
type hasher[K comparable] struct {
	kind hashKind
	seed maphash.Seed
}

func (h *hasher[K]) init() {
	if h.kind == kindUnset {
		h.kind = kindOf[K]()
		h.seed = maphash.MakeSeed()
	}
}

// hash returns the hash of k.
func (h *hasher[K]) hash(k K) uint64 {
	var x uint64
	p := unsafe.Pointer(&k)
	switch h.kind {
	case kind64:
		x = *(*uint64)(p)
	case kind32:
		x = uint64(*(*uint32)(p))
	case kind16:
		x = uint64(*(*uint16)(p))
	case kind8:
		x = uint64(*(*uint8)(p))
	case kindString:
		x = maphash.String(h.seed, *(*string)(p))
	default:
		x = maphash.Comparable(h.seed, k)
	}
	return x * fib
}

type slot[K comparable] struct {
	key K
	v   int32 // the value plus one; 0: the slot is empty
}

type hashKind uint8

const (
	kindUnset hashKind = iota
	kind8              // integers and bools: their bits are the hash
	kind16
	kind32
	kind64
	kindString // maphash.String
	kindOther  // maphash.Comparable
)

func kindOf[K comparable]() hashKind {
	t := reflect.TypeFor[K]()
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		switch t.Size() {
		case 1:
			return kind8
		case 2:
			return kind16
		case 4:
			return kind32
		case 8:
			return kind64
		}
	case reflect.String:
		return kindString
	}
	return kindOther
}

// Len returns the number of keys.
func (x *Index[K]) Len() int { return x.n }

// home returns the slot where the probe for k starts.
func (x *Index[K]) home(k K) uint64 { return x.h.hash(k) >> x.shift }

// Get returns the value of k and whether k is in the index.
func (x *Index[K]) Get(k K) (int32, bool) {
	if x.n == 0 {
		return 0, false
	}
	mask := uint64(len(x.slots) - 1)
	for i := x.home(k); ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.v == 0 {
			return 0, false
		}
		if s.key == k {
			return s.v - 1, true
		}
	}
}

// Put sets the value of k. v must not be negative.
func (x *Index[K]) Put(k K, v int32) {
	if v < 0 {
		panic("keyindex: negative value")
	}
	x.h.init()
	// At most 3/4 full: probes stay short.
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	mask := uint64(len(x.slots) - 1)
	for i := x.home(k); ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.v == 0 {
			s.key, s.v = k, v+1
			x.n++
			return
		}
		if s.key == k {
			s.v = v + 1
			return
		}
	}
}

// grow doubles the table.
func (x *Index[K]) grow() {
	old := x.slots
	size := max(2*len(old), minSize)
	x.slots = make([]slot[K], size)
	x.shift = uint8(64 - log2(size))
	mask := uint64(size - 1)
	for _, s := range old {
		if s.v == 0 {
			continue
		}
		i := x.home(s.key)
		for x.slots[i].v != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s
	}
}

func log2(n int) int {
	l := 0
	for 1<<l < n {
		l++
	}
	return l
}

// Clear removes every key. The index keeps its memory for the keys to come.
func (x *Index[K]) Clear() {
	if x.n > 0 {
		clear(x.slots)
		x.n = 0
	}
}
