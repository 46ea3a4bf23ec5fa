package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

// TestAPIRequestsAreBounded: a JetStream API request whose response never
// comes (the server restarted after it received it, say) fails the source
// after apiTimeout, even when the job's context has a far deadline (with
// which nats.go applies no timeout of its own).
func TestAPIRequestsAreBounded(t *testing.T) {
	defer func(d time.Duration) { apiTimeout = d }(apiTimeout)
	apiTimeout = 100 * time.Millisecond

	// A server without JetStream, where a subscriber swallows API requests.
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) {})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	src, err := NewSource(SourceConfig[[]byte]{Conn: ConnConfig{URL: srv.ClientURL()}, Stream: "VIEWS"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err = src.Open(ctx, &dataflow.OperatorContext{Job: "j", Operator: "views", Parallelism: 1, MaxParallelism: 128})
	require.NoError(t, src.Close())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "stream VIEWS on "+srv.ClientURL())
	require.Less(t, time.Since(start), 10*time.Second, "bounded by apiTimeout, not by the job's context")
}
