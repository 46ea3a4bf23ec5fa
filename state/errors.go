package state

import "errors"

// Errors returned by this package. They are wrapped with context (operator uid,
// state name, file) and are meant to be tested with errors.Is.
var (
	// ErrClosed is returned by a backend, handle or snapshot used after Close.
	ErrClosed = errors.New("state: backend closed")
	// ErrNoCurrentKey is returned by a handle used before SetCurrentKey, which
	// happens when state is used outside a keyed operator.
	ErrNoCurrentKey = errors.New("state: no current key (state used outside a keyed operator?)")
	// ErrKeyGroupOutOfRange is returned when the current key's key group is not
	// owned by the backend.
	ErrKeyGroupOutOfRange = errors.New("state: key group out of the backend's range")
	// ErrStateMismatch is returned when a state name is declared twice with a
	// different kind or type, or declared with a kind other than the one restored.
	ErrStateMismatch = errors.New("state: state declared twice with different kind or type")
	// ErrUnsupportedType is returned when the codec cannot encode a state's type
	// (channels, functions, unsafe pointers).
	ErrUnsupportedType = errors.New("state: type cannot be encoded")
	// ErrCodec wraps an encode or decode failure of a value.
	ErrCodec = errors.New("state: codec failed")
	// ErrInvalidConfig is returned by constructors for an invalid configuration.
	ErrInvalidConfig = errors.New("state: invalid configuration")
	// ErrCorrupt is returned when a snapshot fails its checksum, is truncated or
	// is otherwise malformed.
	ErrCorrupt = errors.New("state: corrupt snapshot")
	// ErrUnknownVersion is returned for a snapshot written in a format version
	// this build does not know.
	ErrUnknownVersion = errors.New("state: unknown snapshot version")
	// ErrBadChain is returned when a restore chain does not start with a full
	// snapshot, or a delta does not follow the snapshot it was taken after.
	ErrBadChain = errors.New("state: snapshot chain is broken")
	// ErrWrongOperator is returned when a snapshot of another operator, or with
	// another max parallelism, is restored.
	ErrWrongOperator = errors.New("state: snapshot belongs to another operator or max parallelism")
	// ErrRestoreOverlap is returned when two restored chains cover the same key group.
	ErrRestoreOverlap = errors.New("state: restored chains overlap in key groups")
	// ErrSnapshotUsed is returned when a Snapshot is written twice or after Discard.
	ErrSnapshotUsed = errors.New("state: snapshot already written or discarded")
)
