package dataflow

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

type nopSource struct{}

func (nopSource) Open(context.Context, *OperatorContext) error { return nil }
func (nopSource) Poll(context.Context, Output[int]) (SourceStatus, error) {
	return EndOfInput, nil
}
func (nopSource) Close() error { return nil }

type nopOp struct{ OperatorBase }

func (nopOp) Process(int, Timestamp) error { return nil }

// The builder API cannot make a cycle, but the compiler must still refuse one
// rather than hang, should a future API (iterations) allow it.
func TestCycleIsRejected(t *testing.T) {
	job := NewJob("cycle")
	src := AddSource(job, "src", func() Source[int] { return nopSource{} })
	a := AddOperator(Union(src), "a", func(out Output[int]) Operator[int] { return nopOp{} })
	b := AddOperator(a, "b", func(out Output[int]) Operator[int] { return nopOp{} })
	AddSink(b, "sink", func() Operator[int] { return nopOp{} })
	// Feed b back into a.
	na, nb := a.srcs[0].n, b.srcs[0].n
	e := &edge{from: nb, port: nb.ports[0], to: na, part: partForward}
	nb.ports[0].consumers = append(nb.ports[0].consumers, e)
	na.inputs = append(na.inputs, e)
	err := job.Validate()
	require.ErrorIs(t, err, ErrCycle)
	require.ErrorContains(t, err, `through operators "a", "b", "sink"`)
	require.ErrorIs(t, job.Run(context.Background()), ErrCycle)
}
