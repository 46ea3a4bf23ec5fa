package clickstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// StreamConfig describes the stream the job reads and the stream that holds
// its dead letters.
type StreamConfig struct {
	// Stream is the stream's name (default DefaultStream).
	Stream string
	// SubjectPrefix and Partitions give the partition subjects
	// PREFIX.0 ... PREFIX.<Partitions-1>; the stream takes PREFIX.*.
	SubjectPrefix string
	Partitions    int
	// DeadLetterSubject, if set, is put in a stream of its own,
	// DeadLetterStream (default Stream+"-dlq"), for the job's dead letters.
	DeadLetterSubject string
	DeadLetterStream  string
	// MaxAge bounds how long the streams keep messages; 0 means forever.
	MaxAge time.Duration
	// Memory keeps the streams in memory instead of files.
	Memory bool
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.DeadLetterSubject != "" && c.DeadLetterStream == "" {
		c.DeadLetterStream = c.Stream + "-dlq"
	}
	return c
}

// EnsureStream creates the stream (subjects PREFIX.*) and, if a dead-letter
// subject is configured, the dead-letter stream, unless they exist. A stream
// that exists must already take every partition subject (and the dead-letter
// subject); it is not changed, and an error says which subject it lacks.
func EnsureStream(ctx context.Context, nc *nats.Conn, cfg StreamConfig) error {
	cfg = cfg.withDefaults()
	if cfg.Partitions < 0 {
		return fmt.Errorf("clickstream: stream %s: %d partitions", cfg.Stream, cfg.Partitions)
	}
	js, err := njs.New(nc)
	if err != nil {
		return fmt.Errorf("clickstream: stream %s: %w", cfg.Stream, err)
	}
	storage := njs.FileStorage
	if cfg.Memory {
		storage = njs.MemoryStorage
	}
	if err := ensure(ctx, js, njs.StreamConfig{
		Name: cfg.Stream, Subjects: []string{cfg.SubjectPrefix + ".*"}, Storage: storage, MaxAge: cfg.MaxAge,
		Description: "clickstream player events, partitioned by user",
	}, partitionSubjects(cfg.SubjectPrefix, cfg.Partitions)); err != nil {
		return err
	}
	if cfg.DeadLetterSubject == "" {
		return nil
	}
	return ensure(ctx, js, njs.StreamConfig{
		Name: cfg.DeadLetterStream, Subjects: []string{cfg.DeadLetterSubject}, Storage: storage, MaxAge: cfg.MaxAge,
		Description: "clickstream events that could not be decoded",
	}, []string{cfg.DeadLetterSubject})
}

func ensure(ctx context.Context, js njs.JetStream, sc njs.StreamConfig, need []string) error {
	s, err := js.Stream(ctx, sc.Name)
	if errors.Is(err, njs.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			return fmt.Errorf("clickstream: create stream %s on subjects %v: %w", sc.Name, sc.Subjects, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("clickstream: stream %s: %w", sc.Name, err)
	}
	have := s.CachedInfo().Config.Subjects
	for _, sub := range need {
		covered := false
		for _, pattern := range have {
			if subjectMatches(pattern, sub) {
				covered = true
				break
			}
		}
		if !covered {
			return fmt.Errorf("clickstream: stream %s exists with subjects %v, which do not take %s", sc.Name, have, sub)
		}
	}
	return nil
}

// subjectMatches reports whether the literal subject matches pattern, which
// may hold the wildcards * (one token) and > (the rest).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
