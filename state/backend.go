package state

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// DefaultFullEvery is the default number of snapshots between two full bases.
const DefaultFullEvery = 10

// Config configures a backend: one backend serves one subtask of one keyed operator.
type Config struct {
	// OperatorUID is the operator's stable, user-given name. Snapshots carry it
	// and restore refuses a snapshot of another operator.
	OperatorUID string
	// KeyGroups is the half-open range of key groups this subtask owns
	// (keygroup.RangeFor). Restore keeps only rows in this range.
	KeyGroups keygroup.Range
	// MaxParallelism is the job's number of key groups; 0 means
	// keygroup.DefaultMaxParallelism.
	MaxParallelism int
	// Clock returns the current time for TTL; nil means time.Now. Tests script it.
	Clock func() time.Time
	// FullEvery makes every FullEvery-th snapshot a full base and the others
	// deltas; 0 means DefaultFullEvery, 1 means every snapshot is full. The
	// heap backend takes a base sooner once the deltas since the last one
	// changed more keys than the state holds.
	FullEvery int
}

// Validate checks the configuration and fills defaults in place.
func (c *Config) Validate() error {
	if c.MaxParallelism == 0 {
		c.MaxParallelism = keygroup.DefaultMaxParallelism
	}
	if c.OperatorUID == "" {
		return fmt.Errorf("%w: empty operator uid", ErrInvalidConfig)
	}
	if len(c.OperatorUID) > 1<<15 {
		return fmt.Errorf("%w: operator uid longer than 32KiB", ErrInvalidConfig)
	}
	if c.MaxParallelism < 0 || c.MaxParallelism > keygroup.MaxMaxParallelism {
		return fmt.Errorf("%w: max parallelism %d out of range", ErrInvalidConfig, c.MaxParallelism)
	}
	if c.KeyGroups.Start < 0 || c.KeyGroups.End > c.MaxParallelism || c.KeyGroups.Start >= c.KeyGroups.End {
		return fmt.Errorf("%w: key groups %v not a non-empty range within [0,%d)", ErrInvalidConfig, c.KeyGroups, c.MaxParallelism)
	}
	if c.FullEvery < 0 {
		return fmt.Errorf("%w: FullEvery %d is negative", ErrInvalidConfig, c.FullEvery)
	}
	if c.FullEvery == 0 {
		c.FullEvery = DefaultFullEvery
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Backend holds the keyed state of one operator subtask. It is used by one
// goroutine (the task's); only a captured Snapshot may be written from another
// goroutine while the backend is in use. State is declared on it with NewValue,
// NewList, NewMap, NewReducing and NewAggregating.
type Backend interface {
	// SetCurrentKey scopes every handle to the key, of key group keyGroup, until
	// the next call. The caller may reuse key's buffer after the next call (the
	// backend copies a key when it stores it), not before.
	SetCurrentKey(keyGroup int, key []byte)
	// SetKeySource lets a runtime that sets the key of every record defer
	// it: instead of calling SetCurrentKey it increments *seq. When *seq
	// differs from what it was at the last SetCurrentKey, the next handle
	// used first calls key, once, and makes what it returns the current key,
	// as SetCurrentKey would. An operator that reads no keyed state for a
	// record (one that caches its keys' values) then costs neither an
	// encoding nor a hash of the record's key. seq and key are used on the
	// backend's goroutine only; call SetKeySource once, before the first
	// record.
	SetKeySource(seq *uint64, key func() (keyGroup int, key []byte))
	// Snapshot captures the state synchronously and cheaply (copy-on-write);
	// the returned Snapshot is written later, possibly on another goroutine,
	// while the backend keeps changing. The snapshot is a full base or a delta
	// of the keys changed since the previous snapshot (see SnapshotOptions).
	Snapshot(checkpointID int64, opts SnapshotOptions) (*Snapshot, error)
	// Restore loads state from chains of snapshots, one chain per old subtask,
	// each a full base followed by its deltas in order, keeping only the key
	// groups of this backend. It must be called before the first SetCurrentKey.
	// On error the backend is left empty.
	Restore(ctx context.Context, chains ...Chain) error
	// Close releases the backend. It waits for snapshots being written.
	Close() error

	base() *core
}

// InMemory reports whether b keeps all its state in memory, as the heap
// backend does, rather than in a store with a bounded cache (Badger). A
// cache an operator keeps in front of such a backend saves work but no
// memory, and holding a value in both doubles its memory: an operator may
// then take a value out of keyed state while it caches it, and write it
// back before the next snapshot (see internal/keycache).
func InMemory(b Backend) bool { return b.base().store == nil }

// CacheEntries returns how many entries b's write-back cache holds at most
// (BadgerConfig.CacheEntries), 0 for a backend that keeps all its state in
// memory. An operator that keeps its own bounded buffer in front of such a
// backend, and little in the backend's cache, may size the buffer by it.
func CacheEntries(b Backend) int {
	if st := b.base().store; st != nil {
		return st.cacheEntries
	}
	return 0
}

// SnapshotOptions tunes one snapshot.
type SnapshotOptions struct {
	// Full forces a full base (e.g. for a savepoint, which must be self-contained).
	Full bool
}

// Chain is one old subtask's snapshots in order: a full base, then the deltas
// taken after it. Readers are read to the end once.
type Chain []io.Reader

// core is what both backends share: the current key, the declared states and
// the snapshot bookkeeping. A backend is single-goroutine, so nothing here is locked.
type core struct {
	cfg       Config
	now       func() time.Time
	realClock bool // time.Now: Badger may expire TTL rows itself
	key       []byte
	kg        uint16
	keyErr    error
	// SetKeySource's: the key to compute when *srcSeq is not srcSeen
	srcSeq  *uint64
	srcSeen uint64
	srcKey  func() (int, []byte)
	keySeq  uint64 // bumped on every SetCurrentKey and cache eviction; handles cache lookups per seq
	used    bool

	states map[string]tableAny
	order  []tableAny

	// epoch advances at every snapshot. An entry whose ver is at or before
	// pinEpoch, the epoch the last snapshot captured, may be referenced by a
	// snapshot not written yet (pins counts them) and is copied before it is
	// changed (frozen). Once every snapshot is written, entries change in place.
	epoch    uint32
	pinEpoch uint32
	pins     atomic.Int32
	tracking bool // changed keys are tracked (a base exists and the next snapshot may be a delta)
	haveBase bool
	lastID   int64
	lineage  uint64
	count    int // snapshots since the last base

	changedCount int // keys recorded as changed since the last snapshot
	chainChanges int // changes in the deltas since the last base
	maxChanged   int // 0: unlimited

	// heap: restored rows of states not declared yet (decoded at declaration).
	pending map[string]*rawState
	// badger: the store, and kinds of restored states not declared yet.
	store *badgerStore
	known map[string]kind

	closed   bool
	inflight sync.WaitGroup
	entries  int // entries in the cache (badger) or in memory (heap)
}

func newCore(cfg Config) (*core, error) {
	realClock := cfg.Clock == nil
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &core{
		realClock: realClock,
		cfg:       cfg,
		now:       cfg.Clock,
		keyErr:    ErrNoCurrentKey,
		keySeq:    1,
		states:    map[string]tableAny{},
		epoch:     1,
		pending:   map[string]*rawState{},
		known:     map[string]kind{},
	}, nil
}

func (c *core) base() *core { return c }

// frozen reports whether an entry of epoch ver may be read by a snapshot
// being written. The writer's release (pins) happens before the owner sees
// the count drop, so the owner's changes come after the writer's reads.
func (c *core) frozen(ver uint32) bool { return ver <= c.pinEpoch && c.pins.Load() > 0 }

// stopTracking drops the changed-key sets; the next snapshot is a full base.
func (c *core) stopTracking() {
	c.tracking = false
	c.changedCount = 0
	for _, t := range c.order {
		t.endEpoch(false)
	}
}

func (c *core) SetCurrentKey(keyGroup int, key []byte) {
	if c.srcSeq != nil {
		c.srcSeen = *c.srcSeq
	}
	c.key = key // valid until the next call: copied only when an entry is created
	c.kg = uint16(keyGroup)
	c.keySeq++
	c.used = true
	if keyGroup < c.cfg.KeyGroups.Start || keyGroup >= c.cfg.KeyGroups.End {
		c.keyErr = fmt.Errorf("%w: key group %d not in %v", ErrKeyGroupOutOfRange, keyGroup, c.cfg.KeyGroups)
	} else if c.closed {
		c.keyErr = ErrClosed
	} else {
		c.keyErr = nil
	}
}

func (c *core) SetKeySource(seq *uint64, key func() (int, []byte)) {
	c.srcSeq, c.srcSeen, c.srcKey = seq, *seq, key
}

// keyChanged reports whether the key source moved past the current key.
func (c *core) keyChanged() bool { return c.srcSeq != nil && *c.srcSeq != c.srcSeen }

// resolveKey makes the key source's key current.
func (c *core) resolveKey() {
	kg, key := c.srcKey()
	c.SetCurrentKey(kg, key)
}

func (c *core) nowNanos() int64 { return c.now().UnixNano() }

func (c *core) errf(name string, err error) error {
	if name == "" {
		return fmt.Errorf("operator %q: %w", c.cfg.OperatorUID, err)
	}
	return fmt.Errorf("operator %q, state %q: %w", c.cfg.OperatorUID, name, err)
}

// heapBackend keeps every entry decoded in Go maps.
type heapBackend struct{ *core }

// NewHeap returns a backend that keeps all state in memory as typed Go values.
// It is the fastest backend; its state must fit in memory.
func NewHeap(cfg Config) (Backend, error) {
	c, err := newCore(cfg)
	if err != nil {
		return nil, err
	}
	return heapBackend{c}, nil
}

func (h heapBackend) Close() error {
	if h.closed {
		return nil
	}
	h.inflight.Wait()
	h.closed = true
	h.keyErr = ErrClosed
	h.keySeq++
	for _, t := range h.order {
		t.reset()
	}
	return nil
}
