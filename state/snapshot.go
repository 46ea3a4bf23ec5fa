package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// Snapshot is the captured state of a backend at one checkpoint. Write it
// exactly once (or Discard it), from any goroutine, while the backend goes on.
type Snapshot struct {
	hdr    header
	states []stateDesc
	parts  []snapPart
	byName map[string]int

	store *badgerStore
	txn   *badger.Txn // badger: the store as of the capture
	ttls  []int64     // per state index, to skip expired store rows
	now   int64

	used atomic.Bool
	done func()
}

// CheckpointID is the id the snapshot was taken for.
func (s *Snapshot) CheckpointID() int64 { return s.hdr.id }

// Full reports whether the snapshot is a full base (else a delta on its parent).
func (s *Snapshot) Full() bool { return s.hdr.full }

// ParentID is the checkpoint id of the snapshot a delta applies on; 0 for a base.
func (s *Snapshot) ParentID() int64 { return s.hdr.parent }

// Write writes the snapshot to w and releases it. It may run on another
// goroutine than the backend's, concurrently with processing. It returns the
// number of bytes written.
func (s *Snapshot) Write(ctx context.Context, w io.Writer) (int64, error) {
	if !s.used.CompareAndSwap(false, true) {
		return 0, ErrSnapshotUsed
	}
	defer s.release()
	rw := &rowWriter{ctx: ctx, w: w}
	if err := rw.raw(s.hdr.encode()); err != nil {
		return rw.n, err
	}
	st := binary.AppendUvarint(nil, uint64(len(s.states)))
	for _, d := range s.states {
		st = appendLenPrefixed(st, []byte(d.name))
		st = append(st, byte(d.kind))
	}
	if err := rw.block(blockStates, st); err != nil {
		return rw.n, err
	}
	if s.hdr.full && s.txn != nil {
		if err := s.writeStore(rw); err != nil {
			return rw.n, err
		}
	}
	for _, p := range s.parts {
		if err := p.write(rw, s); err != nil {
			return rw.n, err
		}
	}
	err := rw.finish()
	return rw.n, err
}

// Discard releases a snapshot that will not be written.
func (s *Snapshot) Discard() {
	if s.used.CompareAndSwap(false, true) {
		s.release()
	}
}

func (s *Snapshot) release() {
	if s.txn != nil {
		s.txn.Discard()
	}
	s.done()
}

// snapPart is one state's captured data; write runs on the writing goroutine
// and reads only frozen entries.
type snapPart interface {
	write(rw *rowWriter, s *Snapshot) error
	// covers reports whether key's rows come from this part rather than the store.
	covers(key []byte) bool
}

func (c *core) Snapshot(checkpointID int64, opts SnapshotOptions) (*Snapshot, error) {
	if c.closed {
		return nil, c.errf("", ErrClosed)
	}
	if c.haveBase && checkpointID <= c.lastID {
		return nil, c.errf("", fmt.Errorf("%w: checkpoint id %d not after %d", ErrInvalidConfig, checkpointID, c.lastID))
	}
	// On the heap a base is also due once the deltas since the last one hold
	// more changes than the state has entries: a restore then reads at most
	// about twice the state, and the base costs no more to write than those
	// deltas did. (On Badger, MaxDeltaKeys bounds the deltas.)
	chain := c.chainChanges + c.changedCount
	full := opts.Full || !c.haveBase || !c.tracking || c.count+1 >= c.cfg.FullEvery ||
		c.store == nil && chain > c.entries
	s := &Snapshot{
		hdr: header{
			full: full, id: checkpointID, maxPar: c.cfg.MaxParallelism,
			start: c.cfg.KeyGroups.Start, end: c.cfg.KeyGroups.End, uid: c.cfg.OperatorUID,
		},
		byName: map[string]int{},
		store:  c.store,
		now:    c.nowNanos(),
	}
	if full {
		s.hdr.lineage = rand.Uint64() | 1
	} else {
		s.hdr.lineage, s.hdr.parent = c.lineage, c.lastID
	}
	for _, t := range c.order {
		m := t.meta()
		idx := len(s.states)
		s.states = append(s.states, stateDesc{m.name, m.kind})
		s.ttls = append(s.ttls, m.ttl)
		s.byName[m.name] = idx
		var p snapPart
		if full {
			p = t.captureFull(s.now)
		} else {
			p = t.captureDelta()
		}
		setIndex(p, idx)
		s.parts = append(s.parts, p)
	}
	if full {
		for name, raw := range c.pending {
			idx := len(s.states)
			s.states = append(s.states, stateDesc{name, raw.kind})
			s.ttls = append(s.ttls, 0)
			s.byName[name] = idx
			s.parts = append(s.parts, &rawPart{idx: idx, rows: raw.rows})
		}
		if c.store != nil {
			for name, k := range c.known {
				if _, ok := s.byName[name]; !ok {
					s.byName[name] = len(s.states)
					s.states = append(s.states, stateDesc{name, k})
					s.ttls = append(s.ttls, 0)
				}
			}
		}
	}
	if c.store != nil {
		s.txn = c.store.db.NewTransaction(false)
	}
	for _, t := range c.order {
		t.endEpoch(true)
	}
	c.pinEpoch = c.epoch
	c.epoch++
	c.tracking, c.haveBase, c.lastID, c.changedCount = true, true, checkpointID, 0
	if full {
		c.lineage, c.count, c.chainChanges = s.hdr.lineage, 0, 0
	} else {
		c.count, c.chainChanges = c.count+1, chain
	}
	c.inflight.Add(1)
	c.pins.Add(1)
	s.done = func() {
		c.pins.Add(-1)
		c.inflight.Done()
	}
	return s, nil
}

func setIndex(p snapPart, idx int) {
	switch p := p.(type) {
	case interface{ setIdx(int) }:
		p.setIdx(idx)
	}
}

// fullPart holds every live entry of a state (heap) or the dirty cache
// entries that override the store (badger).
type fullPart[S any] struct {
	idx     int
	ops     valueOps[S]
	entries []*entry[S]
	keys    map[string]struct{} // badger: built lazily by the writer
}

func (p *fullPart[S]) setIdx(i int) { p.idx = i }

func (p *fullPart[S]) covers(key []byte) bool {
	if p.keys == nil {
		p.keys = make(map[string]struct{}, len(p.entries))
		for _, e := range p.entries {
			p.keys[e.key] = struct{}{}
		}
	}
	_, ok := p.keys[string(key)]
	return ok
}

func (p *fullPart[S]) write(rw *rowWriter, _ *Snapshot) error {
	for _, e := range p.entries {
		if e.absent {
			continue
		}
		if err := writeEntry(rw, p.idx, p.ops, e); err != nil {
			return err
		}
	}
	return nil
}

func writeEntry[S any](rw *rowWriter, idx int, ops valueOps[S], e *entry[S]) error {
	if ops.isMap() {
		var err error
		rw.tmp, err = rw.tmp[:0], ops.mapRows(e.v, rw.tmp, func(mk, payload []byte) error {
			return rw.row(opMapPut, idx, e.kg, e.key, mk, e.ts, payload)
		})
		return err
	}
	var err error
	rw.tmp, err = ops.encode(rw.tmp[:0], e.v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCodec, err)
	}
	return rw.row(opPut, idx, e.kg, e.key, nil, e.ts, rw.tmp)
}

func (t *table[S]) captureFull(now int64) snapPart {
	p := &fullPart[S]{ops: t.ops}
	if t.c.store != nil {
		// Dirty entries override the store, and so do evicted ones whose batch
		// may not be committed when the snapshot's transaction opens.
		for _, e := range t.flushing {
			if _, ok := t.m[e.key]; !ok {
				p.entries = append(p.entries, e)
			}
		}
		for _, e := range t.m {
			if e.dirty {
				p.entries = append(p.entries, e)
			}
		}
		return p
	}
	p.entries = make([]*entry[S], 0, len(t.m))
	for _, e := range t.m {
		if t.expired(e, now) {
			t.remove(e) // TTL cleanup; deleting while ranging is safe
			continue
		}
		p.entries = append(p.entries, e)
	}
	return p
}

type keyRef struct {
	key string
	kg  uint16
}

// deltaPart holds the changes since the last snapshot: the epoch's lists of
// changed entries (which no longer change) and of deleted keys (heap), taken
// over whole at the capture; with badger, the keys evicted after changing,
// found at the capture in the set being flushed or else read from the store
// as of the capture.
type deltaPart[S any] struct {
	idx       int
	ops       valueOps[S]
	bname     []byte
	changed   []*entry[S]
	dels      []keyRef
	fromStore []keyRef
	entries   []*entry[S]
	// repeat: a key may be in the lists more than once (it was deleted or
	// evicted in the epoch): only its last change is written.
	repeat bool
}

func (p *deltaPart[S]) setIdx(i int)       { p.idx = i }
func (p *deltaPart[S]) covers([]byte) bool { return false }

// write writes each changed key once, as its last change: a delete and its
// rows. A file must not name a key twice (Badger's restore deletes a key's
// rows from the store, not from the batch it is writing), so with repeats
// it goes from the latest change back and skips keys already written.
func (p *deltaPart[S]) write(rw *rowWriter, s *Snapshot) error {
	var seen map[string]struct{}
	if p.repeat {
		seen = make(map[string]struct{}, len(p.changed)+len(p.entries))
	}
	first := func(key string) bool {
		if seen == nil {
			return true
		}
		if _, ok := seen[key]; ok {
			return false
		}
		seen[key] = struct{}{}
		return true
	}
	for _, list := range [2][]*entry[S]{p.changed, p.entries} {
		for i := len(list) - 1; i >= 0; i-- {
			e := list[i]
			if e == nil || !first(e.key) {
				continue // nil: evicted since, below
			}
			if err := rw.row(opDel, p.idx, e.kg, e.key, nil, 0, nil); err != nil {
				return err
			}
			if e.absent {
				continue
			}
			if err := writeEntry(rw, p.idx, p.ops, e); err != nil {
				return err
			}
		}
	}
	for _, d := range p.fromStore {
		if !first(d.key) {
			continue
		}
		if err := rw.row(opDel, p.idx, d.kg, d.key, nil, 0, nil); err != nil {
			return err
		}
		err := s.store.readKey(s.txn, d.kg, p.bname, []byte(d.key), p.ops.isMap(), func(mk []byte, ts int64, payload []byte) error {
			op := byte(opPut)
			if p.ops.isMap() {
				op = opMapPut
			}
			return rw.row(op, p.idx, d.kg, d.key, mk, ts, payload)
		})
		if err != nil {
			return err
		}
	}
	for _, d := range p.dels {
		if !first(d.key) {
			continue
		}
		if err := rw.row(opDel, p.idx, d.kg, d.key, nil, 0, nil); err != nil {
			return err
		}
	}
	return nil
}

// captureDelta runs at Snapshot, on the owner. It costs nothing per changed
// key: the lists go to the writer, and new ones start. Only badger's evicted
// keys are looked up, in the set being flushed.
func (t *table[S]) captureDelta() snapPart {
	p := &deltaPart[S]{ops: t.ops, bname: t.bname, changed: t.changed, dels: t.removed, repeat: t.dropped}
	t.changed, t.removed, t.dropped = make([]*entry[S], 0, len(p.changed)/2), nil, false
	for _, d := range t.evicted {
		switch f := t.flushing[d.key]; {
		case f == nil:
			p.fromStore = append(p.fromStore, d)
		case f.absent:
			p.dels = append(p.dels, d)
		default:
			p.entries = append(p.entries, f)
		}
	}
	t.evicted = nil
	return p
}

// rawState holds restored rows of a state not declared yet (heap backend).
type rawState struct {
	kind kind
	rows map[string]*rawRow
}

type rawRow struct {
	kg     uint16
	ts     int64
	val    []byte
	mapVal map[string][]byte
	// gone: deleted. The row stays, so that the put that follows a key's
	// delete in a delta reuses it instead of a map delete and insert.
	gone bool
}

func (r *rawState) apply(op byte, kg uint16, key, mapKey []byte, ts int64, payload []byte) {
	row := r.rows[string(key)]
	switch op {
	case opDel:
		if row != nil && !row.gone {
			row.gone = true
			row.val = row.val[:0]
			clear(row.mapVal)
		}
	case opPut:
		if row == nil {
			row = &rawRow{}
			r.rows[string(key)] = row
		}
		row.kg, row.ts, row.gone, row.mapVal = kg, ts, false, nil
		row.val = append(row.val[:0], payload...)
	case opMapPut:
		if row == nil {
			row = &rawRow{}
			r.rows[string(key)] = row
		}
		if row.gone || row.mapVal == nil {
			row.gone, row.ts, row.val = false, ts, nil
			if row.mapVal == nil {
				row.mapVal = map[string][]byte{}
			}
		}
		row.kg, row.ts = kg, max(row.ts, ts)
		row.mapVal[string(mapKey)] = append([]byte(nil), payload...)
	}
}

func (r *rawState) replay(t tableAny) error {
	for key, row := range r.rows {
		if row.gone {
			continue
		}
		if row.mapVal == nil {
			if err := t.applyRow(opPut, row.kg, key, row.ts, row.val); err != nil {
				return err
			}
			continue
		}
		for _, v := range row.mapVal {
			if err := t.applyRow(opMapPut, row.kg, key, row.ts, v); err != nil {
				return err
			}
		}
	}
	return nil
}

type rawPart struct {
	idx  int
	rows map[string]*rawRow
}

func (p *rawPart) covers([]byte) bool { return false }

func (p *rawPart) write(rw *rowWriter, _ *Snapshot) error {
	for key, row := range p.rows {
		if row.gone {
			continue
		}
		if row.mapVal == nil {
			if err := rw.row(opPut, p.idx, row.kg, key, nil, row.ts, row.val); err != nil {
				return err
			}
			continue
		}
		for mk, v := range row.mapVal {
			if err := rw.row(opMapPut, p.idx, row.kg, key, []byte(mk), row.ts, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Restore implements Backend.
func (c *core) Restore(ctx context.Context, chains ...Chain) (err error) {
	if c.closed {
		return c.errf("", ErrClosed)
	}
	if c.used || c.haveBase || c.entries > 0 {
		return c.errf("", fmt.Errorf("%w: restore into a backend already in use", ErrInvalidConfig))
	}
	defer func() {
		if err != nil {
			c.wipe()
		}
	}()
	var covered []keygroup.Range
	for ci, chain := range chains {
		var base header
		var prev header
		for fi, r := range chain {
			fr, err := openFile(r)
			if err != nil {
				return c.errf("", fmt.Errorf("chain %d file %d: %w", ci, fi, err))
			}
			h := fr.hdr
			if h.uid != c.cfg.OperatorUID || h.maxPar != c.cfg.MaxParallelism {
				return c.errf("", fmt.Errorf("chain %d file %d: %w: snapshot of %q with max parallelism %d",
					ci, fi, ErrWrongOperator, h.uid, h.maxPar))
			}
			if fi == 0 {
				if !h.full {
					return c.errf("", fmt.Errorf("chain %d: %w: first file is a delta on %d", ci, ErrBadChain, h.parent))
				}
				mine := keygroup.Range{Start: max(h.start, c.cfg.KeyGroups.Start), End: min(h.end, c.cfg.KeyGroups.End)}
				for _, o := range covered {
					if max(o.Start, mine.Start) < min(o.End, mine.End) {
						return c.errf("", fmt.Errorf("chain %d: %w: %v and %v", ci, ErrRestoreOverlap, o, mine))
					}
				}
				if mine.Start < mine.End {
					covered = append(covered, mine)
				}
				base = h
			} else if h.full || h.parent != prev.id || h.lineage != base.lineage || h.start != base.start || h.end != base.end {
				return c.errf("", fmt.Errorf("chain %d file %d: %w: snapshot %d (parent %d) does not follow %d",
					ci, fi, ErrBadChain, h.id, h.parent, prev.id))
			}
			prev = h
			if err := c.restoreFile(ctx, fr); err != nil {
				return c.errf("", fmt.Errorf("chain %d file %d (checkpoint %d): %w", ci, fi, h.id, err))
			}
		}
	}
	return nil
}

func (c *core) restoreFile(ctx context.Context, fr *fileReader) error {
	rng := c.cfg.KeyGroups
	now := c.nowNanos()
	for _, st := range fr.states {
		if t, ok := c.states[st.name]; ok && t.meta().kind != st.kind {
			return fmt.Errorf("state %q: %w: restored as %s, declared as %s", st.name, ErrStateMismatch, st.kind, t.meta().kind)
		}
		if st.kind < kindValue || st.kind > kindAggregating {
			return corrupt("state %q has unknown kind %d", st.name, st.kind)
		}
	}
	if c.store != nil {
		return c.store.restoreFile(ctx, c, fr)
	}
	return fr.rowsTo(ctx, func(op byte, st stateDesc, kg uint16, key, mapKey []byte, ts int64, payload []byte) error {
		if !rng.Contains(int(kg)) {
			return nil
		}
		if (op == opMapPut) != (st.kind == kindMap) && op != opDel {
			return corrupt("state %q: row op %d for a %s", st.name, op, st.kind)
		}
		if t, ok := c.states[st.name]; ok {
			if m := t.meta(); op != opDel && m.ttl > 0 && now-ts >= m.ttl {
				return nil // expired: cleaned up on restore
			}
			if err := t.applyRow(op, kg, string(key), ts, payload); err != nil {
				return fmt.Errorf("state %q: %w", st.name, err)
			}
			return nil
		}
		raw := c.pending[st.name]
		if raw != nil && raw.kind != st.kind {
			return fmt.Errorf("state %q: %w: restored as %s and as %s", st.name, ErrStateMismatch, raw.kind, st.kind)
		}
		if raw == nil {
			raw = &rawState{kind: st.kind, rows: map[string]*rawRow{}}
			c.pending[st.name] = raw
		}
		raw.apply(op, kg, key, mapKey, ts, payload)
		return nil
	})
}

// wipe empties the backend after a failed restore.
func (c *core) wipe() {
	for _, t := range c.order {
		t.reset()
	}
	c.entries = 0
	c.pending = map[string]*rawState{}
	c.known = map[string]kind{}
	if c.store != nil {
		_ = c.store.dropAll(c)
	}
}
