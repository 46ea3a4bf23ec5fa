package checkpoint_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/checkpoint/faultfs"
)

// denyWrites makes dir not writable: by its mode, or, where that does not
// stop this process (root), by making ffs refuse to create files in it with
// EACCES, which is what the mode would do.
func denyWrites(t *testing.T, dir string, ffs *faultfs.FS) {
	t.Helper()
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		require.ErrorIs(t, err, fs.ErrPermission)
		return
	}
	require.NoError(t, os.Remove(probe))
	t.Log("the directory's mode does not stop this process (root): EACCES is injected")
	ffs.Inject(faultfs.Fault{Op: faultfs.OpCreate, Path: dir + string(filepath.Separator), Err: syscall.EACCES})
}

// A storage whose directory stopped being writable after it was opened fails
// Probe, naming the directory, and a coordinator refuses to start on it.
func TestProbeUnwritableDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ffs := faultfs.New(checkpoint.OSFS{})
	st, err := checkpoint.NewLocalStorage(dir, checkpoint.WithFS(ffs))
	require.NoError(t, err)
	require.NoError(t, st.Probe(ctx))

	denyWrites(t, dir, ffs)
	err = st.Probe(ctx)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, "storage directory "+dir+" is not writable")

	_, err = checkpoint.NewCoordinator(ctx, checkpoint.CoordinatorConfig{Job: "j", Storage: st, Tasks: 1}, nil)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, `job "j" cannot take checkpoints`)
	require.ErrorContains(t, err, dir)
}

// Probe creates the directory again if it was removed, and refuses a storage
// opened read-only.
func TestProbeRecreatesAndRefusesReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "checkpoints")
	st, err := checkpoint.NewLocalStorage(dir)
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, st.Probe(ctx))
	_, err = os.Stat(filepath.Join(dir, "manifests"))
	require.NoError(t, err)

	committed(t, st, 1, "one")
	ro, err := checkpoint.OpenLocalStorage(dir)
	require.NoError(t, err)
	err = ro.Probe(ctx)
	require.ErrorIs(t, err, checkpoint.ErrReadOnly)
	require.ErrorContains(t, err, dir)
}
