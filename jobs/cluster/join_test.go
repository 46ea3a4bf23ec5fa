package cluster

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestJoiningAnUnreachableAddressFailsWithinJoinTimeout(t *testing.T) {
	addr := closedAddr(t)
	cfg := quietConfig("b", t.TempDir())
	cfg.Join, cfg.JoinTimeout = addr, 300*time.Millisecond
	start := time.Now()
	n, err := Start(ctxT(t), cfg) // ctxT allows 20 s: JoinTimeout ends it
	took := time.Since(start)
	require.Nil(t, n)
	require.ErrorIs(t, err, ErrJoinUnreachable)
	require.EqualError(t, err, fmt.Sprintf(`cluster: join address unreachable: node "b" could not join through %[1]s within 300ms: `+
		`call %[1]s: Post "http://%[1]s/v1/cluster/join": dial tcp %[1]s: connect: connection refused`, addr))
	require.Less(t, took, 5*time.Second, "Start took %s", took)

	// The failed Start released the data directory.
	cfg.Join = ""
	n, err = Start(ctxT(t), cfg)
	require.NoError(t, err)
	require.NoError(t, n.Close())
}
