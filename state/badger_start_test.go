package state_test

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// holdEnv names the directory the re-executed test binary holds a backend
// on (TestBadgerLockHolder).
const holdEnv = "SLUICE_TEST_HOLD_BADGER"

// putCount writes count=n for one key into b.
func putCount(t *testing.T, b state.Backend, n int64) {
	t.Helper()
	v, err := state.NewValue[int64](b, "count")
	require.NoError(t, err)
	key := []byte("k")
	b.SetCurrentKey(keygroup.Of(key, maxPar), key)
	require.NoError(t, v.Update(n))
}

func TestBadgerDirInUseInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	first, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.NoError(t, err)
	putCount(t, first, 7)

	second, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.ErrorIs(t, err, state.ErrDirInUse)
	require.Nil(t, second)
	require.ErrorContains(t, err, dir+" is held by another backend or process (lock "+dir+".lock)")

	// The first backend's store is intact: the second did not wipe it.
	require.FileExists(t, filepath.Join(dir, "MANIFEST"))
	putCount(t, first, 8)
	require.NoError(t, first.Close())

	// Once closed, the directory is free again.
	third, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.NoError(t, err)
	require.NoError(t, third.Close())
}

// TestBadgerLockHolder is the other process of TestBadgerDirInUseOtherProcess:
// run with holdEnv set, it opens a backend there, says so on stdout and
// holds it until its stdin closes.
func TestBadgerLockHolder(t *testing.T) {
	dir := os.Getenv(holdEnv)
	if dir == "" {
		t.Skip("the helper process of TestBadgerDirInUseOtherProcess")
	}
	b, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.NoError(t, err)
	putCount(t, b, 1)
	_, err = os.Stdout.WriteString("holding\n")
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, os.Stdin)
	require.NoError(t, err)
	require.NoError(t, b.Close())
}

func TestBadgerDirInUseOtherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadgerLockHolder$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "holding\n" {
		_ = stdin.Close()
		t.Fatalf("helper process did not take the directory: %q, %v (exit: %v)", line, err, cmd.Wait())
	}

	b, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.ErrorIs(t, err, state.ErrDirInUse)
	require.Nil(t, b)
	require.ErrorContains(t, err, "lock "+dir+".lock")
	require.FileExists(t, filepath.Join(dir, "MANIFEST"), "the other process's store was wiped")

	require.NoError(t, stdin.Close())
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	require.NoError(t, cmd.Wait())
	b, err = state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.NoError(t, err, "the directory is free once the other process ended")
	require.NoError(t, b.Close())
}

func TestBadgerDirNotWritable(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	require.NoError(t, os.Mkdir(dir, 0o755))
	keep := filepath.Join(dir, "keep")
	require.NoError(t, os.WriteFile(keep, []byte("x"), 0o644))
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		// Root, or a file system that ignores the mode: nothing to observe.
		_ = f.Close()
		t.Skip("permission bits are not enforced here (running as root?); TestBadgerDirUnderFile covers the error")
	}
	b, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.Nil(t, b)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, "directory "+dir+" is not writable")
	require.FileExists(t, keep, "an unwritable directory was wiped in part")
}

// TestBadgerDirUnderFile: a directory that cannot be created, as a file
// stands in its path, observable as root too.
func TestBadgerDirUnderFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	dir := filepath.Join(file, "store")
	b, err := state.NewBadger(benchCfg(), state.DefaultBadgerConfig(dir))
	require.Nil(t, b)
	require.ErrorContains(t, err, "directory "+dir+" is not writable")
	var pe *fs.PathError
	require.True(t, errors.As(err, &pe), "the OS error with its path: %v", err)
}

func TestBadgerMemoryLimit(t *testing.T) {
	t.Run("too small for the cache", func(t *testing.T) {
		bc := state.DefaultBadgerConfig(t.TempDir())
		bc.CacheEntries = 1_000_000
		bc.MemoryLimit = 256 << 20
		b, err := state.NewBadger(benchCfg(), bc)
		require.Nil(t, b)
		require.ErrorIs(t, err, state.ErrInvalidConfig)
		require.ErrorContains(t, err, "memory limit too small: CacheEntries 1000000")
		require.ErrorContains(t, err, "more than MemoryLimit 256.0 MiB")
	})
	t.Run("too small for the memtables", func(t *testing.T) {
		bc := state.DefaultBadgerConfig(t.TempDir())
		bc.CacheEntries = 1000
		bc.MemTableSize = 64 << 20
		bc.MemoryLimit = 128 << 20
		require.ErrorContains(t, bc.Validate(), "MemTableSize 64.0 MiB")
	})
	t.Run("defaults shrink to fit", func(t *testing.T) {
		bc := state.BadgerConfig{Dir: t.TempDir(), MemoryLimit: 64 << 20}
		require.NoError(t, bc.Validate())
		mem := float64(bc.CacheEntries)*state.BadgerCachedEntryBytes + float64(bc.NumMemtables+1)*float64(bc.MemTableSize)*1.3 + float64(bc.BlockCacheSize)
		require.LessOrEqual(t, mem, float64(bc.MemoryLimit))
		require.Less(t, bc.CacheEntries, state.DefaultBadgerConfig("").CacheEntries)
		require.Less(t, bc.MemTableSize, state.DefaultBadgerConfig("").MemTableSize)
		b, err := state.NewBadger(benchCfg(), bc)
		require.NoError(t, err)
		require.NoError(t, b.Close())
	})
	t.Run("from GOMEMLIMIT", func(t *testing.T) {
		old := debug.SetMemoryLimit(512 << 20)
		t.Cleanup(func() { debug.SetMemoryLimit(old) })
		bc := state.DefaultBadgerConfig(t.TempDir())
		bc.CacheEntries = 1_000_000
		require.ErrorContains(t, bc.Validate(), "more than the Go memory limit (GOMEMLIMIT) 512.0 MiB")
		bc.CacheEntries = 100_000
		require.NoError(t, bc.Validate())
	})
	t.Run("none", func(t *testing.T) {
		bc := state.DefaultBadgerConfig(t.TempDir())
		bc.CacheEntries = 10_000_000
		require.NoError(t, bc.Validate(), "no limit set: nothing to check against")
	})
}
