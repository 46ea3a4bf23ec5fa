// Package state holds the keyed state of stateful operators: typed handles
// scoped to the current key, two backends (heap and Badger), TTL, and the
// snapshots that checkpoints are made of.
//
// # Backends and scoping
//
// A keyed operator subtask owns one Backend, created by NewHeap or NewBadger
// with a Config naming the operator (its stable uid), the key groups the
// subtask owns (keygroup.RangeFor), the max parallelism and a clock for TTL.
// In its open step the operator declares its states by name with the generic
// functions NewValue, NewList, NewMap, NewReducing and NewAggregating. Before
// each record or timer the runtime calls SetCurrentKey(keyGroup, encodedKey);
// every handle then reads and writes the state of that key only. The key's
// bytes must not change until the next SetCurrentKey; after it the runtime
// may reuse its buffer (the backend copies a key when it stores it). A
// runtime that sets a key per record may instead give a key source
// (SetKeySource) and count records: the key is then encoded and hashed only
// if a handle is used for that record
// (operators that keep their own cache, such as the window operator, skip
// it for most records). Using a
// handle before any SetCurrentKey (state used outside a keyed operator) fails
// with ErrNoCurrentKey; a key group outside the backend's range with
// ErrKeyGroupOutOfRange. Backends are built by the runtime (Config takes an
// internal keygroup.Range); user code only declares and uses states.
//
// Declaring a name twice with the same kind and type returns the same state;
// with another kind or type it fails with ErrStateMismatch. Values are encoded
// with msgpack unless WithCodec supplies a Codec; a type the codec cannot
// encode (channels, functions, unsafe pointers anywhere inside the type, or a
// struct field that is unexported and so would silently not be saved) is
// refused at declaration with ErrUnsupportedType. Handles return errors (a
// Badger read can fail); on the heap backend they never fail once the key is set.
//
// The Badger backend keeps a write-back cache of decoded entries in front of
// Badger (BadgerConfig.CacheEntries, over all states of the backend). Reads of
// uncached keys go to Badger; when the cache is full, a quarter of it is
// dropped (CLOCK: recently used entries get a second chance) and the dirty
// entries among those are written in one batch that Badger commits in the
// background. Memory stays bounded and no record causes a Badger transaction of
// its own. Snapshots read the cache and a Badger transaction, so they do not
// flush it. A failed background write fails the next handle operation that
// makes room in the cache. Badger is scratch space: the directory is wiped
// when the backend opens, and state comes back only through Restore. Its keys
// are [operator uid][key group][state name][key][map key], so key groups are
// contiguous ranges.
//
// # Ownership
//
// A value read from a handle (returned by Value.Get or Map.Get, given to
// Map.Range's function, or an element of the list List.Get returns, itself a
// new slice) may be changed in place by the caller, the way an aggregate
// function changes its accumulator, provided that the change is written back
// (Value.Update, Map.Put, List.Update) and that the value is not changed after
// the backend's next Snapshot: read it again then. A read-modify-write within
// one record or timer (Get, change, Update or Put) always meets both. A change
// not written back is not tracked: it may be missing from snapshots, and on
// Badger it is lost when the entry leaves the cache. A value passed to
// Value.Update or Map.Put, or an element passed to List.Add or List.Update
// (which copy the slice, not what elements reference), belongs to the backend
// in the same way: it must not be changed after the next Snapshot. The
// results of Reducing.Get and Aggregating.Get must not be changed at all.
// Reduce and aggregate functions may change their accumulator in place.
//
// Snapshots are unaffected by these changes. The first Value.Get, Map.Get,
// Map.Range or List.Get of a key after a Snapshot copies the key's value if
// the values it hands out hold references (pointers, slices, maps or
// interfaces anywhere in the type, or for a Map in its value type, for a List
// in its element type; time.Time does not count), and so does the first write
// that changes the stored value rather than replacing it (List.Add, Map.Put,
// Map.Remove, Reducing.Add, Aggregating.Add). Copies are deep: a round trip
// through the state's codec of the value (a Map's whole map, value by value;
// a List's elements), so fields the codec does not save come back as zero
// values and interfaces as the codec decodes them, as after a restore. Later
// reads and writes of that key until the next Snapshot copy nothing, so a key
// costs at most one copy per snapshot. Values without references (numbers,
// strings, structs and arrays of those) are never copied on read: handles
// return them by value. The heap backend keeps values as typed Go values and
// encodes them only for snapshots and for these copies.
//
// # TTL
//
// WithTTL(d, OnWrite) makes a key's value expire d after its last write;
// WithTTL(d, OnReadAndWrite) after its last read or write. Time comes from
// Config.Clock. An expired value is never returned: it is deleted when next
// accessed, swept (heap) or skipped (Badger) by full snapshots, dropped on
// restore, and, with the real clock, dropped by Badger's compaction (rows carry
// their expiry). The timestamps are part of snapshots, so TTL keeps counting
// across restores. TTL covers a key's whole value: a list, or a whole map (any
// write to the map refreshes it).
//
// # Large values
//
// On Badger, a Value declared WithWriteThrough goes to the store in batches
// soon after each write instead of waiting in the cache, whose bound
// counts entries, not bytes: for large values written once and read back
// once, such as an operator's spilled runs (package window keeps a
// window's partial accumulators that way). The heap backend ignores it.
// CacheEntries tells an operator how big the backend's cache is, to size a
// buffer of its own by it.
//
// # Snapshots
//
// Backend.Snapshot captures the state synchronously and returns a *Snapshot
// that is written later, on any goroutine, while the backend keeps changing:
// entries are copy-on-write (an entry a snapshot may still read is copied on
// its next change), and Badger rows are read through a Badger transaction
// opened at the capture. A snapshot is either a full base or a delta holding,
// for every key changed since the previous snapshot, its new value or a
// tombstone. Every Config.FullEvery-th snapshot is a base, as is the first one,
// one requested with SnapshotOptions.Full (savepoints), on the heap one taken
// when the deltas since the last base would hold more changes than the state
// has entries (so that restoring a base and its deltas reads at most about
// twice the state), and, on Badger, one taken after more than
// BadgerConfig.MaxDeltaKeys keys changed. A delta is
// only valid on top of the snapshot taken just before it: if a snapshot is
// never stored (a failed checkpoint), ask for a full one next. Checkpoint ids
// must increase.
//
// Restore takes one Chain per old subtask: its last base and the deltas after
// it, in order. It keeps only the rows of the new backend's key groups, so the
// state of any parallelism restores into any other (rescaling). Restore must
// be called before the first SetCurrentKey; states may be declared before or
// after it (rows of states not declared yet wait, and are kept in later
// snapshots even if never declared).
//
// The format is versioned (magic "SLUICEST", version 1), and every block and
// the whole file carry a CRC32C. A corrupt or truncated file fails with
// ErrCorrupt, an unknown version with ErrUnknownVersion, a delta that does not
// follow its chain with ErrBadChain, another operator's snapshot with
// ErrWrongOperator, overlapping chains with ErrRestoreOverlap. A failed
// restore leaves the backend empty, never half restored.
//
// # Wiring into a runtime
//
// Per keyed operator subtask: create the backend with
// Config{OperatorUID: uid, KeyGroups: keygroup.RangeFor(subtask, parallelism,
// maxParallelism), MaxParallelism: maxParallelism}; Restore it from the
// checkpoint if there is one; call the user's open step, which declares
// states; then, per record or timer, encode the key with keygroup.EncoderFor
// into a reused buffer, compute keygroup.Of(buf, maxParallelism) (the same
// key group the hash exchange routed by) and call SetCurrentKey. At a
// checkpoint barrier call Snapshot on the task goroutine and hand the
// *Snapshot to the goroutine that writes checkpoint storage. A non-keyed
// operator has no backend: declaring state on a nil Backend fails with
// ErrNoCurrentKey.
//
// # Concurrency
//
// A Backend and its handles are used by one goroutine, the task's. The only
// exception is a captured Snapshot: its Write may run on another goroutine
// while the task goes on using the backend. Close waits for snapshots being
// written; write or Discard every snapshot.
package state
