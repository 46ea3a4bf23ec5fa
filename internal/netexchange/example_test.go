package netexchange_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/internal/exchange"
	"github.com/sluicedata/sluice/internal/netexchange"
)

type click struct {
	User string
	N    int64
}

// A producer on node A writes through a Sender to the gate of a consumer on
// node B; a watermark follows the records written before it.
func Example() {
	dir, _ := os.MkdirTemp("", "nats")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx := context.Background()
	subject := netexchange.Subject("sluice.clicks.attempt1", "count", 0, 0)
	cfg := netexchange.DefaultConfig[click]()

	// Node B: the consumer's gate, channel 0 fed by the receiver.
	ncB, _ := nats.Connect(srv.URL())
	defer ncB.Close()
	gate := exchange.NewGate[click](1, 4, 2, nil)
	r, err := netexchange.NewReceiver(ncB, subject, gate, 0, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	received := make(chan error, 1)
	go func() { received <- r.Run(ctx) }()

	// Node A: the producer's writer, whose one target is remote.
	ncA, _ := nats.Connect(srv.URL())
	defer ncA.Close()
	s, err := netexchange.NewSender(ncA, subject, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	w, _ := exchange.NewWriter([]exchange.Target[click]{{Remote: s}}, exchange.RoundRobin, 0, 128, 2)
	for i, u := range []string{"ann", "bob", "cy"} {
		_ = w.Write(ctx, click{User: u, N: int64(i)})
	}
	_ = w.Emit(ctx, exchange.Event{Kind: exchange.Watermark, Value: 30})
	_ = w.Emit(ctx, exchange.Event{Kind: exchange.EndOfInput})

	for {
		_, m, ok := gate.Poll()
		if !ok {
			_ = gate.Wait(ctx)
			continue
		}
		if m.Batch == nil {
			fmt.Println("event", m.Event.Kind, m.Event.Value)
			if m.Event.Kind == exchange.EndOfInput {
				break
			}
			continue
		}
		fmt.Println("batch", m.Batch.Records)
		gate.Recycle(0, m.Batch)
	}
	fmt.Println("receiver:", <-received)
	// Output:
	// batch [{ann 0} {bob 1}]
	// batch [{cy 2}]
	// event 1 30
	// event 3 0
	// receiver: <nil>
}
