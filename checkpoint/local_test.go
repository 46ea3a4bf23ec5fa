package checkpoint_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/checkpointtest"
	"github.com/sluicedata/sluice/checkpoint/faultfs"
)

func TestLocalStorageConformance(t *testing.T) {
	checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
		st, err := checkpoint.NewLocalStorage(t.TempDir())
		require.NoError(t, err)
		return st
	})
}

func TestLocalStorageConformanceOnFaultFS(t *testing.T) {
	checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
		st, err := checkpoint.NewLocalStorage(t.TempDir(), checkpoint.WithFS(faultfs.New(checkpoint.OSFS{})))
		require.NoError(t, err)
		return st
	})
}

// A small buffer makes every write reach the file system.
func TestLocalStorageConformanceSmallBuffer(t *testing.T) {
	checkpointtest.StorageConformance(t, func(t *testing.T) checkpoint.Storage {
		st, err := checkpoint.NewLocalStorage(t.TempDir(), checkpoint.WithBufferSize(7))
		require.NoError(t, err)
		return st
	})
}

var (
	writeFile = checkpointtest.WriteFile
	readFile  = checkpointtest.ReadFile
	manifest  = checkpointtest.Manifest
)

func newStorage(t *testing.T, dir string, opts ...checkpoint.LocalOption) *checkpoint.LocalStorage {
	t.Helper()
	st, err := checkpoint.NewLocalStorage(dir, opts...)
	require.NoError(t, err)
	return st
}

// committed writes checkpoint id with one file of data and commits it.
func committed(t *testing.T, st checkpoint.Storage, id int64, data string) *checkpoint.Manifest {
	t.Helper()
	m := manifest(id, writeFile(t, st, id, "state", []byte(data)))
	require.NoError(t, st.Commit(context.Background(), m))
	return m
}

// requireLatest checks that the latest checkpoint is want and intact.
func requireLatest(t *testing.T, st checkpoint.Storage, want int64) *checkpoint.Manifest {
	t.Helper()
	ctx := context.Background()
	m, err := st.Latest(ctx)
	require.NoError(t, err)
	require.Equal(t, want, m.ID)
	require.NoError(t, st.Verify(ctx, m))
	return m
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	st := newStorage(t, dir)
	ref := writeFile(t, st, 5, "op/0/keyed", []byte("data"))
	require.Equal(t, "chk-5/op/0/keyed", ref.Path)
	require.NoError(t, st.Commit(context.Background(), manifest(5, ref)))
	b, err := os.ReadFile(filepath.Join(dir, "chk-5", "op", "0", "keyed"))
	require.NoError(t, err)
	require.Equal(t, "data", string(b))

	raw, err := os.ReadFile(filepath.Join(dir, "manifests", "chk-5.json"))
	require.NoError(t, err)
	var env struct {
		CRC32C   uint32              `json:"crc32c"`
		Manifest checkpoint.Manifest `json:"manifest"`
	}
	require.NoError(t, json.Unmarshal(raw, &env), "the manifest is a JSON envelope")
	require.NotZero(t, env.CRC32C)
	require.EqualValues(t, 5, env.Manifest.ID)
	require.Equal(t, dir, st.Location())

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"chk-5", "manifests"}, names, "no probe or temporary file is left")
}

// The checksum is CRC32C (Castagnoli): its check value for "123456789" is
// e3069283.
func TestChecksumIsCRC32C(t *testing.T) {
	st := newStorage(t, t.TempDir())
	ref := writeFile(t, st, 1, "check", []byte("123456789"))
	require.Equal(t, uint32(0xe3069283), ref.CRC32C)
}

func TestMarshalManifestRoundTrip(t *testing.T) {
	m := manifest(3, checkpoint.FileRef{Path: "chk-3/a", Size: 10, CRC32C: 99})
	b, err := checkpoint.MarshalManifest(m)
	require.NoError(t, err)
	got, err := checkpoint.UnmarshalManifest(b, "test")
	require.NoError(t, err)
	require.Equal(t, m, got)

	// Any flipped byte is detected.
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x20
		if strings.TrimSpace(string(c)) == strings.TrimSpace(string(b)) {
			continue
		}
		got, err := checkpoint.UnmarshalManifest(c, "test")
		if err == nil {
			// Only a change inside insignificant whitespace can pass, and
			// then the manifest must be the same.
			require.Equal(t, m, got, "byte %d flipped", i)
			continue
		}
		if !errors.Is(err, checkpoint.ErrCorrupt) {
			require.ErrorContains(t, err, "format version", "byte %d flipped", i)
		}
	}
	_, err = checkpoint.UnmarshalManifest(b[:len(b)/2], "half")
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "half")
	_, err = checkpoint.UnmarshalManifest(nil, "empty")
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	_, err = checkpoint.UnmarshalManifest([]byte(`{"manifest":{}}`), "nocrc")
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
}

func FuzzUnmarshalManifest(f *testing.F) {
	b, err := checkpoint.MarshalManifest(manifest(3, checkpoint.FileRef{Path: "chk-3/a", Size: 10, CRC32C: 99}))
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"crc32c":0,"manifest":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := checkpoint.UnmarshalManifest(data, "fuzz")
		if err != nil {
			return
		}
		// A manifest that decodes is valid and encodes again.
		require.NoError(t, checkpoint.ValidateManifest(m))
		_, err = checkpoint.MarshalManifest(m)
		require.NoError(t, err)
	})
}

func TestDiskFullMidFile(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			ffs := faultfs.New(checkpoint.OSFS{})
			st := newStorage(t, dir, checkpoint.WithFS(ffs))
			m1 := committed(t, st, 1, "one")

			// The disk fills up during the 2nd write into checkpoint 2's file
			// (4 writes of 256 KiB).
			ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Path: "chk-2", N: 2, Err: syscall.ENOSPC, Torn: torn})
			w, err := st.Create(ctx, 2, "big")
			require.NoError(t, err)
			chunk := make([]byte, 64<<10)
			for range 16 {
				if _, err = w.Write(chunk); err != nil {
					break
				}
			}
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.ErrorContains(t, err, "chk-2/big")
			require.ErrorContains(t, err, dir)
			_, cerr := w.Commit()
			require.ErrorIs(t, cerr, syscall.ENOSPC, "Commit reports the write error")
			require.NoError(t, w.Abort())
			_, err = os.Stat(filepath.Join(dir, "chk-2", "big"))
			require.ErrorIs(t, err, fs.ErrNotExist, "the partial file is removed")
			require.NoError(t, st.Discard(ctx, 2))

			// The previous checkpoint is intact and loadable.
			got := requireLatest(t, st, 1)
			require.Equal(t, m1, got)
			data, err := readFile(st, m1.Files()[0])
			require.NoError(t, err)
			require.Equal(t, "one", string(data))

			// With space again, the next checkpoint completes.
			ffs.Clear()
			committed(t, st, 2, "two")
			requireLatest(t, st, 2)
		})
	}
}

func TestSyncFailsAtCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ffs := faultfs.New(checkpoint.OSFS{})
	st := newStorage(t, dir, checkpoint.WithFS(ffs))
	committed(t, st, 1, "one")
	ffs.Inject(faultfs.Fault{Op: faultfs.OpSync, Path: "chk-2", N: 1, Err: syscall.EIO})
	w, err := st.Create(ctx, 2, "f")
	require.NoError(t, err)
	_, err = w.Write([]byte("x"))
	require.NoError(t, err)
	_, err = w.Commit()
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorContains(t, err, "sync chk-2/f")
	_, err = os.Stat(filepath.Join(dir, "chk-2", "f"))
	require.ErrorIs(t, err, fs.ErrNotExist, "a file that failed to commit is removed")
	requireLatest(t, st, 1)
}

func TestDiskFullWritingManifest(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			ffs := faultfs.New(checkpoint.OSFS{})
			st := newStorage(t, dir, checkpoint.WithFS(ffs))
			committed(t, st, 1, "one")
			m2 := manifest(2, writeFile(t, st, 2, "state", []byte("two")))
			ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Path: "manifests", N: 1, Err: syscall.ENOSPC, Torn: torn})
			err := st.Commit(ctx, m2)
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.ErrorContains(t, err, "checkpoint 2")
			requireLatest(t, st, 1)
			ents, err := os.ReadDir(filepath.Join(dir, "manifests"))
			require.NoError(t, err)
			require.Len(t, ents, 1, "no temporary manifest is left")

			ffs.Clear()
			require.NoError(t, st.Commit(ctx, m2), "the same manifest commits once there is space")
			requireLatest(t, st, 2)
		})
	}
}

// crashCommit runs checkpoint 2 on top of a committed checkpoint 1 with the
// given fault, recovers from the crash and returns the storage reopened on
// the real disk and Commit's error.
func crashCommit(t *testing.T, fault faultfs.Fault) (*checkpoint.LocalStorage, error, bool) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	committed(t, newStorage(t, dir), 1, "one")

	ffs := faultfs.New(checkpoint.OSFS{})
	st, err := checkpoint.NewLocalStorage(dir, checkpoint.WithFS(ffs))
	if err == nil {
		ffs.Inject(fault)
		var refs []checkpoint.FileRef
		for i := range 3 {
			var w checkpoint.Writer
			w, err = st.Create(ctx, 2, fmt.Sprintf("op/%d", i))
			if err != nil {
				break
			}
			if _, err = w.Write([]byte(strings.Repeat("two", 1000*(i+1)))); err != nil {
				break
			}
			var ref checkpoint.FileRef
			if ref, err = w.Commit(); err != nil {
				break
			}
			refs = append(refs, ref)
		}
		if err == nil {
			err = st.Commit(ctx, manifest(2, refs...))
		}
	}
	crashed := ffs.Crashed()
	if crashed && err != nil {
		require.ErrorIs(t, err, faultfs.ErrCrashed)
	}
	require.NoError(t, ffs.Recover())
	return newStorage(t, dir), err, crashed
}

func TestCrashBeforeManifestRename(t *testing.T) {
	st, err, crashed := crashCommit(t, faultfs.Fault{Op: faultfs.OpRename, Path: "manifests", N: 1, Crash: faultfs.CrashBefore})
	require.True(t, crashed)
	require.Error(t, err)
	requireLatest(t, st, 1)
	ids, err := st.List(context.Background())
	require.NoError(t, err)
	require.Equal(t, []int64{1}, ids, "checkpoint 2 is not visible")
}

func TestCrashAfterManifestRenameBeforeDirSync(t *testing.T) {
	st, err, crashed := crashCommit(t, faultfs.Fault{Op: faultfs.OpRename, Path: "manifests", N: 1, Crash: faultfs.CrashAfter})
	require.True(t, crashed)
	require.Error(t, err)
	requireLatest(t, st, 1)
}

func TestCrashAfterManifestDirSync(t *testing.T) {
	st, err, crashed := crashCommit(t, faultfs.Fault{Op: faultfs.OpSyncDir, Path: "manifests", N: 1, Crash: faultfs.CrashAfter})
	require.True(t, crashed)
	require.NoError(t, err, "the crash came after the last operation of Commit")
	// The manifest was durable before the crash: the checkpoint survives,
	// and so do its files (their directories were synced before it).
	requireLatest(t, st, 2)
}

// A crash at every single file system operation of writing checkpoint 2:
// afterwards the latest checkpoint is 1 or 2, intact, and 2 if Commit
// succeeded.
func TestCrashAtEveryOperation(t *testing.T) {
	for n := 1; ; n++ {
		st, err, crashed := crashCommit(t, faultfs.Fault{Op: faultfs.OpAny, N: n, Crash: faultfs.CrashBefore})
		if !crashed {
			require.NoError(t, err)
			requireLatest(t, st, 2)
			require.Greater(t, n, 10, "the commit takes more than 10 operations")
			return
		}
		m, lerr := st.Latest(context.Background())
		require.NoError(t, lerr, "crash at operation %d", n)
		require.Contains(t, []int64{1, 2}, m.ID, "crash at operation %d", n)
		require.NoError(t, st.Verify(context.Background(), m), "crash at operation %d", n)
		// The leftovers are cleaned up by the next Prune.
		require.NoError(t, st.Prune(context.Background(), 3))
		require.NoError(t, st.Verify(context.Background(), m), "crash at operation %d", n)
	}
}

func TestCorruptFileDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	data := []byte(strings.Repeat("state ", 10000))
	ref := writeFile(t, st, 1, "keyed", data)
	m := manifest(1, ref)
	require.NoError(t, st.Commit(ctx, m))
	p := filepath.Join(dir, "chk-1", "keyed")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(p, b, 0o644))

	_, err = readFile(st, ref)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "chk-1/keyed")
	require.ErrorContains(t, err, fmt.Sprintf("expected %08x", ref.CRC32C))
	err = st.Verify(ctx, m)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "chk-1/keyed")
}

func TestTruncatedFileDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	ref := writeFile(t, st, 1, "keyed", []byte("0123456789"))
	require.NoError(t, st.Commit(ctx, manifest(1, ref)))
	require.NoError(t, os.Truncate(filepath.Join(dir, "chk-1", "keyed"), 4))
	_, err := st.Open(ctx, ref)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "chk-1/keyed")
	require.ErrorContains(t, err, "has 4 bytes, expected 10")
}

// A file that shrinks after Open is caught at EOF.
func TestFileShrinkingWhileReadDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	ref := writeFile(t, st, 1, "keyed", []byte("0123456789"))
	r, err := st.Open(ctx, ref)
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, os.Truncate(filepath.Join(dir, "chk-1", "keyed"), 6))
	buf := make([]byte, 100)
	var total int
	for err == nil {
		var n int
		n, err = r.Read(buf)
		total += n
	}
	require.Equal(t, 6, total)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "6 bytes, expected 10")
}

func TestMissingFileDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	m := committed(t, st, 3, "three")
	require.NoError(t, os.Remove(filepath.Join(dir, "chk-3", "state")))
	_, err := readFile(st, m.Files()[0])
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "chk-3/state of checkpoint 3 is missing in "+dir)
	require.ErrorIs(t, st.Verify(ctx, m), checkpoint.ErrCorrupt)
}

func TestCorruptManifestNoFallback(t *testing.T) {
	corruptions := map[string]func(b []byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/2] ^= 4; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-10] },
		"empty":        func([]byte) []byte { return nil },
		"garbage":      func([]byte) []byte { return []byte("\x00\x01 not json") },
	}
	for name, corrupt := range corruptions {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			st := newStorage(t, dir)
			m1 := committed(t, st, 1, "one")
			committed(t, st, 2, "two")
			p := filepath.Join(dir, "manifests", "chk-2.json")
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, corrupt(b), 0o644))

			m, err := st.Latest(ctx)
			require.Nil(t, m, "no fall back to checkpoint 1")
			require.ErrorIs(t, err, checkpoint.ErrCorrupt)
			require.ErrorContains(t, err, "latest checkpoint 2")
			require.ErrorContains(t, err, p)
			_, err = st.Load(ctx, 2)
			require.ErrorIs(t, err, checkpoint.ErrCorrupt)
			got, err := st.Load(ctx, 1)
			require.NoError(t, err, "the older manifest can still be loaded explicitly")
			require.Equal(t, m1, got)

			// Prune and Discard refuse to delete anything while a kept
			// manifest cannot be read.
			require.ErrorIs(t, st.Prune(ctx, 1), checkpoint.ErrCorrupt)
			require.ErrorIs(t, st.Discard(ctx, 3), checkpoint.ErrCorrupt)
			require.NoError(t, st.Verify(ctx, m1))
			_, err = os.Stat(filepath.Join(dir, "chk-2", "state"))
			require.NoError(t, err)
		})
	}
}

func TestManifestUnderWrongName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	committed(t, st, 1, "one")
	b, err := os.ReadFile(filepath.Join(dir, "manifests", "chk-1.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifests", "chk-9.json"), b, 0o644))
	_, err = st.Latest(ctx)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "holds checkpoint 1")
}

// unwritable returns an FS on which dir cannot be written: the real disk
// after chmod 0500, or, where that does not stop the process (root), a
// faultfs failing with EACCES the creation of files below dir and of the
// directories missing there.
func unwritable(t *testing.T, dir string, missing ...string) checkpoint.FS {
	t.Helper()
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		require.ErrorIs(t, err, fs.ErrPermission)
		return checkpoint.OSFS{}
	}
	require.NoError(t, os.Remove(probe))
	ffs := faultfs.New(checkpoint.OSFS{})
	ffs.Inject(faultfs.Fault{Op: faultfs.OpCreate, Path: dir + string(filepath.Separator), Err: syscall.EACCES})
	for _, m := range missing {
		ffs.Inject(faultfs.Fault{Op: faultfs.OpMkdirAll, Path: m, Err: syscall.EACCES})
	}
	return ffs
}

func TestUnwritableDirectory(t *testing.T) {
	parent := t.TempDir()
	existing := filepath.Join(parent, "existing")
	require.NoError(t, os.MkdirAll(filepath.Join(existing, "manifests"), 0o755))
	fsys := unwritable(t, parent, filepath.Join(parent, "new"))
	require.NoError(t, os.Chmod(existing, 0o500))
	t.Cleanup(func() { os.Chmod(existing, 0o755) })

	// A directory that cannot be created.
	_, err := checkpoint.NewLocalStorage(filepath.Join(parent, "new"), checkpoint.WithFS(fsys))
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, "cannot create storage directory "+filepath.Join(parent, "new"))

	// A directory that exists but cannot be written to.
	_, err = checkpoint.NewLocalStorage(existing, checkpoint.WithFS(fsys))
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, "storage directory "+existing+" is not writable")
}

func TestStorageDirectoryIsAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	_, err := checkpoint.NewLocalStorage(p)
	require.ErrorContains(t, err, p)
	_, err = checkpoint.OpenLocalStorage(p)
	require.ErrorContains(t, err, p+" is not a directory")
	_, err = checkpoint.NewLocalStorage("")
	require.Error(t, err)
}

func TestOpenLocalStorageReadOnly(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "no-such-savepoint")
	_, err := checkpoint.OpenLocalStorage(missing)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorContains(t, err, missing)

	empty := t.TempDir()
	_, err = checkpoint.OpenLocalStorage(empty)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)
	require.ErrorContains(t, err, empty)
	newStorage(t, empty)
	_, err = checkpoint.OpenLocalStorage(empty)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint, "a storage without manifests")

	dir := t.TempDir()
	m := committed(t, newStorage(t, dir), 4, "four")
	st, err := checkpoint.OpenLocalStorage(dir)
	require.NoError(t, err)
	got := requireLatest(t, st, 4)
	require.Equal(t, m, got)
	_, err = st.Create(ctx, 5, "x")
	require.ErrorIs(t, err, checkpoint.ErrReadOnly)
	require.ErrorIs(t, st.Commit(ctx, m), checkpoint.ErrReadOnly)
	require.ErrorIs(t, st.Discard(ctx, 4), checkpoint.ErrReadOnly)
	require.ErrorIs(t, st.Prune(ctx, 1), checkpoint.ErrReadOnly)
}

func TestCreateRefusesCompletedCheckpointAndDuplicates(t *testing.T) {
	ctx := context.Background()
	st := newStorage(t, t.TempDir())
	m := committed(t, st, 1, "one")
	_, err := st.Create(ctx, 1, "state")
	require.ErrorContains(t, err, "checkpoint 1 is already completed")
	require.NoError(t, st.Verify(ctx, m), "the completed file is untouched")

	w, err := st.Create(ctx, 2, "a")
	require.NoError(t, err)
	_, err = st.Create(ctx, 2, "a")
	require.ErrorContains(t, err, "already being written")
	_, err = w.Write([]byte("a"))
	require.NoError(t, err)
	err = st.Commit(ctx, manifest(2, checkpoint.FileRef{Path: "chk-2/a", Size: 0}))
	require.ErrorContains(t, err, "still being written")
	ref, err := w.Commit()
	require.NoError(t, err)
	require.NoError(t, st.Commit(ctx, manifest(2, ref)))
	_, err = w.Write([]byte("more"))
	require.Error(t, err, "write after Commit")
	_, err = w.Commit()
	require.Error(t, err, "Commit twice")
}

func TestPruneRemovesLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t, dir)
	committed(t, st, 1, "one")
	for _, p := range []string{"manifests/.chk-2.json.tmp", ".probe-0123", "chk-1/stray"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte("x"), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "user-file"), []byte("x"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "chk-7", "empty"), 0o755))
	committed(t, st, 8, "eight")
	require.NoError(t, st.Prune(ctx, 3))
	for _, p := range []string{"manifests/.chk-2.json.tmp", ".probe-0123", "chk-1/stray", "chk-7"} {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
		require.ErrorIs(t, err, fs.ErrNotExist, p)
	}
	_, err := os.Stat(filepath.Join(dir, "user-file"))
	require.NoError(t, err, "files outside the layout are left alone")
	requireLatest(t, st, 8)
	m1, err := st.Load(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, st.Verify(ctx, m1))
}

// Writers for many checkpoints and subtasks at once, with Discard and Prune
// running as checkpoints complete (run with -race).
func TestConcurrentCheckpoints(t *testing.T) {
	ctx := context.Background()
	st := newStorage(t, t.TempDir())
	const subtasks = 8
	for id := int64(1); id <= 6; id++ {
		refs := make([]checkpoint.FileRef, subtasks)
		errs := make([]error, subtasks)
		var adminErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Meanwhile, an older failed checkpoint is discarded and old
			// ones are pruned.
			adminErr = errors.Join(st.Discard(ctx, id-1+100), st.Prune(ctx, 2))
		}()
		var wg = make(chan int, subtasks)
		for s := range subtasks {
			go func() {
				defer func() { wg <- s }()
				w, err := st.Create(ctx, id, fmt.Sprintf("op/%d", s))
				if err != nil {
					errs[s] = err
					return
				}
				for range 20 {
					if _, err = w.Write([]byte(strings.Repeat(fmt.Sprint(id), 1000))); err != nil {
						errs[s] = err
						return
					}
				}
				refs[s], errs[s] = w.Commit()
			}()
		}
		for range subtasks {
			<-wg
		}
		<-done
		require.NoError(t, errors.Join(append(errs, adminErr)...))
		m := &checkpoint.Manifest{Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: id,
			Operators: []checkpoint.OperatorState{{Name: "op", Parallelism: subtasks, Subtasks: make([]checkpoint.SubtaskState, subtasks)}}}
		for s := range subtasks {
			m.Operators[0].Subtasks[s].Operator = &refs[s]
		}
		require.NoError(t, st.Commit(ctx, m))
	}
	require.NoError(t, st.Prune(ctx, 2))
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int64{5, 6}, ids)
	requireLatest(t, st, 6)
}
