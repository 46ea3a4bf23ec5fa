package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
)

func (st *badgerStore) appendKey(dst []byte, kg uint16, bname, key []byte) []byte {
	dst = append(dst, st.prefix...)
	dst = binary.BigEndian.AppendUint16(dst, kg)
	dst = append(dst, bname...)
	return appendLenPrefixed(dst, key)
}

// readKey calls fn with the rows of one key: one row (nil map key) for a
// non-map state, every entry for a map state.
func (st *badgerStore) readKey(txn *badger.Txn, kg uint16, bname, key []byte, isMap bool, fn func(mk []byte, ts int64, payload []byte) error) error {
	_, err := st.readKeyBuf(nil, txn, kg, bname, key, isMap, fn)
	return err
}

// readKeyBuf is readKey building the store key in buf, which it returns for
// reuse (the owner's reads do not allocate it each time).
func (st *badgerStore) readKeyBuf(buf []byte, txn *badger.Txn, kg uint16, bname, key []byte, isMap bool, fn func(mk []byte, ts int64, payload []byte) error) ([]byte, error) {
	k := st.appendKey(buf[:0], kg, bname, key)
	return k, st.readRows(txn, k, isMap, fn)
}

func (st *badgerStore) readRows(txn *badger.Txn, k []byte, isMap bool, fn func(mk []byte, ts int64, payload []byte) error) error {
	if !isMap {
		item, err := txn.Get(k)
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return callRow(nil, v, fn) })
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: k, PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		mk := item.Key()[len(k):]
		if err := item.Value(func(v []byte) error { return callRow(mk, v, fn) }); err != nil {
			return err
		}
	}
	return nil
}

func callRow(mk, v []byte, fn func(mk []byte, ts int64, payload []byte) error) error {
	ts, n := binary.Varint(v)
	if n <= 0 {
		return fmt.Errorf("%w: bad value in store", ErrCorrupt)
	}
	return fn(mk, ts, v[n:])
}

// load reads the current key from the store into the cache; a missing key is
// cached as absent so that the following write does not look again.
func (t *table[S]) load() (*entry[S], error) {
	c := t.c
	st := c.store
	if c.entries >= st.cacheEntries {
		if err := st.shrink(c); err != nil {
			return nil, err
		}
	}
	if f := t.flushing[string(c.key)]; f != nil {
		// Evicted and not committed yet: take it back (a copy, as a snapshot
		// may hold f), clean since the batch in flight writes it.
		e := &entry[S]{kg: f.kg, v: t.ops.clone(f.v), ts: f.ts, absent: f.absent, ver: c.epoch}
		e.setKeyString(f.key)
		t.m[e.key] = e
		c.entries++
		return e, nil
	}
	e := &entry[S]{kg: c.kg, ver: c.epoch, absent: true}
	if !st.written {
		// Nothing was ever written to the store (NewBadger starts it
		// empty): every key is absent, and a lookup would only find so.
		e.setKey(c.key)
		t.m[e.key] = e
		c.entries++
		return e, nil
	}
	var err error
	st.kbuf, err = st.readKeyBuf(st.kbuf, st.rtxn, c.kg, t.bname, c.key, t.ops.isMap(), func(mk []byte, ts int64, payload []byte) error {
		e.absent = false
		e.ts = max(e.ts, ts)
		if mk != nil {
			return t.ops.mapAdd(&e.v, payload)
		}
		v, err := t.ops.decode(payload)
		e.v = v
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: load: %v", ErrCodec, err)
	}
	e.setKey(c.key)
	t.m[e.key] = e
	c.entries++
	return e, nil
}

// blindEntry caches the current key, not cached, as absent without reading
// the store (see table.lookup), making room first as load does.
func (t *table[S]) blindEntry() (*entry[S], error) {
	c := t.c
	if c.entries >= c.store.cacheEntries {
		if err := c.store.shrink(c); err != nil {
			return nil, err
		}
	}
	e := &entry[S]{kg: c.kg, ver: c.epoch, absent: true}
	e.setKey(c.key)
	t.m[e.key] = e
	c.entries++
	return e, nil
}

// batchWriter collects a flush; keys and values are carved out of arenas that
// are not reused until the batch is written. With wb set (restore) rows go
// straight to it; without (eviction), they wait in rows and commit writes
// them on the background goroutine, so that the task does not pay for
// Badger's transaction bookkeeping.
type batchWriter struct {
	st          *badgerStore
	wb          *badger.WriteBatch
	rows        []batchRow
	arena       []byte
	tmp, kb, pb []byte
}

// batchRow is one row of a deferred batch: a set, or a delete.
type batchRow struct {
	key, val  []byte
	expiresAt uint64
	del       bool
}

func (w *batchWriter) set(key, val []byte, expiresAt uint64) error {
	w.st.written = true
	if w.wb != nil {
		e := badger.NewEntry(key, val)
		e.ExpiresAt = expiresAt
		return w.wb.SetEntry(e)
	}
	w.rows = append(w.rows, batchRow{key: key, val: val, expiresAt: expiresAt})
	return nil
}

func (w *batchWriter) del(key []byte) error {
	if w.wb != nil {
		return w.wb.Delete(key)
	}
	w.rows = append(w.rows, batchRow{key: key, del: true})
	return nil
}

// commit writes the deferred rows in one WriteBatch and waits for it.
func (w *batchWriter) commit() error {
	wb := w.st.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range w.rows {
		r := &w.rows[i]
		var err error
		if r.del {
			err = wb.Delete(r.key)
		} else {
			e := badger.NewEntry(r.key, r.val)
			e.ExpiresAt = r.expiresAt
			err = wb.SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	return wb.Flush()
}

func (w *batchWriter) alloc(b []byte) []byte {
	if cap(w.arena)-len(w.arena) < len(b) {
		w.arena = make([]byte, 0, max(1<<20, len(b)))
	}
	at := len(w.arena)
	w.arena = append(w.arena, b...)
	return w.arena[at:len(w.arena):len(w.arena)]
}

func (w *batchWriter) value(ts int64, payload []byte) []byte {
	w.tmp = binary.AppendVarint(w.tmp[:0], ts)
	w.tmp = append(w.tmp, payload...)
	return w.alloc(w.tmp)
}

// flushEntry adds e's rows to the batch and marks it clean.
func (t *table[S]) flushEntry(w *batchWriter, e *entry[S]) error {
	kb := w.st.appendKey(w.kb[:0], e.kg, t.bname, unsafe.Slice(unsafe.StringData(e.key), len(e.key)))
	w.kb = kb
	if !t.ops.isMap() {
		var err error
		if e.absent {
			err = w.del(w.alloc(kb))
		} else {
			if w.pb, err = t.ops.encode(w.pb[:0], e.v); err != nil {
				return fmt.Errorf("state %q: %w: %v", t.name, ErrCodec, err)
			}
			var expiresAt uint64
			if t.ttl > 0 && t.c.realClock {
				// Let compaction drop the row once expired (1s after, as
				// Badger counts in seconds); reads check the TTL themselves.
				expiresAt = uint64((e.ts+t.ttl)/int64(time.Second)) + 1
			}
			err = w.set(w.alloc(kb), w.value(e.ts, w.pb), expiresAt)
		}
		if err != nil {
			return err
		}
		e.dirty = false
		return nil
	}
	// Map: set every entry, delete stored entries that are gone.
	cur := map[string]struct{}{}
	err := t.ops.mapRows(e.v, w.pb, func(mk, payload []byte) error {
		cur[string(mk)] = struct{}{}
		return w.set(w.alloc(append(kb, mk...)), w.value(e.ts, payload), 0)
	})
	if err != nil {
		return fmt.Errorf("state %q: %w", t.name, err)
	}
	it := w.st.rtxn.NewIterator(badger.IteratorOptions{Prefix: kb})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if _, ok := cur[string(it.Item().Key()[len(kb):])]; !ok {
			if err := w.del(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
		}
	}
	e.dirty = false
	return nil
}

// evict drops up to n entries, writing the dirty ones to the batch first. It
// is a CLOCK: entries used since the last sweep get a second chance.
func (t *table[S]) evict(n int, w *batchWriter) (int, error) {
	evicted := 0
	for pass := 0; pass < 2 && evicted < n; pass++ {
		for k, e := range t.m {
			if evicted >= n {
				break
			}
			if pass == 0 && e.ref {
				e.ref = false
				continue
			}
			if err := t.evictEntry(k, e, w); err != nil {
				return evicted, err
			}
			evicted++
		}
	}
	return evicted, nil
}

// evictEntry drops e, cached under k, writing it to the batch first if it
// is dirty; until the batch is committed it stays readable in the flushing
// set.
func (t *table[S]) evictEntry(k string, e *entry[S], w *batchWriter) error {
	if e.dirty {
		if err := t.flushEntry(w, e); err != nil {
			return err
		}
		t.flushing[k] = e
	}
	if c := t.c; e.chg == c.epoch && c.tracking && int(e.chgIdx) < len(t.changed) && t.changed[e.chgIdx] == e {
		// The changes forget the entry (the cache bound holds no
		// evicted value): a delta finds the key in the flushing set or
		// the store. k may point into e: keep a copy instead.
		t.changed[e.chgIdx] = nil
		ck := k
		if len(k) <= len(e.kbuf) {
			ck = strings.Clone(k)
		}
		t.evicted = append(t.evicted, keyRef{ck, e.kg})
		t.dropped = true
	}
	delete(t.m, k)
	t.c.entries--
	return nil
}

// spillKey evicts the entry of key if it is still cached (see
// WithWriteThrough).
func (t *table[S]) spillKey(key string, w *batchWriter) error {
	if e := t.m[key]; e != nil {
		return t.evictEntry(key, e, w)
	}
	return nil
}

// writeThrough queues the entry of key, just written to a WithWriteThrough
// state, to be written to the store and dropped from the cache; size is
// about how many bytes its value holds. The queue goes to the store in one
// batch once it holds spillBatchBytes or spillBatchKeys.
func (t *table[S]) writeThrough(key string, size int) error {
	st := t.c.store
	if st == nil {
		return nil
	}
	st.spillQ = append(st.spillQ, spillRef{t, key})
	st.spillBytes += size
	if st.spillBytes >= spillBatchBytes || len(st.spillQ) >= spillBatchKeys {
		return st.spill(t.c)
	}
	return nil
}

// spillRef is an entry queued by writeThrough.
type spillRef struct {
	t   tableAny
	key string
}

// The size of a batch of WithWriteThrough values (variables: tests lower
// them).
var (
	spillBatchBytes = 4 << 20
	spillBatchKeys  = 4096
)

// spill writes the queued WithWriteThrough entries to the store in one
// batch in the background, as shrink does, and drops them from the cache.
func (st *badgerStore) spill(c *core) error {
	if err := st.settle(c); err != nil {
		return err
	}
	w := st.newBatch()
	for _, r := range st.spillQ {
		if err := r.t.spillKey(r.key, w); err != nil {
			return err
		}
	}
	clear(st.spillQ)
	st.spillQ, st.spillBytes = st.spillQ[:0], 0
	st.commitInBackground(c, w)
	return nil
}

func (st *badgerStore) newBatch() *batchWriter {
	w := &batchWriter{st: st, rows: st.spareRows[:0]}
	st.spareRows = nil
	return w
}

// commitInBackground makes w the batch in flight (see shrink).
func (st *badgerStore) commitInBackground(c *core, w *batchWriter) {
	c.keySeq++ // handles must look their entries up again
	job := &flushJob{done: make(chan struct{}), w: w}
	st.inflight = job
	go func() {
		defer close(job.done)
		job.err = w.commit()
	}()
}

// shrink drops a quarter of the cache. The dirty entries among them are
// encoded into one batch that Badger commits in the background while the task
// goes on; until it has, they stay readable in their table's flushing set.
// Only one batch is in flight: shrink first waits for the previous one. A
// failed write loses state: the error fails the task, which restores from its
// last checkpoint.
func (st *badgerStore) shrink(c *core) error {
	if err := st.settle(c); err != nil {
		return err
	}
	w := st.newBatch()
	need := c.entries - st.cacheEntries*3/4
	for _, t := range c.order {
		if need <= 0 {
			break
		}
		n, err := t.evict(need, w)
		if err != nil {
			return err
		}
		need -= n
	}
	st.commitInBackground(c, w)
	return nil
}

// flushJob is a batch being committed in the background.
type flushJob struct {
	done chan struct{}
	w    *batchWriter
	err  error
}

// settle waits for the batch in flight, empties the flushing sets and renews
// the owner's view of the store.
func (st *badgerStore) settle(c *core) error {
	job := st.inflight
	if job == nil {
		return nil
	}
	<-job.done
	st.inflight = nil
	clear(job.w.rows) // drop the references into the arenas
	st.spareRows = job.w.rows[:0]
	for _, t := range c.order {
		t.settled()
	}
	st.rtxn.Discard()
	st.rtxn = st.db.NewTransaction(false)
	if job.err != nil {
		return fmt.Errorf("badger flush: %w", job.err)
	}
	return nil
}

func (st *badgerStore) dropAll(c *core) error {
	_ = st.settle(c)
	clear(st.spillQ)
	st.spillQ, st.spillBytes = st.spillQ[:0], 0
	st.rtxn.Discard()
	err := st.db.DropAll()
	st.rtxn = st.db.NewTransaction(false)
	if err == nil {
		st.written = false
	}
	return err
}

// restoreFile writes a snapshot file's rows in range straight into Badger.
func (st *badgerStore) restoreFile(ctx context.Context, c *core, fr *fileReader) error {
	st.written = true // rows go straight to the store, below
	if err := st.settle(c); err != nil {
		return err
	}
	rng := c.cfg.KeyGroups
	now := c.nowNanos()
	w := &batchWriter{st: st, wb: st.db.NewWriteBatch()}
	defer w.wb.Cancel()
	view := st.db.NewTransaction(false) // the store before this file, for deletes
	defer view.Discard()
	bnames := map[string][]byte{}
	var kb []byte
	err := fr.rowsTo(ctx, func(op byte, sd stateDesc, kg uint16, key, mapKey []byte, ts int64, payload []byte) error {
		if !rng.Contains(int(kg)) {
			return nil
		}
		if (op == opMapPut) != (sd.kind == kindMap) && op != opDel {
			return corrupt("state %q: row op %d for a %s", sd.name, op, sd.kind)
		}
		t, declared := c.states[sd.name]
		if !declared {
			if k, ok := c.known[sd.name]; ok && k != sd.kind {
				return fmt.Errorf("state %q: %w: restored as %s and as %s", sd.name, ErrStateMismatch, k, sd.kind)
			}
			c.known[sd.name] = sd.kind
		} else if m := t.meta(); op != opDel && m.ttl > 0 && now-ts >= m.ttl {
			return nil
		}
		bname, ok := bnames[sd.name]
		if !ok {
			bname = appendLenPrefixed(nil, []byte(sd.name))
			bnames[sd.name] = bname
		}
		kb = st.appendKey(kb[:0], kg, bname, key)
		switch op {
		case opPut:
			return w.wb.Set(w.alloc(kb), w.value(ts, payload))
		case opMapPut:
			return w.wb.Set(w.alloc(append(kb, mapKey...)), w.value(ts, payload))
		}
		if sd.kind != kindMap {
			return w.wb.Delete(w.alloc(kb))
		}
		it := view.NewIterator(badger.IteratorOptions{Prefix: kb})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := w.wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.wb.Flush(); err != nil {
		return fmt.Errorf("badger restore: %w", err)
	}
	st.rtxn.Discard()
	st.rtxn = st.db.NewTransaction(false)
	return nil
}

// writeStore writes the store's rows as of the capture, minus the keys the
// captured cache overrides and expired rows.
func (s *Snapshot) writeStore(rw *rowWriter) error {
	st := s.store
	it := s.txn.NewIterator(badger.IteratorOptions{Prefix: st.prefix, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		rest := item.Key()[len(st.prefix):]
		if len(rest) < 2 {
			return corrupt("bad store key")
		}
		kg := binary.BigEndian.Uint16(rest)
		name, rest, ok := readLenPrefixed(rest[2:])
		if !ok {
			return corrupt("bad store key")
		}
		key, mk, ok := readLenPrefixed(rest)
		if !ok {
			return corrupt("bad store key")
		}
		idx, ok := s.byName[string(name)]
		if !ok {
			return corrupt("store holds unknown state %q", name)
		}
		if idx < len(s.parts) && s.parts[idx].covers(key) {
			continue
		}
		op := byte(opPut)
		if s.states[idx].kind == kindMap {
			op = opMapPut
		} else {
			mk = nil
		}
		err := item.Value(func(v []byte) error {
			return callRow(mk, v, func(mk []byte, ts int64, payload []byte) error {
				if ttl := s.ttls[idx]; ttl > 0 && s.now-ts >= ttl {
					return nil
				}
				return rw.row(op, idx, kg, unsafe.String(unsafe.SliceData(key), len(key)), mk, ts, payload)
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}
