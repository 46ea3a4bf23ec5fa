package dataflow

import (
	"errors"
	"fmt"
	"time"
)

// ErrWatermarks is wrapped by the errors of an invalid WatermarkStrategy.
var ErrWatermarks = errors.New("dataflow: invalid watermark strategy")

// WatermarkGenerator derives the watermark of one source partition from the
// timestamps of its records. It is used by one goroutine.
type WatermarkGenerator interface {
	// OnEvent sees the timestamp of every record of the partition, in order.
	OnEvent(ts Timestamp)
	// Current is the partition's watermark: the claim that no later record of
	// the partition has a timestamp at or below it. MinWatermark if unknown.
	Current() Timestamp
}

// WatermarkStrategy says how a source assigns event time to records and
// generates watermarks: a timestamp function, a generator per partition, and
// an optional idleness timeout. Make one with BoundedOutOfOrderness, Monotonic
// or CustomWatermarks.
type WatermarkStrategy[T any] struct {
	ts       func(T) time.Time
	gen      func() WatermarkGenerator
	idleness time.Duration
	err      error
}

// BoundedOutOfOrderness expects records to arrive at most maxOutOfOrderness
// later than records with a later timestamp: the watermark is the largest
// timestamp seen minus maxOutOfOrderness, minus 1ns (a record exactly at the
// bound is still on time).
func BoundedOutOfOrderness[T any](maxOutOfOrderness time.Duration, ts func(T) time.Time) WatermarkStrategy[T] {
	s := WatermarkStrategy[T]{ts: ts, gen: func() WatermarkGenerator { return &boundedGen{delay: Timestamp(maxOutOfOrderness), max: MinWatermark} }}
	if maxOutOfOrderness < 0 {
		s.err = fmt.Errorf("%w: negative out-of-orderness %v", ErrWatermarks, maxOutOfOrderness)
	}
	return s.check()
}

// Monotonic expects timestamps that never decrease within a partition.
func Monotonic[T any](ts func(T) time.Time) WatermarkStrategy[T] {
	return BoundedOutOfOrderness(0, ts)
}

// CustomWatermarks uses newGenerator to make each partition's generator.
func CustomWatermarks[T any](ts func(T) time.Time, newGenerator func() WatermarkGenerator) WatermarkStrategy[T] {
	s := WatermarkStrategy[T]{ts: ts, gen: newGenerator}
	if newGenerator == nil {
		s.err = fmt.Errorf("%w: nil generator", ErrWatermarks)
	}
	return s.check()
}

func (s WatermarkStrategy[T]) check() WatermarkStrategy[T] {
	if s.ts == nil && s.err == nil {
		s.err = fmt.Errorf("%w: missing timestamp function", ErrWatermarks)
	}
	return s
}

// WithIdleness marks a partition idle when it has had no record for d of
// processing time: it stops holding the watermark back until it has data again.
func (s WatermarkStrategy[T]) WithIdleness(d time.Duration) WatermarkStrategy[T] {
	if d <= 0 && s.err == nil {
		s.err = fmt.Errorf("%w: idleness timeout %v must be positive", ErrWatermarks, d)
	}
	s.idleness = d
	return s
}

// IsZero reports whether s is the zero strategy (no event time).
func (s WatermarkStrategy[T]) IsZero() bool { return s.ts == nil && s.gen == nil && s.err == nil }

// Validate reports a strategy built with invalid arguments.
func (s WatermarkStrategy[T]) Validate() error { return s.err }

// Timestamp is the event time of v.
func (s WatermarkStrategy[T]) Timestamp(v T) Timestamp { return TimestampOf(s.ts(v)) }

type boundedGen struct {
	delay, max Timestamp
}

func (g *boundedGen) OnEvent(ts Timestamp) {
	if ts > g.max {
		g.max = ts
	}
}

func (g *boundedGen) Current() Timestamp {
	if g.max == MinWatermark || g.max < MinWatermark+g.delay+1 {
		return MinWatermark
	}
	return g.max - g.delay - 1
}

// PartitionWatermarks combines the watermarks of a source subtask's
// partitions: the minimum over the partitions that are not idle, never going
// backwards. Sources use it; it is used by one goroutine.
type PartitionWatermarks[T any] struct {
	s     WatermarkStrategy[T]
	now   func() time.Time
	parts []partitionWm
	last  Timestamp
}

type partitionWm struct {
	gen     WatermarkGenerator
	lastRec time.Time
	active  bool // has had a record
}

// NewPartitions tracks n partitions (n may grow with AddPartition). now is the
// processing-time clock for idleness; nil means time.Now.
func (s WatermarkStrategy[T]) NewPartitions(n int, now func() time.Time) *PartitionWatermarks[T] {
	if now == nil {
		now = time.Now
	}
	p := &PartitionWatermarks[T]{s: s, now: now, last: MinWatermark}
	for range n {
		p.AddPartition()
	}
	return p
}

// AddPartition adds a partition and returns its index.
func (p *PartitionWatermarks[T]) AddPartition() int {
	p.parts = append(p.parts, partitionWm{gen: p.s.gen(), lastRec: p.now()})
	return len(p.parts) - 1
}

// Observe records v arriving on partition and returns v's timestamp.
func (p *PartitionWatermarks[T]) Observe(partition int, v T) Timestamp {
	ts := p.s.Timestamp(v)
	pt := &p.parts[partition]
	pt.gen.OnEvent(ts)
	pt.active = true
	if p.s.idleness > 0 {
		pt.lastRec = p.now()
	}
	return ts
}

// Current returns the combined watermark and whether every partition is idle.
// A partition that never had a record holds the watermark at MinWatermark
// until it has been idle for the idleness timeout (without a timeout, forever).
func (p *PartitionWatermarks[T]) Current() (wm Timestamp, idle bool) {
	var now time.Time
	if p.s.idleness > 0 {
		now = p.now()
	}
	minWm, live := MaxWatermark, false
	for i := range p.parts {
		pt := &p.parts[i]
		if p.s.idleness > 0 && now.Sub(pt.lastRec) >= p.s.idleness {
			continue
		}
		live = true
		w := MinWatermark
		if pt.active {
			w = pt.gen.Current()
		}
		minWm = min(minWm, w)
	}
	if !live {
		return p.last, len(p.parts) > 0
	}
	if minWm > p.last {
		p.last = minWm
	}
	return p.last, false
}
