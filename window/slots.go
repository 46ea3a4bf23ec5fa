package window

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/state"
)

// slot is one window's accumulator. A key's windows are a []slot in keyed
// state (a Value named "windows"), sorted by window: a record of a tumbling
// window finds its accumulator at the end of a one- or two-element list, one
// of a sliding window in a list of about size/slide elements, with one state
// lookup per record however many windows it is in.
type slot[Acc any] struct {
	win Window
	acc Acc
}

// windowLess orders windows by start, then end.
func windowLess(a, b Window) bool {
	return a.Start < b.Start || a.Start == b.Start && a.End < b.End
}

// findSlot returns the index of w in s, or the index to insert it at. It
// searches from the end: the newest windows, which records hit most.
func findSlot[Acc any](s []slot[Acc], w Window) (int, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].win == w {
			return i, true
		}
		if windowLess(s[i].win, w) {
			return i + 1, false
		}
	}
	return 0, false
}

// insertSlot inserts x at i.
func insertSlot[S any](s []S, i int, x S) []S {
	if i == len(s) {
		return append(s, x)
	}
	var zero S
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = x
	return s
}

// removeSlot removes the slot at i.
func removeSlot[S any](s []S, i int) []S {
	copy(s[i:], s[i+1:])
	var zero S
	s[len(s)-1] = zero // drop the accumulator's references
	return s[:len(s)-1]
}

// gslot is one window's accumulator in the fast operator (fastAgg), whose
// windows are those of a grid: the window is its number (grid.window), 8
// bytes instead of a Window's 16.
type gslot[Acc any] struct {
	k   int64
	acc Acc
}

// findGslot is findSlot for window k.
func findGslot[Acc any](s []gslot[Acc], k int64) (int, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].k == k {
			return i, true
		}
		if s[i].k < k {
			return i + 1, false
		}
	}
	return 0, false
}

// slotList is a key's windows in the fast operator's cache (fastAgg): the
// []gslot of keyed state, with up to two windows inline, so that the
// windows of a tumbling window's key (one, or two across a window's end)
// sit in its cache entry, with no allocation of their own and no memory
// access more per record. More windows (sliding windows) live in *ext. For
// an int64 accumulator the list is 48 bytes, and a cache entry of an
// integer key 64 (with Windows inline and a slice header for ext they were
// 80 and 96).
type slotList[Acc any] struct {
	inl [2]gslot[Acc]
	ext *[]gslot[Acc] // the windows, when not nil
	n   uint8         // else the number of inline windows
}

// view returns the windows, valid until the list changes or moves.
func (l *slotList[Acc]) view() []gslot[Acc] {
	if l.ext != nil {
		return *l.ext
	}
	return l.inl[:l.n:len(l.inl)]
}

// insert inserts x at i.
func (l *slotList[Acc]) insert(i int, x gslot[Acc]) {
	if l.ext == nil {
		if int(l.n) < len(l.inl) {
			l.n = uint8(len(insertSlot(l.inl[:l.n:len(l.inl)], i, x))) // in place: the capacity holds it
			return
		}
		ext := make([]gslot[Acc], l.n, 2*len(l.inl))
		copy(ext, l.inl[:l.n])
		clear(l.inl[:]) // drop the accumulators' references
		l.n, l.ext = 0, &ext
	}
	*l.ext = insertSlot(*l.ext, i, x)
}

// truncate keeps the first n windows.
func (l *slotList[Acc]) truncate(n int) {
	s := l.view()
	clear(s[n:]) // drop the accumulators' references
	switch {
	case l.ext == nil:
		l.n = uint8(n)
	case n == 0:
		l.ext = nil
	default:
		*l.ext = s[:n]
	}
}

// dropFirst drops the first n windows.
func (l *slotList[Acc]) dropFirst(n int) {
	s := l.view()
	copy(s, s[n:])
	l.truncate(len(s) - n)
}

// set makes s, which the list may keep, its windows, inline if they fit.
func (l *slotList[Acc]) set(s []gslot[Acc]) {
	if len(s) <= len(l.inl) {
		*l = slotList[Acc]{}
		l.n = uint8(copy(l.inl[:], s))
		return
	}
	p := new([]gslot[Acc]) // not &s: s would move to the heap on every call
	*p = s
	*l = slotList[Acc]{ext: p}
}

// wrap makes *p its windows, kept where they are (not inline): changes go
// to *p, and slice then returns *p itself.
func (l *slotList[Acc]) wrap(p *[]gslot[Acc]) { *l = slotList[Acc]{ext: p} }

// slice returns the windows in a slice of their own, for keyed state.
func (l *slotList[Acc]) slice() []gslot[Acc] {
	if l.ext != nil {
		return *l.ext
	}
	return append([]gslot[Acc](nil), l.inl[:l.n]...)
}

// slotsVersion starts the encoding of a key's windows.
const slotsVersion = 1

var errSlots = errors.New("window: corrupt window state")

// slotsCodec encodes a key's windows: a version byte, the count, and per
// window its start (a varint), its length End-Start (a uvarint, wrapping
// around for windows longer than the int64 range, such as GlobalWindow) and
// its accumulator (a uvarint length, then acc's encoding). S is the slot
// type: slot, or the fast operator's gslot, which give the same bytes for
// the same windows (a savepoint does not depend on which operator ran).
type slotsCodec[S, Acc any] struct {
	acc   state.Codec[Acc]
	slots slotForm[S, Acc]
}

// slotForm is how a slot type holds its window and accumulator.
type slotForm[S, Acc any] interface {
	window(*S) Window
	acc(*S) *Acc
	// make returns the slot of w, or an error if the form cannot hold w.
	make(w Window, acc Acc) (S, error)
}

// plainSlots is the form of slot.
type plainSlots[Acc any] struct{}

func (plainSlots[Acc]) window(s *slot[Acc]) Window { return s.win }
func (plainSlots[Acc]) acc(s *slot[Acc]) *Acc      { return &s.acc }
func (plainSlots[Acc]) make(w Window, acc Acc) (slot[Acc], error) {
	return slot[Acc]{win: w, acc: acc}, nil
}

// gridSlots is the form of gslot on a grid.
type gridSlots[Acc any] struct{ g grid }

func (f gridSlots[Acc]) window(s *gslot[Acc]) Window { return f.g.window(s.k) }
func (gridSlots[Acc]) acc(s *gslot[Acc]) *Acc        { return &s.acc }
func (f gridSlots[Acc]) make(w Window, acc Acc) (gslot[Acc], error) {
	k, err := f.g.index(w)
	return gslot[Acc]{k: k, acc: acc}, err
}

func (c slotsCodec[S, Acc]) Append(dst []byte, s []S) ([]byte, error) {
	dst = append(dst, slotsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	var err error
	for i := range s {
		w := c.slots.window(&s[i])
		dst = binary.AppendVarint(dst, int64(w.Start))
		dst = binary.AppendUvarint(dst, uint64(w.End)-uint64(w.Start))
		// One byte for the length, which most accumulators fit; a longer
		// length moves the accumulator up.
		at := len(dst)
		dst = append(dst, 0)
		if dst, err = c.acc.Append(dst, *c.slots.acc(&s[i])); err != nil {
			return dst, fmt.Errorf("accumulator of window %v: %w", w, err)
		}
		n := uint64(len(dst) - at - 1)
		if n < 0x80 {
			dst[at] = byte(n)
			continue
		}
		var lb [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(lb[:], n)
		dst = append(dst, lb[:k-1]...)
		copy(dst[at+k:], dst[at+1:len(dst)-(k-1)])
		copy(dst[at:], lb[:k])
	}
	return dst, nil
}

func (c slotsCodec[S, Acc]) Decode(b []byte) ([]S, error) {
	if len(b) == 0 || b[0] != slotsVersion {
		return nil, fmt.Errorf("%w: not version %d", errSlots, slotsVersion)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: bad count", errSlots)
	}
	b = b[k:]
	s := make([]S, n)
	for i := range s {
		start, k1 := binary.Varint(b)
		if k1 <= 0 {
			return nil, fmt.Errorf("%w: window %d: bad start", errSlots, i)
		}
		length, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return nil, fmt.Errorf("%w: window %d: bad length", errSlots, i)
		}
		b = b[k1+k2:]
		sz, k3 := binary.Uvarint(b)
		if k3 <= 0 || sz > uint64(len(b)-k3) {
			return nil, fmt.Errorf("%w: window %d: truncated accumulator", errSlots, i)
		}
		acc, err := c.acc.Decode(b[k3 : k3+int(sz)])
		if err != nil {
			return nil, fmt.Errorf("%w: window %d: accumulator: %v", errSlots, i, err)
		}
		w := Window{Start: dataflow.Timestamp(start), End: dataflow.Timestamp(uint64(start) + length)}
		if s[i], err = c.slots.make(w, acc); err != nil {
			return nil, err
		}
		b = b[k3+int(sz):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last window", errSlots, len(b))
	}
	return s, nil
}

// newWindowsState declares a key's windows with their accumulators: the
// Value "windows" of incremental window aggregation, in slots of form f.
func newWindowsState[S, Acc any](b state.Backend, f slotForm[S, Acc]) (*state.Value[[]S], error) {
	if err := state.CheckEncodable[Acc](); err != nil {
		return nil, fmt.Errorf("window accumulator: %w", err)
	}
	return state.NewValue[[]S](b, "windows", state.WithCodec[[]S](slotsCodec[S, Acc]{acc: state.Msgpack[Acc](), slots: f}))
}
