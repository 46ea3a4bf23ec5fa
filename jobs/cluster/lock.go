package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicedata/sluice/internal/flock"
)

// lockFile is the name of the lock in a data directory.
const lockFile = "LOCK"

// lockDataDir takes the exclusive lock of a node's data directory: a flock
// on dir/LOCK (package flock), held until the returned file is closed (or
// the process ends), so that a second node on the directory, in this
// process or another, is refused at once, naming the process that holds it.
//
// bbolt locks raft.db too, but it waits for the lock (up to the bolt
// timeout) instead of saying who holds it, and the snapshots beside it are
// not covered at all.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := flock.TryLock(path)
	var held *flock.HeldError
	switch {
	case errors.As(err, &held):
		holder := "another node"
		if held.PID != 0 {
			holder = fmt.Sprintf("the node of process %d", held.PID)
		}
		return nil, fmt.Errorf("%w: %s is held by %s (lock %s)", ErrDataDirInUse, dir, holder, path)
	case err != nil:
		return nil, fmt.Errorf("cluster: data directory %s: lock file: %w", dir, err)
	}
	return f, nil
}
