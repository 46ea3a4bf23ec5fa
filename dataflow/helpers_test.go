package dataflow_test

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/dataflow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// event is the record type of most tests: a key and a per-key sequence number.
type event struct {
	Key int64
	Seq int64
}

// funcSource is a Source driven by a function, for tests that need precise control.
type funcSource[T any] struct {
	open func(oc *dataflow.OperatorContext) error
	poll func(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error)
}

func (s *funcSource[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	if s.open != nil {
		return s.open(oc)
	}
	return nil
}
func (s *funcSource[T]) Poll(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	return s.poll(ctx, out)
}
func (s *funcSource[T]) Close() error { return nil }

// opFunc is an Operator made of optional functions.
type opFunc[T any] struct {
	dataflow.OperatorBase
	process   func(v T, ts dataflow.Timestamp) error
	watermark func(wm dataflow.Timestamp) error
	open      func(oc *dataflow.OperatorContext) error
}

func (o *opFunc[T]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	if o.open != nil {
		return o.open(oc)
	}
	return nil
}
func (o *opFunc[T]) Process(v T, ts dataflow.Timestamp) error {
	if o.process != nil {
		return o.process(v, ts)
	}
	return nil
}
func (o *opFunc[T]) ProcessWatermark(wm dataflow.Timestamp) error {
	if o.watermark != nil {
		return o.watermark(wm)
	}
	return nil
}

// guarded is a value shared by subtasks of a test operator.
type guarded[T any] struct {
	mu sync.Mutex
	v  T
}

func (g *guarded[T]) do(f func(v *T)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(&g.v)
}
