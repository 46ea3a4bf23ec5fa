package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestartKeepsPortAndStreams(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	url, port := srv.URL(), srv.Port()
	require.NotEqual(t, 4222, port)
	require.True(t, srv.Running())

	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "s.1", []byte("hello"))
	require.NoError(t, err)

	require.NoError(t, srv.Restart())
	require.Equal(t, url, srv.URL())
	require.Equal(t, port, srv.Port())

	// The client reconnects by itself and finds the stream and its message.
	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	var s jetstream.Stream
	require.Eventually(t, func() bool { s, err = js.Stream(ctx, "S"); return err == nil }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, uint64(1), s.CachedInfo().State.Msgs)

	srv.Shutdown()
	srv.Shutdown() // twice is fine
	require.False(t, srv.Running())
	require.NoError(t, srv.Restart(), "a stopped server starts again")
	require.True(t, srv.Running())
}

func TestAuthentication(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir(), User: "sluice", Password: "secret"})
	require.NoError(t, err)
	defer srv.Shutdown()
	_, err = nats.Connect(srv.URL(), nats.UserInfo("sluice", "wrong"))
	require.ErrorContains(t, err, "Authorization Violation")
	nc, err := nats.Connect(srv.URL(), nats.UserInfo("sluice", "secret"))
	require.NoError(t, err)
	nc.Close()
}

func TestStartErrors(t *testing.T) {
	_, err := embedded.Start(embedded.Config{})
	require.ErrorIs(t, err, embedded.ErrStart)
	require.ErrorContains(t, err, "Dir")

	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer srv.Shutdown()
	_, err = embedded.Start(embedded.Config{Dir: t.TempDir(), Port: srv.Port(), ReadyTimeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, embedded.ErrStart)
	require.ErrorContains(t, err, "port in use")
}
