package clickstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/jetstream/embedded"
	"github.com/sluicedata/sluice/jobs"
)

// DefaultDemoOutputDir is where Demo puts results when Config.OutputDir is
// empty.
const DefaultDemoOutputDir = "sluice-demo-output"

// Demo prepares `jobrunner run clickstream --demo`: it starts an embedded
// NATS server with JetStream on a free port and a temporary store, makes the
// stream and the dead-letter stream (EnsureStream), points cfg.NATS at the
// server, sets cfg.OutputDir to a new subdirectory run-<UTC time> of
// cfg.OutputDir (DefaultDemoOutputDir if empty), so that every demo writes
// fresh results beside the earlier ones (Build refuses a directory that holds
// an earlier run's results), and starts the generator in the background: demo-events events
// (default 200 000, ten minutes of event time) at demo-rate events per second
// (default 50 000), with the given seed and the job's stream parameters.
//
// ready is closed once every event was published; if the generator fails
// it stays open, the error is logged, and stop returns it. stop stops the
// generator, closes the connection, shuts the server down and deletes its
// store; it returns the generator's error, if any. The job should be stopped
// before stop is called: its source loses the server.
func Demo(ctx context.Context, cfg *jobs.Config) (stop func() error, ready <-chan struct{}, err error) {
	s, err := parseSettings(*cfg)
	if err != nil {
		return nil, nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	gen := DefaultGeneratorConfig()
	gen.Stream, gen.SubjectPrefix, gen.Partitions = s.stream, s.prefix, s.partitions
	gen.Count, gen.Rate, gen.Seed = s.demoEvents, s.demoRate, s.seed
	// Late events reach up to three windows back, and on-time events stay
	// within the job's out-of-orderness.
	gen.OutOfOrder = min(gen.OutOfOrder, s.outOfOrder)
	gen.MaxLateness = max(3*s.window, gen.OutOfOrder+time.Second)
	if err := gen.Validate(); err != nil {
		return nil, nil, err
	}

	dir, err := os.MkdirTemp("", "sluice-clickstream-demo-")
	if err != nil {
		return nil, nil, fmt.Errorf("clickstream: demo: store directory: %w", err)
	}
	srv, err := embedded.Start(embedded.Config{Dir: dir, Name: "sluice-clickstream-demo"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("clickstream: demo: %w", err)
	}
	conn := jetstream.ConnConfig{URL: srv.URL(), Name: "clickstream-demo-generator"}
	nc, err := jetstream.Connect(ctx, conn)
	if err == nil {
		err = EnsureStream(ctx, nc, StreamConfig{Stream: s.stream, SubjectPrefix: s.prefix, Partitions: s.partitions,
			DeadLetterSubject: s.deadLetter})
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		srv.Shutdown()
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("clickstream: demo: %w", err)
	}

	cfg.NATS = jetstream.ConnConfig{URL: srv.URL()}
	base := cfg.OutputDir
	if base == "" {
		base = DefaultDemoOutputDir
	}
	cfg.OutputDir = filepath.Join(base, "run-"+time.Now().UTC().Format("20060102T150405.000Z"))
	log.Info("clickstream demo: embedded NATS server started; publishing events",
		"url", srv.URL(), "stream", s.stream, "events", gen.Count, "rate", gen.Rate, "output", cfg.OutputDir)

	// The generator outlives Demo's ctx (which may only cover the setup);
	// stop ends it.
	genCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	readyCh := make(chan struct{})
	done := make(chan struct{})
	var genErr error
	go func() {
		defer close(done)
		began := time.Now()
		n, err := Generate(genCtx, nc, gen)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				genErr = err
				log.Error("clickstream demo: generator failed", "published", n, "err", err)
			}
			return
		}
		log.Info("clickstream demo: all events published", "events", n, "took", time.Since(began).Round(time.Millisecond))
		close(readyCh)
	}()

	var once sync.Once
	stop = func() error {
		once.Do(func() {
			cancel()
			<-done
			nc.Close()
			srv.Shutdown()
			if err := os.RemoveAll(dir); err != nil && genErr == nil {
				genErr = fmt.Errorf("clickstream: demo: remove store directory: %w", err)
			}
		})
		return genErr
	}
	return stop, readyCh, nil
}
