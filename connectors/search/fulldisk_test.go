package search_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

// smallDisk mounts a tmpfs of size (as mount's size option, "1m") at a new
// directory and returns it; remount changes its size. It needs root (CI runs
// as root); elsewhere the test is skipped, unless CI is set.
func smallDisk(t *testing.T, size string) (dir string, remount func(size string)) {
	t.Helper()
	dir = t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := "mounting a small tmpfs to fill needs root: " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir, func(size string) {
		out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput()
		require.NoError(t, err, "remount: %s", out)
	}
}

// TestBleveFullDisk fills the index's disk: the commit fails with an error
// naming the sink, the index and the cause; readers see whole epochs only;
// and once there is room the epoch commits from its checkpoint.
func TestBleveFullDisk(t *testing.T) {
	disk, remount := smallDisk(t, "2m")
	path := filepath.Join(disk, "index")
	cfg := search.BleveConfig[event]{Path: path, ID: eventID}
	op := openBleveOp(t, cfg, 0, 1, nil)

	const perEpoch = 500
	long := strings.Repeat("lorem ipsum dolor sit amet ", 8)
	var state []byte
	var err error
	ckpt := int64(0)
	for err == nil && ckpt < 200 {
		ckpt++
		for i := (ckpt - 1) * perEpoch; i < ckpt*perEpoch; i++ {
			e := eventOf(i)
			e.Kind = long + e.Kind
			require.NoError(t, op.Process(e, dataflow.NoTimestamp))
		}
		state = snapshot(t, op, ckpt)
		err = op.NotifyCheckpointComplete(context.Background(), ckpt)
	}
	require.Error(t, err, "2 MiB filled up")
	t.Logf("commit of checkpoint %d failed: %v", ckpt, err)
	require.ErrorIs(t, err, search.ErrIndex)
	require.ErrorContains(t, err, `Bleve sink "idx"`)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "no space left on device")

	closed := make(chan error, 1)
	go func() { closed <- op.Close() }()
	select {
	case err := <-closed:
		t.Logf("close on a full disk: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on a full disk")
	}

	// With room again, the index holds whole epochs only, and a restore
	// from the failed epoch's checkpoint commits it.
	remount("64m")
	ids := indexedIDs(t, path)
	require.Zero(t, len(ids)%perEpoch, "whole epochs only: %d documents", len(ids))
	require.Equal(t, idRange(0, int64(len(ids))), ids)
	re := openBleveOp(t, cfg, 0, 1, restored(ckpt, state))
	require.Equal(t, idRange(0, ckpt*perEpoch), indexedIDs(t, path))
	require.NoError(t, re.Close())
}
