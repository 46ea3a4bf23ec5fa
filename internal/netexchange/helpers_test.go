package netexchange

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/internal/exchange"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rec is a small record, as in the benchmark.
type rec struct {
	A, B int64
	S    string
}

// crec is rec with msgpack methods of its own, which the Msgpack codec
// calls directly.
type crec rec

func (r *crec) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeInt(r.A); err != nil {
		return err
	}
	if err := enc.EncodeInt(r.B); err != nil {
		return err
	}
	return enc.EncodeString(r.S)
}

func (r *crec) DecodeMsgpack(dec *msgpack.Decoder) (err error) {
	if r.A, err = dec.DecodeInt64(); err != nil {
		return err
	}
	if r.B, err = dec.DecodeInt64(); err != nil {
		return err
	}
	r.S, err = dec.DecodeString()
	return err
}

// startServer starts an embedded NATS server on a random port for the test.
func startServer(t testing.TB) string {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return srv.URL()
}

// connect opens a connection closed at the end of the test.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// localNATS returns the URL of the NATS server installed on this machine if
// one answers on 127.0.0.1:4222, else skips the test; with CI set (.ci/run
// starts that server) a missing server fails it.
func localNATS(t *testing.T) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:4222", 200*time.Millisecond)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but no NATS server answers on 127.0.0.1:4222: %v", err)
		}
		t.Skipf("no NATS server on 127.0.0.1:4222: %v", err)
	}
	c.Close()
	return "nats://127.0.0.1:4222"
}

// testConfig reacts fast to lost grants so tests do not wait long.
func testConfig() Config[rec] {
	cfg := DefaultConfig[rec]()
	cfg.RegrantInterval = 10 * time.Millisecond
	return cfg
}

// pipe is a sender on one connection and a receiver feeding channel 0 of
// gate on another, as on two nodes.
type pipe[E any] struct {
	s    *Sender[E]
	r    *Receiver[E]
	gate *exchange.Gate[E]
	errc chan error // Run's result
}

// newPipe starts the receiver's Run; the test's cleanup cancels it and
// closes both ends.
func newPipe[E any](t testing.TB, url, subject string, cfg Config[E], gate *exchange.Gate[E]) *pipe[E] {
	t.Helper()
	s, err := NewSender(connect(t, url), subject, cfg)
	require.NoError(t, err)
	r, err := NewReceiver(connect(t, url), subject, gate, 0, cfg)
	require.NoError(t, err)
	p := &pipe[E]{s: s, r: r, gate: gate, errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { p.errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, s.Close())
		require.NoError(t, r.Close())
	})
	return p
}

// item is a record or an event as the consumer sees it, for comparing
// sequences.
type item struct {
	Rec   rec
	Event exchange.Event
	Keyed bool
	KG    uint16
}

// consume polls channel 0 of g until the end of input and returns what came,
// checking that batches carry key groups exactly when keyed.
func consume(ctx context.Context, g *exchange.Gate[rec]) ([]item, error) {
	var got []item
	for {
		_, m, ok := g.Poll()
		if !ok {
			if err := g.Wait(ctx); err != nil {
				return got, err
			}
			continue
		}
		if m.Batch == nil {
			got = append(got, item{Event: m.Event})
			if m.Event.Kind == exchange.EndOfInput {
				return got, nil
			}
			continue
		}
		for i, r := range m.Batch.Records {
			it := item{Rec: r}
			if m.Batch.KeyGroups != nil {
				it.Keyed, it.KG = true, m.Batch.KeyGroups[i]
			}
			got = append(got, it)
		}
		g.Recycle(0, m.Batch)
	}
}

type consumed struct {
	got []item
	err error
}

// consumeAsync runs consume on its own goroutine, as the consumer task
// would, so that the test can produce more than the channel holds.
func consumeAsync(ctx context.Context, g *exchange.Gate[rec]) <-chan consumed {
	c := make(chan consumed, 1)
	go func() {
		got, err := consume(ctx, g)
		c <- consumed{got, err}
	}()
	return c
}
