package keyindex

import "math/bits"

// Tagged maps keys to the indexes of the slice its user keeps them in, as
// Index does, in 8 bytes a slot whatever the key: a 32-bit tag of the key's
// hash and the index. The key itself is only in the user's slice: a lookup
// compares it there, through keyAt, in the slots whose tag matches (the
// key's, and one in 2^32 of the others). A cache whose entries hold their
// keys then keeps no second copy of them (an int64 key's Index slot is 16
// bytes).
//
// The table grows by half when it is 3/4 full, to any size (the tag picks
// the slot by multiplication, not by its low bits), so that 1M keys take
// 1.3M-2M slots rather than the next power of two's 2M-4M; growing needs
// only the tags, not the keys.
//
// A Tagged is not safe for concurrent use. The zero Tagged is empty and
// ready to use.
type Tagged[K comparable] struct {
	slots []uint64 // tag<<32 | index+1; 0: an empty slot
	n     int
	h     hasher[K]
}

// minTagged is the number of slots of a Tagged's first array.
const minTagged = 16

// Len returns the number of keys.
func (x *Tagged[K]) Len() int { return x.n }

func (x *Tagged[K]) tag(k K) uint32 { return uint32(x.h.hash(k) >> 32) }

// home returns the slot where the probe for a tag starts: the tag scaled
// to the table.
func (x *Tagged[K]) home(tag uint32) int {
	hi, _ := bits.Mul64(uint64(tag)<<32, uint64(len(x.slots)))
	return int(hi)
}

// Get returns the index of k, whose key is keyAt(index), and whether k is
// in the table.
func (x *Tagged[K]) Get(k K, keyAt func(int32) K) (int32, bool) { return x.find(k, keyAt) }

// Candidate returns the index in the first slot of k's probe whose tag is
// k's, without comparing keys: almost always k's index if k is in the
// table. A prefetch of the user's entries uses it: it touches only the
// table.
func (x *Tagged[K]) Candidate(k K) (int32, bool) { return x.find(k, nil) }

// find probes for k: the first slot of its tag whose key is k (keyAt), or
// with keyAt nil the first of its tag.
func (x *Tagged[K]) find(k K, keyAt func(int32) K) (int32, bool) {
	if x.n == 0 {
		return 0, false
	}
	tag := x.tag(k)
	for i := x.home(tag); ; {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == tag {
			if v := int32(uint32(s)) - 1; keyAt == nil || keyAt(v) == k {
				return v, true
			}
		}
		if i++; i == len(x.slots) {
			i = 0
		}
	}
}

// Add adds k, which is not in the table, with index v (not negative).
func (x *Tagged[K]) Add(k K, v int32) {
	if v < 0 {
		panic("keyindex: negative value")
	}
	x.h.init()
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	tag := x.tag(k)
	x.insert(uint64(tag)<<32 | uint64(uint32(v+1)))
	x.n++
}

// insert puts slot s in the first empty slot of its probe.
func (x *Tagged[K]) insert(s uint64) {
	i := x.home(uint32(s >> 32))
	for x.slots[i] != 0 {
		if i++; i == len(x.slots) {
			i = 0
		}
	}
	x.slots[i] = s
}

// grow makes the table half as big again, placing the slots anew by their
// tags.
func (x *Tagged[K]) grow() {
	old := x.slots
	x.slots = make([]uint64, max(len(old)+len(old)/2, minTagged))
	for _, s := range old {
		if s != 0 {
			x.insert(s)
		}
	}
}

// Clear removes every key. The table keeps its memory for the keys to come.
func (x *Tagged[K]) Clear() {
	if x.n > 0 {
		clear(x.slots)
		x.n = 0
	}
}
