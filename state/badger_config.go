package state

import (
	"fmt"
	"os"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// BadgerConfig configures the Badger backend's local store and cache.
type BadgerConfig struct {
	// Dir is the scratch directory. Its content is wiped when the backend
	// opens: state comes back only through Restore.
	Dir string
	// CacheEntries bounds the write-back cache of decoded entries (per backend,
	// over all its states). When it is full, dirty entries are written to
	// Badger in one batch and a quarter of the cache is dropped.
	CacheEntries int
	// MaxDeltaKeys: when more keys than this changed since the last snapshot,
	// the backend stops tracking them and the next snapshot is a full base (a
	// delta would not be cheaper, and the set of changed keys would outgrow the
	// cache bound). 0 means CacheEntries.
	MaxDeltaKeys int
	// MemTableSize sizes Badger's memtables (bytes). BlockCacheSize is Badger's
	// block cache; 0 (the default) reads blocks straight from the memory-mapped
	// tables, which is faster for the uncompressed tables this backend writes.
	MemTableSize   int64
	BlockCacheSize int64
}

// DefaultBadgerConfig returns a configuration using dir with a 100K-entry cache.
func DefaultBadgerConfig(dir string) BadgerConfig {
	return BadgerConfig{Dir: dir, CacheEntries: 100_000, MemTableSize: 32 << 20}
}

// Validate checks the configuration and fills defaults in place.
func (bc *BadgerConfig) Validate() error {
	d := DefaultBadgerConfig(bc.Dir)
	if bc.Dir == "" {
		return fmt.Errorf("%w: badger: empty Dir", ErrInvalidConfig)
	}
	if bc.CacheEntries < 0 || bc.MaxDeltaKeys < 0 || bc.MemTableSize < 0 || bc.BlockCacheSize < 0 {
		return fmt.Errorf("%w: badger: negative size", ErrInvalidConfig)
	}
	if bc.CacheEntries == 0 {
		bc.CacheEntries = d.CacheEntries
	}
	if bc.MaxDeltaKeys == 0 {
		bc.MaxDeltaKeys = bc.CacheEntries
	}
	if bc.MemTableSize == 0 {
		bc.MemTableSize = d.MemTableSize
	}
	return nil
}

type badgerStore struct {
	db           *badger.DB
	prefix       []byte // length-prefixed operator uid
	cacheEntries int
	rtxn         *badger.Txn // the owner's view of the store, renewed after each flush
	inflight     *flushJob   // the batch being committed, if any
	spareRows    []batchRow  // the last committed batch's rows, for reuse
	kbuf         []byte
}

type badgerBackend struct{ *core }

// NewBadger returns a backend whose state lives in Badger under bc.Dir, with a
// write-back cache of decoded entries in front so the hot path does not touch
// Badger per record. Badger key layout:
//
//	[uvarint len, operator uid][key group u16][uvarint len, state name][uvarint len, key][map key]
//
// so one key group, or a range of them, is one contiguous key range.
func NewBadger(cfg Config, bc BadgerConfig) (Backend, error) {
	c, err := newCore(cfg)
	if err != nil {
		return nil, err
	}
	if err := bc.Validate(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(bc.Dir); err != nil {
		return nil, fmt.Errorf("state: badger: wipe %s: %w", bc.Dir, err)
	}
	opts := badger.DefaultOptions(bc.Dir).
		WithLogger(nil).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithCompression(options.None).
		WithMemTableSize(bc.MemTableSize).
		WithNumMemtables(2).
		WithValueThreshold(min(64<<10, bc.MemTableSize/100)).
		WithBlockCacheSize(bc.BlockCacheSize).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("state: badger: open %s: %w", bc.Dir, err)
	}
	c.maxChanged = bc.MaxDeltaKeys
	c.store = &badgerStore{
		db:           db,
		prefix:       appendLenPrefixed(nil, []byte(c.cfg.OperatorUID)),
		cacheEntries: bc.CacheEntries,
		rtxn:         db.NewTransaction(false),
	}
	return badgerBackend{c}, nil
}

func (b badgerBackend) Close() error {
	if b.closed {
		return nil
	}
	b.inflight.Wait()
	_ = b.store.settle(b.core) // the store is scratch: a failed last batch does not matter
	b.closed = true
	b.keyErr = ErrClosed
	b.keySeq++
	b.store.rtxn.Discard()
	return b.store.db.Close()
}
