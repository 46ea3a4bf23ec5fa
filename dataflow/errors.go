package dataflow

import (
	"errors"
	"fmt"
)

// Build-time errors. Job.Validate, Job.Plan and Job.Run return them wrapped with
// the operator they concern; test with errors.Is.
var (
	ErrDuplicateName  = errors.New("dataflow: operator name used twice")
	ErrEmptyName      = errors.New("dataflow: operator name is empty")
	ErrNilFunction    = errors.New("dataflow: nil function")
	ErrNoConsumer     = errors.New("dataflow: stream has no consumer")
	ErrNoSink         = errors.New("dataflow: job has no sink")
	ErrNoSource       = errors.New("dataflow: job has no source")
	ErrCycle          = errors.New("dataflow: cycle in the graph")
	ErrParallelism    = errors.New("dataflow: invalid parallelism")
	ErrForeignStream  = errors.New("dataflow: stream belongs to another job")
	ErrForward        = errors.New("dataflow: forward edge between operators of different parallelism")
	ErrInvalidStream  = errors.New("dataflow: invalid stream")
	ErrSideOutputType = errors.New("dataflow: side output tag used with two types")
	ErrAlreadyRunning = errors.New("dataflow: job is already running")
)

// OperatorError is how a failure in an operator surfaces from Job.Run: it names
// the operator, its subtask and, when known, the position of the record being
// processed.
type OperatorError struct {
	Operator    string
	Subtask     int
	Parallelism int
	// Position is the source position (partition and offset) of the record
	// being processed when the failing task reads a source, else empty.
	Position string
	Err      error
}

func (e *OperatorError) Error() string {
	s := fmt.Sprintf("operator %q (subtask %d/%d)", e.Operator, e.Subtask+1, e.Parallelism)
	if e.Position != "" {
		s += " at " + e.Position
	}
	return s + ": " + e.Err.Error()
}

func (e *OperatorError) Unwrap() error { return e.Err }
