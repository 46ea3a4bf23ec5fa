package dataflow

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// A fixedSet holds what a Go map set holds through a random script of adds
// and deletes over few keys (long probe runs, deletes inside them, the key
// 0), and clones are independent.
func TestFixedSetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, keys := range []uint64{3, 50, 5000} {
		s, want := newFixedSet(0), map[uint64]bool{}
		var snap *fixedSet
		var snapWant map[uint64]bool
		for step := range 40_000 {
			// Keys spread over the high bits too, so that homes collide.
			p := r.Uint64N(keys) << (r.UintN(2) * 40)
			switch r.IntN(3) {
			case 0, 1:
				require.Equal(t, !want[p], s.add(p))
				want[p] = true
			default:
				require.Equal(t, want[p], s.del(p))
				delete(want, p)
			}
			require.Equal(t, len(want), s.len())
			if step%997 == 0 {
				for q := range want {
					require.True(t, s.has(q), "%d", q)
				}
				got := s.appendTo(nil)
				slices.Sort(got)
				w := make([]uint64, 0, len(want))
				for q := range want {
					w = append(w, q)
				}
				slices.Sort(w)
				require.Equal(t, w, got)
			}
			if step%5000 == 0 {
				if snap != nil {
					require.Equal(t, len(snapWant), snap.len(), "a clone does not change with the set")
					for q := range snapWant {
						require.True(t, snap.has(q))
					}
				}
				snap, snapWant = s.clone(), maps.Clone(want)
			}
		}
		s.clear()
		require.Zero(t, s.len())
		require.False(t, s.has(0))
	}
}

// radixSort sorts as slices.Sort does, over prefixes that differ in one
// byte, in some, or in all.
func TestRadixSortUint64s(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 2, 300, 10_000} {
		for _, mask := range []uint64{0xff, 0xff_ffff, 0xff00_0000_00ff, ^uint64(0)} {
			xs := make([]uint64, n)
			for i := range xs {
				xs[i] = r.Uint64() & mask
			}
			want := slices.Clone(xs)
			slices.Sort(want)
			var scratch []uint64
			radixSort(xs, &scratch, 1<<20, func(p *uint64) uint64 { return *p })
			require.Equal(t, want, xs, "%d keys, mask %x", n, mask)
		}
	}
}

// sortUint64s sorts as slices.Sort does, for values that differ in any
// bytes, with duplicates, and for lengths around its comparison cutoff.
func TestSortUint64s(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	gens := map[string]func() uint64{
		"uniform":     r.Uint64,
		"small":       func() uint64 { return r.Uint64N(1 << 20) },
		"high bytes":  func() uint64 { return r.Uint64N(300) << 52 },
		"duplicates":  func() uint64 { return r.Uint64N(5) },
		"sparse bits": func() uint64 { return 1<<63 | r.Uint64N(4)<<33 | r.Uint64N(3) },
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 2, flagSortMin - 1, flagSortMin, flagSortMin + 1, 1000, 100_000} {
			a := make([]uint64, n)
			for i := range a {
				a[i] = gen()
			}
			want := slices.Clone(a)
			slices.Sort(want)
			sortUint64s(a)
			require.Equal(t, want, a, "%s, %d values", name, n)
		}
	}
}

// takeSorted gives a set's keys in order, the key 0 too, in the set's own
// table, and the set is a set again once cleared.
func TestFixedSetTakeSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 3))
	for _, n := range []int{0, 1, 5, 6, 1000, 50_000} {
		for _, zero := range []bool{false, true} {
			s := newFixedSet(0)
			want := map[uint64]bool{}
			for len(want) < n {
				p := r.Uint64N(1<<40) + 1
				s.add(p)
				want[p] = true
			}
			if zero {
				s.add(0)
				want[0] = true
			}
			got := s.takeSorted()
			require.Equal(t, append([]uint64{}, slices.Sorted(maps.Keys(want))...), append([]uint64{}, got...), "%d keys, zero %v", n, zero)
			require.Equal(t, len(want), s.len())
			if len(got) > 0 {
				require.Same(t, &s.slots[0], &got[0], "in the set's table")
			}
			s.clear()
			require.Zero(t, s.len())
			require.True(t, s.add(7))
			require.True(t, s.has(7))
			require.False(t, s.has(8))
		}
	}
}
