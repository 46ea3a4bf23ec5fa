package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the name of the lock in a data directory.
const lockFile = "LOCK"

// lockDataDir takes the exclusive lock of a node's data directory: a flock
// on dir/LOCK, held until the returned file is closed (or the process
// ends). A flock conflicts with any other open file description locking the
// same file, in this process or another, so a second node on the directory
// is refused at once, naming the process that holds it. The lock file stays
// when the node stops: removing it would let a second node lock a new file
// of the same name while the first still holds the old one.
//
// bbolt locks raft.db too, but it waits for the lock (up to the bolt
// timeout) instead of saying who holds it, and the snapshots beside it are
// not covered at all.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: data directory %s: lock file: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another node"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf("the node of process %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by %s (lock %s)", ErrDataDirInUse, dir, holder, path)
		}
		return nil, fmt.Errorf("cluster: data directory %s: lock %s: %w", dir, path, err)
	}
	// Who holds it, for the error of the next one that tries.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
