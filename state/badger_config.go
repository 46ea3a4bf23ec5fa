package state

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/sluicedata/sluice/internal/flock"
)

// ErrDirInUse is returned by NewBadger when another backend, in this process
// or another, holds the Badger directory.
var ErrDirInUse = errors.New("state: badger directory in use")

// BadgerCachedEntryBytes is the memory one entry of the Badger backend's
// write-back cache is counted at when a configuration is checked against
// BadgerConfig.MemoryLimit: the most live heap per cached entry of a small
// value (a key up to 24 bytes, a value of a few words such as a counter or
// one window's accumulator) measured by TestBadgerCachedEntryBytes, while
// the cache turns over: 240-700 B (the entry, its key and value, its map
// slot, and its share of an eviction's batch in flight, with Badger's
// buffers for it). Bigger values take more: lower CacheEntries
// accordingly. It is live heap: the Go collector lets the heap grow past
// it (to twice the live heap with GOGC=100) unless a Go memory limit
// (GOMEMLIMIT) holds it back, so set GOMEMLIMIT to keep the process's RSS
// under MemoryLimit.
const BadgerCachedEntryBytes = 1024

// memtableOverhead is Badger's arena per memtable over MemTableSize: room
// for one more batch (15%) and its skiplist nodes (up to as much again).
const memtableOverhead = 1.3

// BadgerConfig configures the Badger backend's local store and cache.
//
// The defaults come from BenchmarkBadgerOptions (state/badger_bench_test.go),
// updates of an int64 per key through a 100K-entry cache, uniform keys, on
// the 2-core development machine; see the README for the table.
type BadgerConfig struct {
	// Dir is the scratch directory. Its content is wiped when the backend
	// opens: state comes back only through Restore. While the backend is
	// open it holds an exclusive lock on Dir+".lock" (a file next to Dir,
	// left in place after Close), so a second backend on the same Dir, in
	// this process or another, fails with ErrDirInUse instead of wiping a
	// live store.
	Dir string
	// CacheEntries bounds the write-back cache of decoded entries (per backend,
	// over all its states). When it is full, dirty entries are written to
	// Badger in one batch and a quarter of the cache is dropped. 0 means
	// 100K, or fewer if that does not fit in MemoryLimit.
	CacheEntries int
	// MaxDeltaKeys: when more keys than this changed since the last snapshot,
	// the backend stops tracking them and the next snapshot is a full base (a
	// delta would not be cheaper, and the set of changed keys would outgrow the
	// cache bound). 0 means CacheEntries.
	MaxDeltaKeys int
	// MemoryLimit bounds the memory of this backend's cache and Badger's
	// memtables and block cache, in bytes: NewBadger fails if
	//
	//	CacheEntries × BadgerCachedEntryBytes
	//	  + (NumMemtables+1) × MemTableSize × 1.3 + BlockCacheSize
	//
	// is more (Badger keeps up to NumMemtables full memtables being flushed
	// besides the one being written, each in an arena 1.3x its size). Not
	// counted: Badger's table indexes and bloom filters (about 2 bytes per
	// stored key at a 1% false-positive rate), and table pages the kernel
	// maps in from the page cache as reads touch them, which it reclaims
	// under pressure. 0 means the Go runtime's memory limit (GOMEMLIMIT or
	// debug.SetMemoryLimit) if one is set, else none. Several backends in
	// one process each count against their own MemoryLimit: divide the
	// process's budget between them. With a limit, the memtable size and
	// cache entries left at 0 take the defaults or less, so that they fit.
	// The figures are live memory: for RSS to stay under the limit, the Go
	// runtime must have one too (GOMEMLIMIT), so that it collects before
	// the heap doubles.
	MemoryLimit int64
	// MemTableSize sizes Badger's memtables (bytes); 0 means 32 MiB, or less
	// to keep the memtables under an eighth of MemoryLimit. NumMemtables is
	// how many full memtables may wait for their flush before writes stall;
	// 0 means 2.
	MemTableSize int64
	NumMemtables int
	// BlockCacheSize is Badger's block cache; 0 (the default) reads blocks
	// straight from the memory-mapped tables, which is faster for the
	// uncompressed tables this backend writes.
	BlockCacheSize int64
	// BloomFalsePositive is the false-positive rate of the tables' bloom
	// filters, which let a miss skip a level; 0 means 0.01.
	BloomFalsePositive float64
	// ValueThreshold: values at least this long are kept in Badger's value
	// log instead of the LSM tree. 0 means min(64 KiB, MemTableSize/100).
	ValueThreshold int64
	// NumCompactors is the number of Badger's compaction goroutines; 0 means 2.
	NumCompactors int
}

// DefaultBadgerConfig returns a configuration using dir with a 100K-entry
// cache and the measured defaults made explicit.
func DefaultBadgerConfig(dir string) BadgerConfig {
	return BadgerConfig{
		Dir:                dir,
		CacheEntries:       100_000,
		MemTableSize:       32 << 20,
		NumMemtables:       2,
		BloomFalsePositive: 0.01,
		NumCompactors:      2,
	}
}

// Validate checks the configuration and fills defaults in place.
func (bc *BadgerConfig) Validate() error {
	d := DefaultBadgerConfig(bc.Dir)
	if bc.Dir == "" {
		return fmt.Errorf("%w: badger: empty Dir", ErrInvalidConfig)
	}
	if bc.CacheEntries < 0 || bc.MaxDeltaKeys < 0 || bc.MemTableSize < 0 || bc.BlockCacheSize < 0 ||
		bc.MemoryLimit < 0 || bc.NumMemtables < 0 || bc.ValueThreshold < 0 || bc.NumCompactors < 0 {
		return fmt.Errorf("%w: badger: negative size", ErrInvalidConfig)
	}
	if bc.BloomFalsePositive < 0 || bc.BloomFalsePositive >= 1 {
		return fmt.Errorf("%w: badger: BloomFalsePositive %v not in [0, 1)", ErrInvalidConfig, bc.BloomFalsePositive)
	}
	if bc.NumCompactors == 1 {
		// Badger's first compactor only compacts level 0: one would never
		// compact the levels below.
		return fmt.Errorf("%w: badger: NumCompactors must be 0 (default) or at least 2", ErrInvalidConfig)
	}
	limit, limitFrom := bc.MemoryLimit, "MemoryLimit"
	if limit == 0 {
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			limit, limitFrom = l, "the Go memory limit (GOMEMLIMIT)"
		}
	}
	if bc.NumMemtables == 0 {
		bc.NumMemtables = d.NumMemtables
	}
	if bc.MemTableSize == 0 {
		bc.MemTableSize = d.MemTableSize
		if limit > 0 {
			// The memtables take at most an eighth of the limit, and at
			// least 1 MiB each.
			fit := int64(float64(limit) / 8 / memtableOverhead / float64(bc.NumMemtables+1))
			bc.MemTableSize = max(1<<20, min(bc.MemTableSize, fit))
		}
	}
	if bc.BloomFalsePositive == 0 {
		bc.BloomFalsePositive = d.BloomFalsePositive
	}
	if bc.ValueThreshold == 0 {
		bc.ValueThreshold = min(64<<10, bc.MemTableSize/100)
	}
	if bc.ValueThreshold > bc.MemTableSize*15/100 {
		return fmt.Errorf("%w: badger: ValueThreshold %d is more than 15%% of MemTableSize %d (Badger's largest batch)", ErrInvalidConfig, bc.ValueThreshold, bc.MemTableSize)
	}
	if bc.NumCompactors == 0 {
		bc.NumCompactors = d.NumCompactors
	}
	memtables := int64(float64(bc.NumMemtables+1) * float64(bc.MemTableSize) * memtableOverhead)
	if bc.CacheEntries == 0 {
		bc.CacheEntries = d.CacheEntries
		if limit > 0 {
			if left := (limit - memtables - bc.BlockCacheSize) / BadgerCachedEntryBytes; left < int64(bc.CacheEntries) {
				bc.CacheEntries = int(max(left, 1))
			}
		}
	}
	if limit > 0 {
		cache := int64(bc.CacheEntries) * BadgerCachedEntryBytes
		if need := cache + memtables + bc.BlockCacheSize; need > limit {
			return fmt.Errorf("%w: badger: memory limit too small: CacheEntries %d × %d B = %s, memtables (NumMemtables+1) %d × MemTableSize %s × %.1f = %s, BlockCacheSize %s: %s in all, more than %s %s",
				ErrInvalidConfig, bc.CacheEntries, BadgerCachedEntryBytes, mib(cache), bc.NumMemtables+1, mib(bc.MemTableSize), memtableOverhead, mib(memtables),
				mib(bc.BlockCacheSize), mib(need), limitFrom, mib(limit))
		}
	}
	if bc.MaxDeltaKeys == 0 {
		bc.MaxDeltaKeys = bc.CacheEntries
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// options returns Badger's options for the validated configuration.
func (bc *BadgerConfig) options() badger.Options {
	return badger.DefaultOptions(bc.Dir).
		WithLogger(nil).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithCompression(options.None).
		WithMemTableSize(bc.MemTableSize).
		WithNumMemtables(bc.NumMemtables).
		WithValueThreshold(bc.ValueThreshold).
		WithBlockCacheSize(bc.BlockCacheSize).
		WithBloomFalsePositive(bc.BloomFalsePositive).
		WithNumCompactors(bc.NumCompactors).
		WithMetricsEnabled(false)
}

type badgerStore struct {
	db           *badger.DB
	lock         *os.File // holds the flock on Dir+".lock" while the store is open
	prefix       []byte   // length-prefixed operator uid
	cacheEntries int
	rtxn         *badger.Txn // the owner's view of the store, renewed after each flush
	inflight     *flushJob   // the batch being committed, if any
	spareRows    []batchRow  // the last committed batch's rows, for reuse
	spillQ       []spillRef  // WithWriteThrough entries waiting for their batch
	spillBytes   int
	kbuf         []byte
	// written: a row was written to the store since it was opened (empty)
	// or dropped. Until then every key is absent and load reads nothing:
	// a new job's keys cost no Badger lookup until the cache first evicts.
	written bool
}

type badgerBackend struct{ *core }

// NewBadger returns a backend whose state lives in Badger under bc.Dir, with a
// write-back cache of decoded entries in front so the hot path does not touch
// Badger per record. Badger key layout:
//
//	[uvarint len, operator uid][key group u16][uvarint len, state name][uvarint len, key][map key]
//
// so one key group, or a range of them, is one contiguous key range.
//
// Before it wipes bc.Dir, NewBadger locks it (see BadgerConfig.Dir) and
// checks that it can write there: a directory in use fails with
// ErrDirInUse, one it cannot write with the OS error naming the path (for
// example fs.ErrPermission), and a configuration over the memory limit
// with ErrInvalidConfig naming the figures.
func NewBadger(cfg Config, bc BadgerConfig) (Backend, error) {
	c, err := newCore(cfg)
	if err != nil {
		return nil, err
	}
	if err := bc.Validate(); err != nil {
		return nil, err
	}
	bc.Dir = filepath.Clean(bc.Dir)
	lock, err := lockDir(bc.Dir)
	if err != nil {
		return nil, err
	}
	db, err := wipeAndOpen(bc)
	if err != nil {
		_ = lock.Close() // releases the lock
		return nil, err
	}
	c.maxChanged = bc.MaxDeltaKeys
	c.store = &badgerStore{
		db:           db,
		lock:         lock,
		prefix:       appendLenPrefixed(nil, []byte(c.cfg.OperatorUID)),
		cacheEntries: bc.CacheEntries,
		rtxn:         db.NewTransaction(false),
	}
	return badgerBackend{c}, nil
}

// lockDir takes the exclusive lock of dir: a flock on dir+".lock" (package
// flock), which conflicts with any other backend or process locking it.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("state: badger: directory %s is not writable: %w", dir, err)
	}
	path := dir + ".lock"
	f, err := flock.TryLock(path)
	var held *flock.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("%w: %s is held by another backend or process (lock %s)", ErrDirInUse, dir, path)
	case err != nil:
		return nil, fmt.Errorf("state: badger: directory %s is not writable (its lock file): %w", dir, err)
	}
	return f, nil
}

// wipeAndOpen checks that bc.Dir can be written, empties it and opens Badger
// in it. The check comes first: emptying an unwritable directory could
// remove and recreate it where its parent is writable, or fail halfway.
func wipeAndOpen(bc BadgerConfig) (*badger.DB, error) {
	if err := os.MkdirAll(bc.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: badger: directory %s is not writable: %w", bc.Dir, err)
	}
	probe, err := os.CreateTemp(bc.Dir, ".sluice-probe-*")
	if err != nil {
		return nil, fmt.Errorf("state: badger: directory %s is not writable: %w", bc.Dir, err)
	}
	_ = probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, fmt.Errorf("state: badger: directory %s is not writable: %w", bc.Dir, err)
	}
	ents, err := os.ReadDir(bc.Dir)
	if err != nil {
		return nil, fmt.Errorf("state: badger: wipe %s: %w", bc.Dir, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(bc.Dir, e.Name())); err != nil {
			return nil, fmt.Errorf("state: badger: wipe %s: %w", bc.Dir, err)
		}
	}
	db, err := badger.Open(bc.options())
	if err != nil {
		return nil, fmt.Errorf("state: badger: open %s: %w", bc.Dir, err)
	}
	return db, nil
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
	err := b.store.db.Close()
	if lerr := b.store.lock.Close(); err == nil && lerr != nil { // releases the lock
		err = fmt.Errorf("state: badger: unlock %s: %w", b.store.lock.Name(), lerr)
	}
	return err
}
