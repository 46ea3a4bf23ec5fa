package window

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"unsafe"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// Runs: the fast operator's layout with no allowed lateness, for keys of
// integer or string type, on either backend.
//
// Kept per key, a window's accumulator in Badger costs a point read for
// every record of a key the cache does not hold (to add to what is stored)
// and another when the window fires: with more keys than the cache holds,
// the job runs at the store's random-read rate. In front of a store, for
// windows with no allowed lateness and keys of integer or string type, the
// operator instead keeps a buffer of partial accumulators (a
// keycache.NewBuffer as big as the backend's cache) and, when it is full
// and at each checkpoint, writes it out as runs: per key group and window,
// the buffer's keys of that group with their partial accumulators in the
// order of their encodings, in chunks of up to runChunkBytes. Writing a
// run reads nothing. When the watermark passes a window's end, the
// operator takes that window's partials out of the buffer, reads the
// window's runs one key group at a time, merges the partial accumulators
// of each key (AggregateFunction.Merge), emits the results in key order
// and deletes the runs. Every record then costs a buffer lookup; the store
// sees sequential chunk writes and reads, and no per-key timers are kept
// (the operator fires windows from ProcessWatermark). Results of one window
// come out key group by key group, in order of encoding within each, where
// per-key timers give them in order of encoding alone.
//
// On the heap the buffer has no bound: it is written out at checkpoints
// only, as a mirror (runStore.mirror) that is deleted before the state
// changes again, and a window that no checkpoint cut (no runs) fires from the
// buffer in one pass over it, with no sort and no per-key timer (at 1M
// keys, 85 bytes a key, where per-key windows and timers took 130). Keys
// left with no window leave the buffer when they are more than half of it.
//
// State: chunks are a Value[[]byte] named "window-runs" written through to
// the store (state.WithWriteThrough), under the key [window number, 8
// bytes][sequence, 8 bytes] after their key group's 2 bytes; each key
// group's chunks are listed in a Value[[]runRef] named "window-run-index"
// under the key [key group, 2 bytes]"runs" (see indexKey). A chunk names its window by start and end, so state written
// with other windows is refused, as for "windows". Both are keyed state:
// checkpoints and savepoints carry them, and a restore at another
// parallelism keeps each key group's runs whole.
//
// Layouts meet in both directions. A runs operator that restores "windows"
// (written without runs: with a lateness, or by an earlier version) takes a key's
// windows into its buffer when a record or the key's timer comes, and
// fires them with the runs. An operator without runs that restores runs
// (a savepoint restored with a lateness set) moves them into "windows" at
// Open and registers each key's timers (dataflow.EventTimerRegistrar).
//
// Not handled: per-key windows written with an allowed lateness and
// restored into runs. A window that had fired and was kept for late
// records fires again when the runs take it in, as the restored state
// does not say that it fired.

// runChunkBytes bounds a chunk, well under Badger's value threshold (see
// state.WithWriteThrough).
const runChunkBytes = 16 << 10

// runVersion starts a chunk's encoding.
const runVersion = 1

// A backend holds a key once whatever its key group (a key's group is the
// hash of its encoding), so the keys of runs and indexes, which are not
// encodings of keys, start with their key group.

// indexKey returns the key of key group kg's index of runs.
func (r *runStore[K, Acc]) indexKey(kg int) []byte {
	r.kbi = 1 - r.kbi
	kb := r.kbuf[r.kbi][:0]
	kb = binary.BigEndian.AppendUint16(kb, uint16(kg))
	return append(kb, "runs"...)
}

// runRef names one chunk of a key group: window K, sequence Seq.
type runRef struct {
	K   int64  `msgpack:"k"`
	Seq uint64 `msgpack:"s"`
}

// runItem is one key's partial accumulator of one window, while a run is
// written or merged: its encoding is arena[off:off+n] of its itemBuf.
type runItem[Acc any] struct {
	kg  uint16
	k   int64
	pfx uint64 // the encoding's first 8 bytes, big-endian, zero-padded: compared first
	off uint32
	n   uint32
	acc Acc
}

// itemBuf holds runItems and their keys' encodings.
type itemBuf[Acc any] struct {
	items []runItem[Acc]
	arena []byte
}

func (b *itemBuf[Acc]) add(kg int, k int64, enc []byte, acc Acc) {
	off := uint32(len(b.arena))
	b.arena = append(b.arena, enc...)
	b.items = append(b.items, runItem[Acc]{kg: uint16(kg), k: k, pfx: prefix(enc), off: off, n: uint32(len(enc)), acc: acc})
}

// prefix returns the first 8 bytes of enc as a big-endian number, padded
// with zeros: numbers compare as the encodings' first 8 bytes do.
func prefix(enc []byte) uint64 {
	if len(enc) >= 8 {
		return binary.BigEndian.Uint64(enc)
	}
	var b [8]byte
	copy(b[:], enc)
	return binary.BigEndian.Uint64(b[:])
}

func (b *itemBuf[Acc]) enc(it *runItem[Acc]) []byte { return b.arena[it.off : it.off+it.n] }

// reset empties b, dropping the accumulators' references; it lets go of
// big buffers, which a window's firing or a checkpoint fills with every key
// once, so that they do not stay between the two.
func (b *itemBuf[Acc]) reset() {
	if cap(b.items) > bigItemBuf {
		b.items, b.arena = nil, nil
		return
	}
	clear(b.items)
	b.items, b.arena = b.items[:0], b.arena[:0]
}

// bigItemBuf is the number of items above which an itemBuf is let go.
const bigItemBuf = 1 << 16

// grow makes room for n more items of keys of encBytes bytes in all, so
// that an itemBuf filled with a known number of keys is allocated once.
func (b *itemBuf[Acc]) grow(n, encBytes int) {
	b.items = slices.Grow(b.items, n)
	b.arena = slices.Grow(b.arena, encBytes)
}

// compare orders items by window, key group, then encoding.
func (b *itemBuf[Acc]) compare(x, y *runItem[Acc]) int {
	if c := cmp.Or(cmp.Compare(x.k, y.k), cmp.Compare(x.kg, y.kg)); c != 0 {
		return c
	}
	return compareEnc(b, x, b, y)
}

// compareEnc orders x of xb and y of yb by encoding: by prefix, then by
// the bytes when the prefixes are equal.
func compareEnc[Acc any](xb *itemBuf[Acc], x *runItem[Acc], yb *itemBuf[Acc], y *runItem[Acc]) int {
	if x.pfx != y.pfx {
		return cmp.Compare(x.pfx, y.pfx)
	}
	return bytes.Compare(xb.enc(x), yb.enc(y))
}

// sort sorts the items by window, key group and encoding, stably: the
// partials of a key stay in the order they were added.
func (b *itemBuf[Acc]) sort() {
	slices.SortStableFunc(b.items, func(x, y runItem[Acc]) int { return b.compare(&x, &y) })
}

// sortDistinct is sort for items that are each of a distinct key and
// window, which need no stable sort.
func (b *itemBuf[Acc]) sortDistinct() {
	slices.SortFunc(b.items, func(x, y runItem[Acc]) int { return b.compare(&x, &y) })
}

// runStore is the runs of a fast operator (see Runs above). It is used by
// the operator's goroutine only.
type runStore[K comparable, Acc any] struct {
	be      state.Backend
	chunks  *state.Value[[]byte]
	index   *state.Value[[]runRef]
	kgs     dataflow.KeyGroupRange
	acc     state.Codec[Acc]
	decode  func(enc []byte) K
	grid    grid
	pending []int64 // windows with runs or buffered accumulators, ascending
	spilled []int64 // the pending windows with runs, ascending

	// mirrored: the chunks from sequence mirrorFrom on, in key groups
	// mirrorKGs, are a checkpoint's image of the buffer (on the heap, see
	// mirror), which dropMirror deletes before the state changes again.
	mirrored   bool
	mirrorFrom uint64
	mirrorKGs  []uint16
	seq        uint64 // the next chunk's sequence

	run  runWriter    // the run being written
	q    itemBuf[Acc] // the queue of write, and the items of take
	mem  itemBuf[Acc] // the buffer's partials of the windows firing
	buf  []byte
	abuf []byte
	// chunk and index keys given to the backend in turn: each stays valid
	// until the next is set
	kbuf [2][18]byte
	kbi  int
}

// keyDecoder returns the inverse of keygroup.EncoderFor[K] for integer and
// string key types, nil for others.
func keyDecoder[K comparable]() func(enc []byte) K {
	if d := keygroup.DecoderFor[K](); d != nil {
		return func(enc []byte) K { return d(binary.BigEndian.Uint64(enc)) }
	}
	if reflect.TypeFor[K]().Kind() == reflect.String {
		return func(enc []byte) (k K) {
			*(*string)(unsafe.Pointer(&k)) = string(enc)
			return k
		}
	}
	return nil
}

// openRuns declares the runs' state on b and reads which windows have
// runs, from the index of each of the subtask's key groups.
func openRuns[K comparable, Acc any](b state.Backend, kgs dataflow.KeyGroupRange, g grid) (*runStore[K, Acc], error) {
	if err := state.CheckEncodable[Acc](); err != nil {
		return nil, fmt.Errorf("window accumulator: %w", err)
	}
	r := &runStore[K, Acc]{be: b, kgs: kgs, acc: state.Msgpack[Acc](), decode: keyDecoder[K](), grid: g}
	var err error
	if r.chunks, err = state.NewValue[[]byte](b, "window-runs", state.WithWriteThrough()); err != nil {
		return nil, err
	}
	if r.index, err = state.NewValue[[]runRef](b, "window-run-index"); err != nil {
		return nil, err
	}
	for kg := kgs.Start; kg < kgs.End; kg++ {
		refs, err := r.refs(kg)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			r.note(ref.K)
			r.spilled = addWindow(r.spilled, ref.K)
			r.seq = max(r.seq, ref.Seq+1)
		}
	}
	return r, nil
}

// refs returns key group kg's index, making kg's index key current.
func (r *runStore[K, Acc]) refs(kg int) ([]runRef, error) {
	r.be.SetCurrentKey(kg, r.indexKey(kg))
	refs, _, err := r.index.Get()
	if err != nil {
		return nil, fmt.Errorf("window runs of key group %d: %w", kg, err)
	}
	return refs, nil
}

// note records that window k has partial accumulators.
func (r *runStore[K, Acc]) note(k int64) { r.pending = addWindow(r.pending, k) }

// addWindow adds window k to ws, ascending, if it is not there.
func addWindow(ws []int64, k int64) []int64 {
	if i, ok := slices.BinarySearch(ws, k); !ok {
		ws = slices.Insert(ws, i, k)
	}
	return ws
}

// add queues key's partial accumulators (a cache entry of the buffer) for
// the next write: keyGroup and enc are the key's.
func (r *runStore[K, Acc]) add(s []gslot[Acc], keyGroup int, enc []byte) {
	for _, x := range s {
		r.q.add(keyGroup, x.k, enc, x.acc)
	}
}

// write writes the queued accumulators as runs, one per key group and
// window, and empties the queue.
func (r *runStore[K, Acc]) write() error {
	items := r.q.items
	slices.SortFunc(items, func(a, b runItem[Acc]) int {
		if c := cmp.Compare(a.kg, b.kg); c != 0 {
			return c
		}
		return r.q.compare(&a, &b)
	})
	for i := 0; i < len(items); {
		kg := items[i].kg
		refs, err := r.refs(int(kg))
		if err != nil {
			return err
		}
		for i < len(items) && items[i].kg == kg {
			j := i
			for j < len(items) && items[j].kg == kg && items[j].k == items[i].k {
				j++
			}
			if refs, err = r.writeRun(int(kg), items[i:j], refs); err != nil {
				return err
			}
			r.note(items[i].k)
			r.spilled = addWindow(r.spilled, items[i].k)
			i = j
		}
		r.be.SetCurrentKey(int(kg), r.indexKey(int(kg)))
		if err := r.index.Update(refs); err != nil {
			return fmt.Errorf("window runs of key group %d: %w", kg, err)
		}
	}
	r.q.reset()
	return nil
}

// writeRun writes the items of one key group and window in chunks and
// returns refs with theirs appended.
func (r *runStore[K, Acc]) writeRun(kg int, items []runItem[Acc], refs []runRef) ([]runRef, error) {
	r.beginRun(kg, items[0].k, refs)
	for i := range items {
		if err := r.addToRun(r.q.enc(&items[i]), items[i].acc); err != nil {
			return r.run.refs, err
		}
	}
	return r.endRun()
}

// runWriter is the run being written: key group kg, window k (w), the
// chunk being filled (b, holding n items) and the refs of the group with
// those of the chunks written so far appended.
type runWriter struct {
	kg   int
	k    int64
	w    Window
	n    int
	refs []runRef
}

// beginRun starts a run of window k in key group kg, whose refs are refs.
func (r *runStore[K, Acc]) beginRun(kg int, k int64, refs []runRef) {
	r.run = runWriter{kg: kg, k: k, w: r.grid.window(k), refs: refs}
	r.startChunk()
}

func (r *runStore[K, Acc]) startChunk() {
	b := append(r.buf[:0], runVersion)
	b = binary.AppendVarint(b, int64(r.run.w.Start))
	r.buf = binary.AppendUvarint(b, uint64(r.run.w.End)-uint64(r.run.w.Start))
	r.run.n = 0
}

// addToRun adds the partial accumulator acc of the key of encoding enc to
// the run, writing its chunk first when it is full.
func (r *runStore[K, Acc]) addToRun(enc []byte, acc Acc) error {
	if r.run.n > 0 && len(r.buf) >= runChunkBytes {
		if err := r.writeChunk(); err != nil {
			return err
		}
		r.startChunk()
	}
	var err error
	if r.abuf, err = r.acc.Append(r.abuf[:0], acc); err != nil {
		return fmt.Errorf("accumulator of window %v: %w", r.run.w, err)
	}
	b := binary.AppendUvarint(r.buf, uint64(len(enc)))
	b = append(b, enc...)
	b = binary.AppendUvarint(b, uint64(len(r.abuf)))
	r.buf = append(b, r.abuf...)
	r.run.n++
	return nil
}

// endRun writes the run's last chunk and returns the refs.
func (r *runStore[K, Acc]) endRun() ([]runRef, error) {
	if r.run.n > 0 {
		if err := r.writeChunk(); err != nil {
			return r.run.refs, err
		}
	}
	return r.run.refs, nil
}

func (r *runStore[K, Acc]) writeChunk() error {
	ref := runRef{K: r.run.k, Seq: r.seq}
	r.seq++
	r.be.SetCurrentKey(r.run.kg, r.chunkKey(r.run.kg, ref))
	if err := r.chunks.Update(slices.Clone(r.buf)); err != nil {
		return fmt.Errorf("window run of key group %d, window %v: %w", r.run.kg, r.run.w, err)
	}
	r.run.refs = append(r.run.refs, ref)
	return nil
}

// mirror writes the partial accumulators of n keys as runs that are an
// image of the buffer for the checkpoint being taken (on the heap), which
// dropMirror deletes before the state changes again. entry(i) returns the
// key group, encoding (valid until the next call) and windows of key i.
// The keys are grouped by key group (counted, not sorted) and each group's
// runs are written window by window; a run is not in order of encoding,
// which take, which reads runs, does not need.
func (r *runStore[K, Acc]) mirror(n int, entry func(i int) (int, []byte, []gslot[Acc])) error {
	r.mirrored, r.mirrorFrom, r.mirrorKGs = true, r.seq, r.mirrorKGs[:0]
	if n == 0 {
		return nil
	}
	groups := r.kgs.End - r.kgs.Start
	first := make([]int32, groups+1) // group g's keys are order[first[g]:first[g+1]]
	kgOf := make([]uint16, n)
	for i := range n {
		kg, _, _ := entry(i)
		kgOf[i] = uint16(kg)
		first[kg-r.kgs.Start+1]++
	}
	for g := range groups {
		first[g+1] += first[g]
	}
	order := make([]int32, n)
	next := slices.Clone(first[:groups])
	for i, kg := range kgOf {
		g := int(kg) - r.kgs.Start
		order[next[g]] = int32(i)
		next[g]++
	}
	var ks []int64
	for g := range groups {
		keys := order[first[g]:first[g+1]]
		ks = ks[:0]
		for _, i := range keys {
			_, _, s := entry(int(i))
			for _, x := range s {
				ks = addWindow(ks, x.k)
			}
		}
		if len(ks) == 0 {
			continue
		}
		kg := r.kgs.Start + g
		refs, err := r.refs(kg)
		if err != nil {
			return err
		}
		for _, k := range ks {
			r.beginRun(kg, k, refs)
			for _, i := range keys {
				_, enc, s := entry(int(i))
				if j, ok := findGslot(s, k); ok {
					if err := r.addToRun(enc, s[j].acc); err != nil {
						return err
					}
				}
			}
			if refs, err = r.endRun(); err != nil {
				return err
			}
		}
		r.be.SetCurrentKey(kg, r.indexKey(kg))
		if err := r.index.Update(refs); err != nil {
			return fmt.Errorf("window runs of key group %d: %w", kg, err)
		}
		r.mirrorKGs = append(r.mirrorKGs, uint16(kg))
	}
	return nil
}

// dropMirror deletes the runs of the last mirror (see write), if they are
// still there.
func (r *runStore[K, Acc]) dropMirror() error {
	if !r.mirrored {
		return nil
	}
	r.mirrored = false
	for _, kg := range r.mirrorKGs {
		refs, err := r.refs(int(kg))
		if err != nil {
			return err
		}
		keep := refs[:0:0]
		for _, ref := range refs {
			if ref.Seq < r.mirrorFrom {
				keep = append(keep, ref)
				continue
			}
			r.be.SetCurrentKey(int(kg), r.chunkKey(int(kg), ref))
			if err := r.chunks.Clear(); err != nil {
				return fmt.Errorf("window runs of key group %d: %w", kg, err)
			}
		}
		r.be.SetCurrentKey(int(kg), r.indexKey(int(kg)))
		if len(keep) == 0 {
			err = r.index.Clear()
		} else {
			err = r.index.Update(keep)
		}
		if err != nil {
			return fmt.Errorf("window runs of key group %d: %w", kg, err)
		}
	}
	return nil
}

// chunkKey returns the key of chunk ref of key group kg, in the buffer
// the backend's current key is not in.
func (r *runStore[K, Acc]) chunkKey(kg int, ref runRef) []byte {
	r.kbi = 1 - r.kbi
	kb := r.kbuf[r.kbi][:0]
	kb = binary.BigEndian.AppendUint16(kb, uint16(kg))
	kb = binary.BigEndian.AppendUint64(kb, uint64(ref.K))
	return binary.BigEndian.AppendUint64(kb, ref.Seq)
}

// read appends the items of the chunk ref of key group kg to r.items, and
// deletes the chunk.
func (r *runStore[K, Acc]) read(kg int, ref runRef) error {
	r.be.SetCurrentKey(kg, r.chunkKey(kg, ref))
	b, ok, err := r.chunks.Get()
	if err == nil && !ok {
		err = fmt.Errorf("%w: chunk %d of window %d missing", errSlots, ref.Seq, ref.K)
	}
	if err == nil {
		err = r.decodeChunk(kg, ref.K, b)
	}
	if err == nil {
		err = r.chunks.Clear()
	}
	if err != nil {
		return fmt.Errorf("window runs of key group %d: %w", kg, err)
	}
	return nil
}

func (r *runStore[K, Acc]) decodeChunk(kg int, k int64, b []byte) error {
	if len(b) == 0 || b[0] != runVersion {
		return fmt.Errorf("%w: run chunk not version %d", errSlots, runVersion)
	}
	b = b[1:]
	start, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: run chunk: bad window", errSlots)
	}
	b = b[n:]
	size, n := binary.Uvarint(b)
	if n <= 0 {
		return fmt.Errorf("%w: run chunk: bad window", errSlots)
	}
	b = b[n:]
	w := Window{Start: dataflow.Timestamp(start), End: dataflow.Timestamp(uint64(start) + size)}
	if got, err := r.grid.index(w); err != nil {
		return err
	} else if got != k {
		return fmt.Errorf("%w: run chunk of window %v listed as window %d", errSlots, w, k)
	}
	for len(b) > 0 {
		var enc, ab []byte
		var ok bool
		if enc, b, ok = cutUvarintPrefixed(b); !ok {
			return fmt.Errorf("%w: run chunk: bad key", errSlots)
		}
		if ab, b, ok = cutUvarintPrefixed(b); !ok {
			return fmt.Errorf("%w: run chunk: bad accumulator", errSlots)
		}
		acc, err := r.acc.Decode(ab)
		if err != nil {
			return fmt.Errorf("%w: accumulator of window %v: %v", errSlots, w, err)
		}
		r.q.add(kg, k, enc, acc)
	}
	return nil
}

func cutUvarintPrefixed(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// take reads and deletes the runs of window k in key group kg (every run
// when all) and returns their items, merged by key with merge, in order of
// window and key; the items, and their encodings in r.q, are valid until
// the next call of add or take.
func (r *runStore[K, Acc]) take(kg int, k int64, all bool, merge func(a, b Acc) Acc) ([]runItem[Acc], error) {
	r.q.reset()
	refs, err := r.refs(kg)
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	keep := refs[:0:0]
	for _, ref := range refs {
		if !all && ref.K != k {
			keep = append(keep, ref)
			continue
		}
		if err := r.read(kg, ref); err != nil {
			return nil, err
		}
	}
	if len(keep) == len(refs) {
		return nil, nil
	}
	r.be.SetCurrentKey(kg, r.indexKey(kg))
	if len(keep) == 0 {
		err = r.index.Clear()
	} else {
		err = r.index.Update(keep)
	}
	if err != nil {
		return nil, fmt.Errorf("window runs of key group %d: %w", kg, err)
	}
	// Each run is in key order; their concatenation is sorted stably, so
	// that partials of a key merge in the order they were written.
	r.q.sort()
	items := r.q.items
	out := items[:0]
	for i := range items {
		if n := len(out); n > 0 && r.q.compare(&out[n-1], &items[i]) == 0 {
			out[n-1].acc = merge(out[n-1].acc, items[i].acc)
			continue
		}
		out = append(out, items[i])
	}
	clear(items[len(out):])
	// The queue is empty again; out and the arena stay as they are until
	// the next add or take.
	r.q.items = items[:0]
	return out, nil
}

// fire calls emit with the merged accumulator of every key of window k,
// key group by key group, in order of encoding: from the window's runs,
// which it reads and deletes, and from r.mem, which holds the partials
// taken from the buffer, sorted (itemBuf.sortDistinct), each key once a
// window.
// The encoding passed to emit is valid during the call.
func (r *runStore[K, Acc]) fire(k int64, merge func(a, b Acc) Acc, emit func(enc []byte, acc Acc)) error {
	m := r.mem.items
	mi, _ := slices.BinarySearchFunc(m, k, func(it runItem[Acc], k int64) int { return cmp.Compare(it.k, k) })
	for kg := r.kgs.Start; kg < r.kgs.End; kg++ {
		mj := mi
		for mj < len(m) && m[mj].k == k && int(m[mj].kg) == kg {
			mj++
		}
		runs, err := r.take(kg, k, false, merge)
		if err != nil {
			return err
		}
		// Two lists in order of encoding, each key once: merge them.
		i, j := 0, mi
		for i < len(runs) || j < mj {
			var c int
			switch {
			case i == len(runs):
				c = 1
			case j == mj:
				c = -1
			default:
				c = compareEnc(&r.q, &runs[i], &r.mem, &m[j])
			}
			switch {
			case c < 0:
				emit(r.q.enc(&runs[i]), runs[i].acc)
				i++
			case c > 0:
				emit(r.mem.enc(&m[j]), m[j].acc)
				j++
			default:
				emit(r.q.enc(&runs[i]), merge(runs[i].acc, m[j].acc))
				i, j = i+1, j+1
			}
		}
		mi = mj
	}
	return nil
}

// due returns the pending windows whose end the watermark wm reached, and
// of those the ones with runs (spilled), and drops them from pending: the
// caller fires them.
func (r *runStore[K, Acc]) due(wm dataflow.Timestamp) (due, spilled []int64) {
	end := func(ws []int64) int {
		n := 0
		for n < len(ws) && r.grid.window(ws[n]).MaxTimestamp() <= wm {
			n++
		}
		return n
	}
	n, m := end(r.pending), end(r.spilled)
	due, spilled = slices.Clone(r.pending[:n]), slices.Clone(r.spilled[:m])
	r.pending = slices.Delete(r.pending, 0, n)
	r.spilled = slices.Delete(r.spilled, 0, m)
	return due, spilled
}
