package dataflow

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Timestamped is a value with its event time.
type Timestamped[T any] struct {
	Value     T
	Timestamp Timestamp
}

// TestHarness runs a pipeline synchronously in the caller's goroutine, with
// scripted event time and processing time, in the spirit of Beam's TestStream
// and Flink's operator test harnesses: add elements with timestamps, advance
// the watermark, advance processing time, and read what came out after each
// step. Nothing sleeps and nothing races: each call returns when its effects
// are done.
//
// The pipeline is what build makes of the input stream. It runs as one task:
// every operator at parallelism 1 (any exchange between single subtasks is
// chained), so keyed state, timers and windows behave as in a job at
// parallelism 1. Processing time starts at the Unix epoch and moves only with
// AdvanceProcessingTime; it is the Clock of the job's Config.
//
// A TestHarness is not safe for concurrent use. After an error it is failed:
// every later call returns that error.
type TestHarness[In, Out any] struct {
	t      *task
	src    *harnessSource[In]
	out    []Timestamped[Out]
	wms    []Timestamp
	now    time.Time
	err    error
	closed bool
}

// NewTestHarness builds the pipeline and opens its operators. cfg, if given,
// sets everything but Parallelism (1) and Clock (the harness's).
func NewTestHarness[In, Out any](build func(in Stream[In]) Stream[Out], cfg ...Config) (*TestHarness[In, Out], error) {
	h := &TestHarness[In, Out]{src: &harnessSource[In]{}, now: time.Unix(0, 0).UTC()}
	var c Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.Parallelism = 1
	c.Clock = func() time.Time { return h.now }
	job := NewJob("test-harness", c)
	in := AddSource(job, "harness-input", func() Source[In] { return h.src })
	out := build(in)
	AddSink(out, "harness-output", func() Operator[Out] { return &harnessSink[In, Out]{h: h} })
	compiled, err := job.compile()
	if err != nil {
		return nil, err
	}
	if len(compiled.chains) != 1 {
		names := make([]string, len(compiled.chains))
		for i, ch := range compiled.chains {
			names[i] = fmt.Sprintf("[%s] x%d", ch.name(), ch.par)
		}
		return nil, fmt.Errorf("dataflow: test harness: the pipeline must run as one task (parallelism 1, chaining enabled), got %d: %v", len(names), names)
	}
	tasks, err := job.instantiate(compiled, nil)
	if err != nil {
		return nil, err
	}
	h.t = tasks[0]
	h.t.ctx = context.Background()
	if err := h.t.guard(h.t.open); err != nil {
		h.fail(err)
		return nil, err
	}
	return h, nil
}

// ErrHarnessClosed is returned by a TestHarness used after Finish or Close.
var ErrHarnessClosed = errors.New("dataflow: test harness closed")

func (h *TestHarness[In, Out]) fail(err error) error {
	if h.err == nil {
		h.err = err
		if !h.closed {
			h.closed = true
			_ = h.t.closeOps()
		}
	}
	return h.err
}

func (h *TestHarness[In, Out]) usable() error {
	if h.err != nil {
		return h.err
	}
	if h.closed {
		return ErrHarnessClosed
	}
	return nil
}

// drive polls the input once: everything queued flows through the pipeline.
func (h *TestHarness[In, Out]) drive() error {
	err := h.t.guard(func() error {
		h.t.polling = true
		defer func() { h.t.polling = false }()
		_, err := h.t.src.poll(h.t.ctx)
		h.t.flushBatches()
		if err != nil {
			return h.t.opErr(0, err)
		}
		return nil
	})
	if err != nil {
		return h.fail(err)
	}
	return nil
}

// Add processes v with event time ts.
func (h *TestHarness[In, Out]) Add(v In, ts time.Time) error {
	if err := h.usable(); err != nil {
		return err
	}
	h.src.queue = append(h.src.queue, harnessStep[In]{v: v, ts: TimestampOf(ts)})
	return h.drive()
}

// AddAt processes v with event time ts given as a Timestamp (NoTimestamp for none).
func (h *TestHarness[In, Out]) AddAt(v In, ts Timestamp) error {
	if err := h.usable(); err != nil {
		return err
	}
	h.src.queue = append(h.src.queue, harnessStep[In]{v: v, ts: ts})
	return h.drive()
}

// AdvanceWatermark moves the input watermark to wm: event-time timers and
// windows up to wm fire. A watermark that does not advance is ignored.
func (h *TestHarness[In, Out]) AdvanceWatermark(wm time.Time) error {
	return h.AdvanceWatermarkTo(TimestampOf(wm))
}

// AdvanceWatermarkTo is AdvanceWatermark with a Timestamp.
func (h *TestHarness[In, Out]) AdvanceWatermarkTo(wm Timestamp) error {
	if err := h.usable(); err != nil {
		return err
	}
	h.src.queue = append(h.src.queue, harnessStep[In]{watermark: true, ts: wm})
	return h.drive()
}

// AdvanceProcessingTime moves processing time forward by d: processing-time
// timers up to the new time fire, in time order.
func (h *TestHarness[In, Out]) AdvanceProcessingTime(d time.Duration) error {
	if err := h.usable(); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("dataflow: test harness: processing time cannot go back (%v)", d)
	}
	h.now = h.now.Add(d)
	if err := h.t.guard(func() error { h.t.fireProcessingTimers(h.now); return nil }); err != nil {
		return h.fail(err)
	}
	return nil
}

// ProcessingTime is the harness's current processing time.
func (h *TestHarness[In, Out]) ProcessingTime() time.Time { return h.now }

// Finish ends the input as a bounded source would: MaxWatermark (every
// event-time timer and window fires), then every operator's Finish, then Close.
func (h *TestHarness[In, Out]) Finish() error {
	if err := h.usable(); err != nil {
		return err
	}
	err := h.t.guard(func() error {
		h.t.src.emitWatermark(MaxWatermark)
		return h.t.finish()
	})
	if err != nil {
		return h.fail(err)
	}
	h.closed = true
	return h.t.closeOps()
}

// Close releases the pipeline without finishing it (pending windows and timers
// do not fire). It is safe to call after Finish or a failure.
func (h *TestHarness[In, Out]) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	return h.t.closeOps()
}

// Output returns everything the pipeline emitted so far, in order.
func (h *TestHarness[In, Out]) Output() []Timestamped[Out] { return h.out }

// TakeOutput returns what the pipeline emitted since the last TakeOutput and
// forgets it.
func (h *TestHarness[In, Out]) TakeOutput() []Timestamped[Out] {
	out := h.out
	h.out = nil
	return out
}

// Values returns the values of Output.
func (h *TestHarness[In, Out]) Values() []Out {
	vs := make([]Out, len(h.out))
	for i, r := range h.out {
		vs[i] = r.Value
	}
	return vs
}

// Watermarks returns the watermarks that reached the end of the pipeline.
func (h *TestHarness[In, Out]) Watermarks() []Timestamp { return h.wms }

type harnessStep[T any] struct {
	v         T
	ts        Timestamp
	watermark bool
}

type harnessSource[T any] struct {
	queue []harnessStep[T]
	n     int
}

func (s *harnessSource[T]) Open(context.Context, *OperatorContext) error { return nil }
func (s *harnessSource[T]) Close() error                                 { return nil }

func (s *harnessSource[T]) Poll(_ context.Context, out Output[T]) (SourceStatus, error) {
	for len(s.queue) > 0 {
		st := s.queue[0]
		s.queue = s.queue[1:]
		if st.watermark {
			out.EmitWatermark(st.ts)
			continue
		}
		s.n++
		out.Collect(st.v, st.ts)
	}
	return NothingAvailable, nil
}

func (s *harnessSource[T]) Position() string { return fmt.Sprintf("harness input #%d", s.n) }

type harnessSink[In, Out any] struct {
	OperatorBase
	h *TestHarness[In, Out]
}

func (s *harnessSink[In, Out]) Process(v Out, ts Timestamp) error {
	s.h.out = append(s.h.out, Timestamped[Out]{Value: v, Timestamp: ts})
	return nil
}

func (s *harnessSink[In, Out]) ProcessWatermark(wm Timestamp) error {
	s.h.wms = append(s.h.wms, wm)
	return nil
}
