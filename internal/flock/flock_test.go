package flock_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/flock"
)

// A second lock of the same file is refused at once, naming this process;
// once the first is released the file can be locked again.
func TestTryLockIsExclusiveAndNamesTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	f, err := flock.TryLock(path)
	require.NoError(t, err)
	_, err = flock.TryLock(path)
	var held *flock.HeldError
	require.True(t, errors.As(err, &held), "%v", err)
	require.Equal(t, os.Getpid(), held.PID)
	require.Equal(t, fmt.Sprintf("%s is locked by process %d", path, os.Getpid()), err.Error())
	require.NoError(t, f.Close())
	f, err = flock.TryLock(path)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// A lock file in a directory that does not exist is an OS error, not a
// HeldError.
func TestTryLockReportsOSErrors(t *testing.T) {
	_, err := flock.TryLock(filepath.Join(t.TempDir(), "missing", "LOCK"))
	require.ErrorIs(t, err, os.ErrNotExist)
	var held *flock.HeldError
	require.False(t, errors.As(err, &held))
}

func ExampleTryLock() {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("flock-example-%d.lock", os.Getpid()))
	f, err := flock.TryLock(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(path)
	defer f.Close()
	_, err = flock.TryLock(path)
	var held *flock.HeldError
	fmt.Println(errors.As(err, &held), held.PID == os.Getpid())
	// Output: true true
}
