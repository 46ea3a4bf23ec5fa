// Package flock takes exclusive, non-blocking locks on files with flock(2),
// for directories that one process (or one component of a process) may use
// at a time: a state backend's Badger directory, a cluster node's data
// directory.
//
// A flock conflicts with every other open file description that locks the
// same file, in this process or another, and goes with the process if it
// dies. The holder writes its process id into the file, so that the error
// of the next one that tries can name it. The lock file stays when the lock
// is released: removing it would let a second holder lock a new file of the
// same name while the first still holds the old one.
//
// The functions are safe for concurrent use.
package flock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// HeldError says that another holder has the lock of Path. PID is the
// process that took it, as it wrote it into the file, 0 if unknown.
type HeldError struct {
	Path string
	PID  int
}

func (e *HeldError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s is locked by another holder", e.Path)
	}
	return fmt.Sprintf("%s is locked by process %d", e.Path, e.PID)
}

// TryLock takes the exclusive lock of path, creating the file if needed,
// and returns the open file that holds it until it is closed. If another
// holder has it, TryLock returns at once with a *HeldError; other failures
// (the file cannot be created) are returned as the OS gave them.
func TryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			held := &HeldError{Path: path}
			if b, rerr := os.ReadFile(path); rerr == nil {
				held.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			return nil, held
		}
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	// Who holds it, for the error of the next one that tries.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
