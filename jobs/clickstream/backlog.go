package clickstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/jobs"
)

// Backlog returns how many messages the job's partitions hold from
// cfg.Start to the end of the stream now, malformed ones included: what
// a replay will read (jobs.Definition.Backlog, for jobrunner replay's
// progress). It asks the server with one short-lived consumer per partition,
// which it deletes again.
func Backlog(ctx context.Context, cfg jobs.Config) (int64, error) {
	s, err := parseSettings(cfg)
	if err != nil {
		return 0, err
	}
	start := cfg.Start.String()
	if start == "latest" {
		return 0, nil
	}
	cc := njs.ConsumerConfig{AckPolicy: njs.AckNonePolicy, MemoryStorage: true, InactiveThreshold: 30 * time.Second}
	switch {
	case start == "earliest":
		cc.DeliverPolicy = njs.DeliverAllPolicy
	case strings.HasPrefix(start, "seq:"):
		seq, err := strconv.ParseUint(strings.TrimPrefix(start, "seq:"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("clickstream: backlog of stream %s: start %s: %w", s.stream, start, err)
		}
		cc.DeliverPolicy, cc.OptStartSeq = njs.DeliverByStartSequencePolicy, seq
	case strings.HasPrefix(start, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(start, "time:"))
		if err != nil {
			return 0, fmt.Errorf("clickstream: backlog of stream %s: start %s: %w", s.stream, start, err)
		}
		cc.DeliverPolicy, cc.OptStartTime = njs.DeliverByStartTimePolicy, &t
	default:
		return 0, fmt.Errorf("clickstream: backlog of stream %s: unknown start position %s", s.stream, start)
	}

	nc, err := jetstream.Connect(ctx, cfg.NATS)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		return 0, fmt.Errorf("clickstream: backlog of stream %s: %w", s.stream, err)
	}
	stream, err := js.Stream(ctx, s.stream)
	if errors.Is(err, njs.ErrStreamNotFound) {
		return 0, fmt.Errorf("%w: stream %s on %s", jetstream.ErrStreamNotFound, s.stream, cfg.NATS.URL)
	}
	if err != nil {
		return 0, fmt.Errorf("clickstream: backlog of stream %s: %w", s.stream, err)
	}
	var total int64
	for _, subject := range partitionSubjects(s.prefix, s.partitions) {
		cc.FilterSubject = subject
		cons, err := stream.CreateConsumer(ctx, cc)
		if err != nil {
			return 0, fmt.Errorf("clickstream: backlog of stream %s partition %s: %w", s.stream, subject, err)
		}
		info := cons.CachedInfo()
		total += int64(info.NumPending)
		if err := stream.DeleteConsumer(ctx, info.Name); err != nil && !errors.Is(err, njs.ErrConsumerNotFound) {
			return 0, fmt.Errorf("clickstream: backlog of stream %s partition %s: delete consumer %s: %w", s.stream, subject, info.Name, err)
		}
	}
	return total, nil
}
