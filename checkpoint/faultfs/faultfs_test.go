package faultfs_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/faultfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// write creates name through fsys with data, optionally syncing it.
func write(t *testing.T, fsys checkpoint.FS, name, data string, sync bool) {
	t.Helper()
	f, err := fsys.Create(name)
	require.NoError(t, err)
	_, err = f.Write([]byte(data))
	require.NoError(t, err)
	if sync {
		require.NoError(t, f.Sync())
	}
	require.NoError(t, f.Close())
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(b)
}

func TestCountsOperations(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	write(t, f, filepath.Join(dir, "a"), "x", true)
	require.NoError(t, f.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	require.NoError(t, f.SyncDir(dir))
	_, err := f.Stat(filepath.Join(dir, "b"))
	require.NoError(t, err)
	r, err := f.Open(filepath.Join(dir, "b"))
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, "x", string(b))
	for op, want := range map[faultfs.Op]int{
		faultfs.OpCreate: 1, faultfs.OpWrite: 1, faultfs.OpSync: 1, faultfs.OpClose: 1,
		faultfs.OpRename: 1, faultfs.OpSyncDir: 1, faultfs.OpStat: 1, faultfs.OpOpen: 1,
		faultfs.OpRead: 2, faultfs.OpRemove: 0,
	} {
		require.Equal(t, want, f.Count(op), "count of %v", op)
	}
	require.Equal(t, 10, f.Count(faultfs.OpAny))
}

func TestNthWriteFails(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	f.Inject(faultfs.Fault{Op: faultfs.OpWrite, Path: "full", N: 2, Err: syscall.ENOSPC})
	w, err := f.Create(filepath.Join(dir, "full"))
	require.NoError(t, err)
	_, err = w.Write([]byte("ok"))
	require.NoError(t, err)
	n, err := w.Write([]byte("lost"))
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.ErrorContains(t, err, "full")
	require.Zero(t, n)
	_, err = w.Write([]byte("!"))
	require.NoError(t, err, "only the 2nd write fails")
	require.NoError(t, w.Close())
	require.Equal(t, "ok!", read(t, filepath.Join(dir, "full")))

	// Other paths are not affected.
	write(t, f, filepath.Join(dir, "other"), "abc", false)
}

func TestEveryMatchingOperationFails(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	f.Inject(faultfs.Fault{Op: faultfs.OpCreate, Err: syscall.EACCES})
	for range 3 {
		_, err := f.Create(filepath.Join(dir, "x"))
		require.ErrorIs(t, err, syscall.EACCES)
		require.ErrorIs(t, err, os.ErrPermission)
	}
	f.Clear()
	write(t, f, filepath.Join(dir, "x"), "y", false)
}

func TestDefaultErrorIsErrInjected(t *testing.T) {
	f := faultfs.New(checkpoint.OSFS{})
	f.Inject(faultfs.Fault{Op: faultfs.OpMkdirAll, N: 1})
	err := f.MkdirAll(filepath.Join(t.TempDir(), "d"))
	require.ErrorIs(t, err, faultfs.ErrInjected)
}

func TestTornWrite(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	f.Inject(faultfs.Fault{Op: faultfs.OpWrite, N: 1, Err: syscall.ENOSPC, Torn: true})
	w, err := f.Create(filepath.Join(dir, "t"))
	require.NoError(t, err)
	n, err := w.Write([]byte("abcdefgh"))
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, 4, n)
	require.NoError(t, w.Close())
	require.Equal(t, "abcd", read(t, filepath.Join(dir, "t")))
}

func TestCrashBeforeDoesNotRunTheOperation(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	write(t, f, filepath.Join(dir, "a"), "a", true)
	require.NoError(t, f.SyncDir(dir))
	f.Inject(faultfs.Fault{Op: faultfs.OpRename, N: 1, Crash: faultfs.CrashBefore})
	err := f.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
	require.ErrorIs(t, err, faultfs.ErrCrashed)
	require.True(t, f.Crashed())
	_, err = os.Stat(filepath.Join(dir, "b"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = f.Stat(filepath.Join(dir, "a"))
	require.ErrorIs(t, err, faultfs.ErrCrashed, "everything fails after a crash")
	_, err = f.Create(filepath.Join(dir, "c"))
	require.ErrorIs(t, err, faultfs.ErrCrashed)
	require.NoError(t, f.Recover())
	require.False(t, f.Crashed())
	_, err = f.Stat(filepath.Join(dir, "a"))
	require.NoError(t, err)
}

func TestCrashAfterRunsTheOperation(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	f.Inject(faultfs.Fault{Op: faultfs.OpWrite, N: 1, Crash: faultfs.CrashAfter})
	w, err := f.Create(filepath.Join(dir, "a"))
	require.NoError(t, err)
	_, err = w.Write([]byte("data"))
	require.NoError(t, err)
	require.True(t, f.Crashed())
	require.ErrorIs(t, w.Sync(), faultfs.ErrCrashed)
	require.ErrorIs(t, w.Close(), faultfs.ErrCrashed)
	require.Equal(t, "data", read(t, filepath.Join(dir, "a")), "before recovery the bytes are in the page cache")
	require.NoError(t, f.Recover())
	_, err = os.Stat(filepath.Join(dir, "a"))
	require.ErrorIs(t, err, os.ErrNotExist, "never synced, nor its directory")
}

func TestRecoverLosesUnsyncedData(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	w, err := f.Create(filepath.Join(dir, "a"))
	require.NoError(t, err)
	_, err = w.Write([]byte("synced."))
	require.NoError(t, err)
	require.NoError(t, w.Sync())
	require.NoError(t, f.SyncDir(dir))
	_, err = w.Write([]byte("lost"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	write(t, f, filepath.Join(dir, "never-synced"), "x", false) // its entry is not durable either
	require.NoError(t, f.SyncDir(dir))
	write(t, f, filepath.Join(dir, "entry-only"), "y", false) // created after the last dir sync

	f.Crash()
	require.NoError(t, f.Recover())
	require.Equal(t, "synced.", read(t, filepath.Join(dir, "a")))
	require.Equal(t, "", read(t, filepath.Join(dir, "never-synced")), "entry durable, data not")
	_, err = os.Stat(filepath.Join(dir, "entry-only"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestRecoverUndoesRenamesWithoutDirSync(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	f := faultfs.New(checkpoint.OSFS{})
	write(t, f, filepath.Join(dir, "tmp1"), "one", true)
	write(t, f, filepath.Join(dir, "tmp2"), "two", true)
	require.NoError(t, f.SyncDir(dir))
	require.NoError(t, f.Rename(filepath.Join(dir, "tmp1"), filepath.Join(dir, "final1")))
	require.NoError(t, f.SyncDir(dir))
	require.NoError(t, f.Rename(filepath.Join(dir, "tmp2"), filepath.Join(dir, "final2")))
	require.NoError(t, f.SyncDir(sub), "syncing another directory does not help")

	require.NoError(t, f.Recover())
	require.Equal(t, "one", read(t, filepath.Join(dir, "final1")))
	_, err := os.Stat(filepath.Join(dir, "final2"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Equal(t, "two", read(t, filepath.Join(dir, "tmp2")))
}

func TestPreexistingFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kept"), []byte("kept"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "target"), []byte("target"), 0o644))
	f := faultfs.New(checkpoint.OSFS{})
	require.NoError(t, f.Rename(filepath.Join(dir, "old"), filepath.Join(dir, "moved")))
	write(t, f, filepath.Join(dir, "new"), "new", true)
	require.NoError(t, f.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "target")))
	write(t, f, filepath.Join(dir, "kept"), "rewritten", false) // truncated by Create, never synced

	require.NoError(t, f.Recover())
	require.Equal(t, "old", read(t, filepath.Join(dir, "old")), "the rename was not synced")
	require.Equal(t, "new", read(t, filepath.Join(dir, "target")), "a rename replacing a file is kept")
	require.Equal(t, "", read(t, filepath.Join(dir, "kept")), "the name existed; the new data was not synced")
}

func TestRemoveIsDurable(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	write(t, f, filepath.Join(dir, "a"), "a", true)
	require.NoError(t, f.Remove(filepath.Join(dir, "a")))
	require.NoError(t, f.MkdirAll(filepath.Join(dir, "d", "e")))
	write(t, f, filepath.Join(dir, "d", "e", "f"), "f", true)
	require.NoError(t, f.RemoveAll(filepath.Join(dir, "d")))
	require.NoError(t, f.Recover())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents)
}

func TestFaultOnReadAndStat(t *testing.T) {
	dir := t.TempDir()
	f := faultfs.New(checkpoint.OSFS{})
	write(t, f, filepath.Join(dir, "a"), "abc", true)
	boom := errors.New("boom")
	f.Inject(faultfs.Fault{Op: faultfs.OpRead, N: 1, Err: boom}, faultfs.Fault{Op: faultfs.OpStat, N: 2, Err: boom})
	r, err := f.Open(filepath.Join(dir, "a"))
	require.NoError(t, err)
	_, err = io.ReadAll(r)
	require.ErrorIs(t, err, boom)
	require.NoError(t, r.Close())
	_, err = f.Stat(filepath.Join(dir, "a"))
	require.NoError(t, err)
	_, err = f.Stat(filepath.Join(dir, "a"))
	require.ErrorIs(t, err, boom)
	require.Equal(t, "stat", faultfs.OpStat.String())
}
