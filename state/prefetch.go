package state

import (
	"runtime"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// A Key is a key as a backend knows it: its key group and its encoding (see
// Backend.SetCurrentKey).
type Key struct {
	Group int
	Enc   []byte
}

// Prefetch reads the values of keys that the backend's cache does not hold
// from its store into the cache, from several goroutines at once, so that
// the reads of those keys that follow (after SetCurrentKey) find them
// there: an operator calls it with the keys of a batch of records, or of
// timers about to fire, before it processes them one by one, and the
// batch's lookups in the store overlap instead of coming one after the
// other. It changes no value. Only a backend with a store (Badger) does
// anything; errors are left to the reads that follow, which meet them
// again.
func (v *Value[T]) Prefetch(keys []Key) { v.t.prefetch(keys) }

// maxPrefetchReaders bounds the goroutines of one Prefetch (the caller's
// included); minPrefetchPerReader is the number of keys below which one
// more does not pay for its start.
const (
	maxPrefetchReaders   = 4
	minPrefetchPerReader = 16
)

// prefetchRead is one key of a Prefetch: the store's row, if any.
type prefetchRead struct {
	key   Key
	row   []byte // in the reader's arena
	found bool
}

// prefetchReader reads a share of a Prefetch's keys.
type prefetchReader struct {
	kb, arena []byte
	err       error
}

func (t *table[S]) prefetch(keys []Key) {
	c := t.c
	st := c.store
	if st == nil || !st.written || t.ops.isMap() || c.closed || len(keys) == 0 {
		return
	}
	if c.entries >= st.cacheEntries {
		if st.shrink(c) != nil {
			return // the next read fails with it
		}
	}
	room := st.cacheEntries - c.entries
	reads := t.pfReads[:0]
	if t.pfSeen == nil {
		t.pfSeen = map[string]struct{}{}
	}
	for _, k := range keys {
		if len(reads) == room {
			break
		}
		// Map lookups of a converted slice allocate no string.
		if t.m[string(k.Enc)] != nil || t.flushing[string(k.Enc)] != nil {
			continue
		}
		if _, dup := t.pfSeen[string(k.Enc)]; dup {
			continue
		}
		t.pfSeen[string(k.Enc)] = struct{}{}
		reads = append(reads, prefetchRead{key: k})
	}
	clear(t.pfSeen)
	t.pfReads = reads
	if len(reads) == 0 {
		return
	}
	n := min(maxPrefetchReaders, runtime.GOMAXPROCS(0), max(1, len(reads)/minPrefetchPerReader))
	for len(t.pfReaders) < n {
		t.pfReaders = append(t.pfReaders, &prefetchReader{})
	}
	// Reader i reads the i-th share; the caller reads the first. Reads of
	// a read-only transaction are safe from several goroutines (they
	// change nothing in it), and the rows land in each reader's arena.
	share := (len(reads) + n - 1) / n
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.pfReaders[i].read(st, t.bname, reads[min(i*share, len(reads)):min((i+1)*share, len(reads))])
		}()
	}
	t.pfReaders[0].read(st, t.bname, reads[:min(share, len(reads))])
	wg.Wait()
	for _, r := range t.pfReaders[:n] {
		if r.err != nil {
			return // the reads that follow meet it
		}
	}
	for i := range reads {
		r := &reads[i]
		e := &entry[S]{kg: uint16(r.key.Group), ver: c.epoch, absent: true}
		if r.found {
			err := callRow(nil, r.row, func(_ []byte, ts int64, payload []byte) error {
				v, err := t.ops.decode(payload)
				e.v, e.ts, e.absent = v, ts, false
				return err
			})
			if err != nil {
				continue // load reports it
			}
		}
		e.setKey(r.key.Enc)
		t.m[e.key] = e
		c.entries++
	}
	clear(reads) // drop the references to the keys and arenas
}

// read looks rs up in the store, keeping the rows found in its arena.
func (r *prefetchReader) read(st *badgerStore, bname []byte, rs []prefetchRead) {
	r.arena, r.err = r.arena[:0], nil
	for i := range rs {
		x := &rs[i]
		r.kb = st.appendKey(r.kb[:0], uint16(x.key.Group), bname, x.key.Enc)
		item, err := st.rtxn.Get(r.kb)
		if err == badger.ErrKeyNotFound {
			continue
		}
		if err == nil {
			err = item.Value(func(v []byte) error {
				at := len(r.arena)
				r.arena = append(r.arena, v...)
				x.row, x.found = r.arena[at:len(r.arena):len(r.arena)], true
				return nil
			})
		}
		if err != nil {
			r.err = err
			return
		}
	}
}
