package state

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// BadgerRawReader returns a function that reads the stored row of one key of
// state name straight from the Badger backend's store, the way a cache miss
// does but with nothing of the cache around it: the benchmarks use it for a
// same-run baseline of Badger's own point-read rate. It reads through one
// read-only transaction; call done to discard it.
func BadgerRawReader(b Backend, name string) (get func(kg int, key []byte) (found bool, err error), done func()) {
	st := b.(badgerBackend).store
	bname := appendLenPrefixed(nil, []byte(name))
	txn := st.db.NewTransaction(false)
	var kb []byte
	get = func(kg int, key []byte) (bool, error) {
		kb = st.appendKey(kb[:0], uint16(kg), bname, key)
		item, err := txn.Get(kb)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, item.Value(func([]byte) error { return nil })
	}
	return get, txn.Discard
}

// BadgerLevels describes the Badger store's LSM levels (for benchmark logs).
func BadgerLevels(b Backend) string {
	st := b.(badgerBackend).store
	return st.db.LevelsToString()
}
