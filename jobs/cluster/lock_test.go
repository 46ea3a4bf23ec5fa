package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func quietConfig(id, dir string) Config {
	return Config{NodeID: id, RaftAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:1", DataDir: dir,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func inUse(dir string, pid int) string {
	return fmt.Sprintf("cluster: data directory in use: %s is held by the node of process %d (lock %s)",
		dir, pid, filepath.Join(dir, "LOCK"))
}

func TestADataDirInUseIsRefusedInTheSameProcess(t *testing.T) {
	dir := t.TempDir()
	first := startNode(t, "n1", dir, "", "", 1)
	_, err := Start(ctxT(t), quietConfig("n2", dir))
	require.ErrorIs(t, err, ErrDataDirInUse)
	require.EqualError(t, err, inUse(dir, os.Getpid()))
	// The refused Start took nothing from the first node, which goes on.
	waitFor(t, first.Node, "n1 registered", func(s *State) bool { return s.Nodes["n1"] != nil && s.Nodes["n1"].Up })

	// Once the holder stops, the directory is free again.
	first.kill(t)
	again, err := Start(ctxT(t), quietConfig("n1", dir))
	require.NoError(t, err)
	require.NoError(t, again.Close())
}

// TestHelperProcessHoldsADataDir is the other process of
// TestADataDirInUseIsRefusedAcrossProcesses: it runs a node on
// $SLUICE_CLUSTER_HOLD_DIR, says "ready", and stops when its stdin closes.
func TestHelperProcessHoldsADataDir(t *testing.T) {
	dir := os.Getenv("SLUICE_CLUSTER_HOLD_DIR")
	if dir == "" {
		t.Skip("the helper of TestADataDirInUseIsRefusedAcrossProcesses")
	}
	n, err := Start(context.Background(), quietConfig("holder", dir))
	require.NoError(t, err)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	require.NoError(t, n.Close())
}

func TestADataDirInUseIsRefusedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHoldsADataDir$", "-test.v")
	cmd.Env = append(os.Environ(), "SLUICE_CLUSTER_HOLD_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	done := false
	t.Cleanup(func() {
		if !done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// The helper prints "ready" once its node runs; on failure its stdout
	// ends first.
	lines := bufio.NewScanner(stdout)
	ready := false
	for !ready && lines.Scan() {
		ready = lines.Text() == "ready"
	}
	require.True(t, ready, "the helper process did not start its node")

	_, err = Start(ctxT(t), quietConfig("n2", dir))
	require.ErrorIs(t, err, ErrDataDirInUse)
	require.EqualError(t, err, inUse(dir, cmd.Process.Pid))

	require.NoError(t, stdin.Close())
	_, _ = io.Copy(io.Discard, stdout)
	require.NoError(t, cmd.Wait())
	done = true
	// The holder is gone, and with it its lock.
	n, err := Start(ctxT(t), quietConfig("holder", dir))
	require.NoError(t, err)
	require.NoError(t, n.Close())
}
