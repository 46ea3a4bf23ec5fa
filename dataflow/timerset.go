package dataflow

import (
	"math/bits"
	"slices"
)

// fixedSet is the set of keys with a timer at one time when the keys'
// encodings are 8 bytes (integer keys): each held as its encoding, a
// big-endian uint64, in one []uint64 with open addressing and linear
// probing. A timer costs about 11-16 bytes (8 a slot, at a load of 1/2 to
// 3/4) and holds no pointer for the collector to scan; the key and its key
// group are computed from the encoding when the timer fires or is written
// (fixedKeys). A Go map of the encoding to the key and key group took about
// 40 bytes a timer, and firing a time copied its timers into a 40-byte item
// each to sort them: together most of a tumbling-window operator's memory
// per key (BenchmarkStateGrowth in window/).
type fixedSet struct {
	slots []uint64 // 0 is an empty slot: the key 0 is zero
	n     int      // keys in slots
	zero  bool     // the key 0 is in the set
}

// minFixedSlots is the smallest table of a fixedSet.
const minFixedSlots = 8

// newFixedSet returns a set with room for n keys before it grows.
func newFixedSet(n int) *fixedSet {
	s := &fixedSet{}
	s.alloc(n)
	return s
}

// alloc gives s an empty table with room for n keys: at most 3/4 full.
// The table may have any size (home scales the hash to it), so that 1M
// keys take 1.33M slots, not the next power of two's 2M.
func (s *fixedSet) alloc(n int) {
	s.slots = make([]uint64, max(minFixedSlots, n+n/3+1))
}

func (s *fixedSet) len() int {
	if s.zero {
		return s.n + 1
	}
	return s.n
}

// home is the slot a key's probe starts at: Fibonacci hashing (the
// product's high bits mix every bit of small and sequential keys), scaled
// to the table.
func (s *fixedSet) home(p uint64) int {
	hi, _ := bits.Mul64(p*0x9e3779b97f4a7c15, uint64(len(s.slots)))
	return int(hi)
}

// next is the slot after i, around the end.
func (s *fixedSet) next(i int) int {
	if i++; i == len(s.slots) {
		return 0
	}
	return i
}

// find returns the slot of p, or of the empty slot where its probe ends.
func (s *fixedSet) find(p uint64) (int, bool) {
	for i := s.home(p); ; i = s.next(i) {
		switch s.slots[i] {
		case p:
			return i, true
		case 0:
			return i, false
		}
	}
}

func (s *fixedSet) has(p uint64) bool {
	if p == 0 {
		return s.zero
	}
	_, ok := s.find(p)
	return ok
}

// add adds p and reports whether it was not in the set.
func (s *fixedSet) add(p uint64) bool {
	if p == 0 {
		added := !s.zero
		s.zero = true
		return added
	}
	i, ok := s.find(p)
	if ok {
		return false
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
		i, _ = s.find(p)
	}
	s.slots[i] = p
	s.n++
	return true
}

// grow makes the table half as big again.
func (s *fixedSet) grow() {
	old := s.slots
	s.slots = make([]uint64, len(old)+len(old)/2)
	for _, p := range old {
		if p != 0 {
			i, _ := s.find(p)
			s.slots[i] = p
		}
	}
}

// del removes p and reports whether it was in the set. The keys after it in
// its run move back into the hole where their probes allow, so that no
// probe ever crosses a deleted slot (Knuth's algorithm R).
func (s *fixedSet) del(p uint64) bool {
	if p == 0 {
		was := s.zero
		s.zero = false
		return was
	}
	i, ok := s.find(p)
	if !ok {
		return false
	}
	s.slots[i] = 0
	for j := s.next(i); s.slots[j] != 0; j = s.next(j) {
		h := s.home(s.slots[j])
		// The key at j stays if its home is cyclically in (i, j].
		if i <= j && i < h && h <= j || i > j && (i < h || h <= j) {
			continue
		}
		s.slots[i], s.slots[j] = s.slots[j], 0
		i = j
	}
	s.n--
	return true
}

func (s *fixedSet) clone() *fixedSet {
	c := *s
	c.slots = slices.Clone(s.slots)
	return &c
}

func (s *fixedSet) clear() {
	clear(s.slots)
	s.n, s.zero = 0, false
}

// appendTo appends the keys to dst, unordered.
func (s *fixedSet) appendTo(dst []uint64) []uint64 {
	if s.zero {
		dst = append(dst, 0)
	}
	for _, p := range s.slots {
		if p != 0 {
			dst = append(dst, p)
		}
	}
	return dst
}

// takeSorted returns the keys in increasing order, in s's own table, which
// is then no set any more: s holds its keys (len still counts them) until
// clear, which makes it a set again. A time about to fire takes its
// timers so, instead of copying them into an order of their own and
// sorting that through a buffer as large (at 1M keys, 18 MB less).
func (s *fixedSet) takeSorted() []uint64 {
	j := 0
	for _, p := range s.slots {
		if p != 0 {
			s.slots[j] = p
			j++
		}
	}
	if s.zero {
		// A set of n keys has more than n slots: there is room for 0.
		s.slots[j] = 0
		j++
	}
	clear(s.slots[j:])
	order := s.slots[:j]
	sortUint64s(order)
	return order
}

// sortUint64s sorts a in place: an MSD radix sort by byte (American flag
// sort), from the highest byte in which the values differ (integer keys of
// a few million differ in their low 3), runs of up to flagSortMin by
// slices.Sort.
func sortUint64s(a []uint64) {
	if len(a) < 2 {
		return
	}
	or, and := uint64(0), ^uint64(0)
	for _, x := range a {
		or, and = or|x, and&x
	}
	if diff := or ^ and; diff != 0 {
		flagSort(a, uint(63-bits.LeadingZeros64(diff))/8*8)
	}
}

// flagSortMin is the length below which flagSort sorts by comparison.
const flagSortMin = 64

// flagSort sorts a, whose values agree above the byte at shift, by that
// byte and the ones below.
func flagSort(a []uint64, shift uint) {
	if len(a) < flagSortMin {
		slices.Sort(a)
		return
	}
	var count, next [256]int
	for _, x := range a {
		count[byte(x>>shift)]++
	}
	at := 0
	for b, c := range count {
		next[b] = at
		at += c
	}
	end := 0
	for b, c := range count {
		end += c
		// Move every value in bucket b's range that belongs elsewhere to
		// its bucket, taking in what it displaces, until b's range holds
		// b's values.
		for i := next[b]; i < end; i = next[b] {
			x := a[i]
			for d := byte(x >> shift); int(d) != b; d = byte(x >> shift) {
				j := next[d]
				next[d]++
				a[j], x = x, a[j]
			}
			a[i] = x
			next[b]++
		}
	}
	if shift == 0 {
		return
	}
	start := 0
	for _, c := range count {
		if c > 1 {
			flagSort(a[start:start+c], shift-8)
		}
		start += c
	}
}
