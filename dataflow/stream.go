package dataflow

import (
	"fmt"
	"reflect"

	"github.com/sluicedata/sluice/internal/keygroup"
)

type outRef struct {
	n *node
	p *port
}

// Stream is a typed stream of records: the output of a source or operator, or
// the union of several. It is a value: repartitioning returns a new Stream and
// leaves the original alone.
type Stream[T any] struct {
	job  *Job
	srcs []outRef
	part partitioning
}

// Job returns the job the stream belongs to.
func (s Stream[T]) Job() *Job { return s.job }

// Parallelism is the number of subtasks that emit the stream: the highest
// over the operators of a union, 0 for an invalid stream.
func (s Stream[T]) Parallelism() int {
	p := 0
	for _, r := range s.srcs {
		p = max(p, s.job.par(r.n))
	}
	return p
}

func (s Stream[T]) valid() bool { return s.job != nil && len(s.srcs) > 0 }

// KeyedStream is a stream partitioned by key: every record with the same key
// goes to the same subtask of the next operator (by key group, see KeyGroupOf),
// and keyed operators scope state and timers to the key.
type KeyedStream[K comparable, T any] struct {
	in  Stream[T]
	key func(T) K
}

// Stream returns the underlying stream.
func (ks KeyedStream[K, T]) Stream() Stream[T] { return ks.in }

// Key returns the key of v.
func (ks KeyedStream[K, T]) Key(v T) K { return ks.key(v) }

// KeyFunc returns the key function itself, for operators that call it per
// record (a method value would add an indirect call).
func (ks KeyedStream[K, T]) KeyFunc() func(T) K { return ks.key }

// KeyBy partitions s by the key that key returns. The key type must encode
// stably (see KeyGroupOf); strings, integers, booleans, floats and structs or
// arrays of those do.
func KeyBy[K comparable, T any](s Stream[T], key func(T) K) KeyedStream[K, T] {
	if key == nil && s.job != nil {
		s.job.addErr(fmt.Errorf("%w: KeyBy on the output of %s", ErrNilFunction, s.describe()))
	}
	return KeyedStream[K, T]{in: s, key: key}
}

// KeyGroupOf returns the key group of key k for a job with maxParallelism key
// groups: hash(encode(k)) mod maxParallelism, with a hash that is fixed across
// processes, restarts and versions.
func KeyGroupOf[K comparable](k K, maxParallelism int) int {
	return int(keygroup.HashFuncFor[K]()(k) % uint64(maxParallelism))
}

// Rebalance sends the records of s round-robin over the next operator's subtasks.
func Rebalance[T any](s Stream[T]) Stream[T] { s.part = partRebalance; return s }

// Broadcast sends every record of s to every subtask of the next operator.
func Broadcast[T any](s Stream[T]) Stream[T] { s.part = partBroadcast; return s }

// Forward sends the records of subtask i of s to subtask i of the next operator,
// which must have the same parallelism. Forward edges are chained when they can be.
func Forward[T any](s Stream[T]) Stream[T] { s.part = partForward; return s }

// Union merges streams of one type into one. The next operator reads all of
// them; order is preserved per input channel, not across inputs.
func Union[T any](streams ...Stream[T]) Stream[T] {
	var out Stream[T]
	for i, s := range streams {
		if !s.valid() {
			if out.job != nil {
				out.job.addErr(fmt.Errorf("%w: argument %d of Union", ErrInvalidStream, i))
			}
			continue
		}
		if out.job == nil {
			out.job = s.job
		} else if s.job != out.job {
			out.job.addErr(fmt.Errorf("%w: Union of streams from jobs %q and %q", ErrForeignStream, out.job.name, s.job.name))
			continue
		}
		if s.part != partDefault {
			out.job.addErr(fmt.Errorf("dataflow: Union argument %d (%s) is repartitioned; repartition the union instead", i, s.describe()))
		}
		out.srcs = append(out.srcs, s.srcs...)
	}
	return out
}

func (s Stream[T]) describe() string {
	if len(s.srcs) == 0 {
		return "an empty stream"
	}
	name := fmt.Sprintf("%q", s.srcs[0].n.name)
	if s.srcs[0].p.tag != "" {
		name += " side output " + fmt.Sprintf("%q", s.srcs[0].p.tag)
	}
	if len(s.srcs) > 1 {
		name += fmt.Sprintf(" and %d more", len(s.srcs)-1)
	}
	return name
}

// OutputTag names a typed side output. Operators emit to it through their
// OperatorContext; SideOutput turns it into a stream.
type OutputTag[T any] struct{ id string }

// NewOutputTag returns a tag with the given id.
func NewOutputTag[T any](id string) OutputTag[T] { return OutputTag[T]{id: id} }

// ID is the tag's id.
func (t OutputTag[T]) ID() string { return t.id }

// Output returns where an operator subtask emits records of this side output.
// Records emitted to a side output that no stream reads are dropped.
func (t OutputTag[T]) Output(oc *OperatorContext) Output[T] {
	if o, ok := oc.side[t.id].(Output[T]); ok {
		return o
	}
	return discard[T]{}
}

// SideOutput returns the stream of records that the operator producing s emits
// to tag.
func SideOutput[T, X any](s Stream[X], tag OutputTag[T]) Stream[T] {
	if !s.valid() {
		return Stream[T]{}
	}
	j := s.job
	if len(s.srcs) != 1 || s.srcs[0].p.tag != "" {
		j.addErr(fmt.Errorf("%w: SideOutput %q needs the direct output of one operator, got %s", ErrInvalidStream, tag.id, s.describe()))
		return Stream[T]{}
	}
	if tag.id == "" {
		j.addErr(fmt.Errorf("%w: side output tag of operator %q has an empty id", ErrInvalidStream, s.srcs[0].n.name))
		return Stream[T]{}
	}
	n := s.srcs[0].n
	typ := typeOf[T]()
	for _, p := range n.ports[1:] {
		if p.tag == tag.id {
			if p.typ.name() != typ.name() {
				j.addErr(fmt.Errorf("%w: operator %q tag %q as %s and %s", ErrSideOutputType, n.name, tag.id, p.typ.name(), typ.name()))
				return Stream[T]{}
			}
			return Stream[T]{job: j, srcs: []outRef{{n, p}}}
		}
	}
	p := &port{tag: tag.id, typ: typ}
	n.ports = append(n.ports, p)
	return Stream[T]{job: j, srcs: []outRef{{n, p}}}
}

func typeName[T any]() string {
	return reflect.TypeOf((*T)(nil)).Elem().String()
}
