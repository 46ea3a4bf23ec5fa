package dataflow

import (
	"container/heap"
	"errors"
	"fmt"
	"time"

	"github.com/sluicedata/sluice/state"
)

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the operator's watermark reaches them.
	EventTime TimeDomain = iota
	// ProcessingTime timers fire when the wall clock reaches them.
	ProcessingTime
)

func (d TimeDomain) String() string {
	if d == EventTime {
		return "event time"
	}
	return "processing time"
}

// Timer is a timer that fired.
type Timer struct {
	Time   Timestamp
	Domain TimeDomain
}

// TimerService registers timers for the current key of a keyed operator: the
// key of the record being processed, or of the timer being handled. A timer is
// unique per (key, time, domain): registering it again does nothing. Timers
// fire in time order (ties in the order of the keys' encodings), each with the
// state scoped to its key, through the operator's OnTimer (see TimerHandler).
// Event-time timers fire when the watermark passes them, before the watermark
// is forwarded; at end of input the MaxWatermark fires all of them. Pending
// processing-time timers are dropped at end of input.
//
// Timers are not yet part of checkpoints: they are kept in memory only.
type TimerService interface {
	CurrentWatermark() Timestamp
	CurrentProcessingTime() Timestamp
	RegisterEventTimeTimer(t Timestamp)
	RegisterProcessingTimeTimer(t Timestamp)
	DeleteEventTimeTimer(t Timestamp)
	DeleteProcessingTimeTimer(t Timestamp)
}

// TimerHandler is implemented by keyed operators that register timers. The
// runtime calls OnTimer from the subtask's goroutine with the timer's key set
// as the current key.
type TimerHandler[K comparable] interface {
	OnTimer(key K, timer Timer) error
}

// ErrNoTimerHandler is returned when a timer fires on an operator that does not
// implement TimerHandler.
var ErrNoTimerHandler = errors.New("dataflow: a timer fired but the operator has no OnTimer")

// Timers is the timer service of a keyed operator subtask, nil for operators
// that are not keyed.
func (oc *OperatorContext) Timers() TimerService { return oc.timers }

type timerEntry[K comparable] struct {
	t   Timestamp
	enc string
	key K
	kg  int
	idx int
}

// timerQueue is a min-heap of timers by (time, encoded key), with a set by
// time then encoded key for deduplication and deletion. Registering a timer
// that exists (the common case: one per record) allocates nothing.
type timerQueue[K comparable] struct {
	h   []*timerEntry[K]
	set map[Timestamp]map[string]*timerEntry[K]
}

func (q *timerQueue[K]) Len() int { return len(q.h) }
func (q *timerQueue[K]) Less(i, j int) bool {
	if q.h[i].t != q.h[j].t {
		return q.h[i].t < q.h[j].t
	}
	return q.h[i].enc < q.h[j].enc
}
func (q *timerQueue[K]) Swap(i, j int) {
	q.h[i], q.h[j] = q.h[j], q.h[i]
	q.h[i].idx, q.h[j].idx = i, j
}
func (q *timerQueue[K]) Push(x any) {
	e := x.(*timerEntry[K])
	e.idx = len(q.h)
	q.h = append(q.h, e)
}
func (q *timerQueue[K]) Pop() any {
	e := q.h[len(q.h)-1]
	q.h[len(q.h)-1] = nil
	q.h = q.h[:len(q.h)-1]
	return e
}

// add registers a timer at t for the key (enc, key, kg) unless it exists.
func (q *timerQueue[K]) add(t Timestamp, enc []byte, key K, kg int) {
	if q.set == nil {
		q.set = map[Timestamp]map[string]*timerEntry[K]{}
	}
	byKey := q.set[t]
	if _, ok := byKey[string(enc)]; ok {
		return
	}
	if byKey == nil {
		byKey = map[string]*timerEntry[K]{}
		q.set[t] = byKey
	}
	e := &timerEntry[K]{t: t, enc: string(enc), key: key, kg: kg}
	byKey[e.enc] = e
	heap.Push(q, e)
}

func (q *timerQueue[K]) forget(e *timerEntry[K]) {
	byKey := q.set[e.t]
	delete(byKey, e.enc)
	if len(byKey) == 0 {
		delete(q.set, e.t)
	}
}

func (q *timerQueue[K]) remove(t Timestamp, enc []byte) {
	if e, ok := q.set[t][string(enc)]; ok {
		q.forget(e)
		heap.Remove(q, e.idx)
	}
}

// popDue removes and returns the earliest timer if it is at or before t.
func (q *timerQueue[K]) popDue(t Timestamp) *timerEntry[K] {
	if len(q.h) == 0 || q.h[0].t > t {
		return nil
	}
	e := heap.Pop(q).(*timerEntry[K])
	q.forget(e)
	return e
}

// keyedTimers is the TimerService of one keyed operator subtask, and the
// driver the runtime uses to fire its timers.
type keyedTimers[K comparable] struct {
	event, proc timerQueue[K]
	wm          Timestamp
	// the current key, set before every record and timer
	key K
	enc []byte
	kg  int

	backend state.Backend
	handler TimerHandler[K] // nil if the operator has none
	clock   func() time.Time
}

func (s *keyedTimers[K]) setCurrent(key K, enc []byte, kg int) {
	s.key, s.enc, s.kg = key, enc, kg
	s.backend.SetCurrentKey(kg, enc)
}

func (s *keyedTimers[K]) CurrentWatermark() Timestamp { return s.wm }
func (s *keyedTimers[K]) CurrentProcessingTime() Timestamp {
	return TimestampOf(s.clock())
}

func (s *keyedTimers[K]) RegisterEventTimeTimer(t Timestamp) {
	s.event.add(t, s.enc, s.key, s.kg)
}
func (s *keyedTimers[K]) RegisterProcessingTimeTimer(t Timestamp) {
	s.proc.add(t, s.enc, s.key, s.kg)
}
func (s *keyedTimers[K]) DeleteEventTimeTimer(t Timestamp)      { s.event.remove(t, s.enc) }
func (s *keyedTimers[K]) DeleteProcessingTimeTimer(t Timestamp) { s.proc.remove(t, s.enc) }

// fire runs every timer of q due at or before t, in order, including timers
// registered while firing.
func (s *keyedTimers[K]) fire(q *timerQueue[K], t Timestamp, domain TimeDomain) error {
	for e := q.popDue(t); e != nil; e = q.popDue(t) {
		if s.handler == nil {
			return fmt.Errorf("%w: %s timer at %v", ErrNoTimerHandler, domain, e.t)
		}
		s.setCurrent(e.key, []byte(e.enc), e.kg)
		if err := s.handler.OnTimer(e.key, Timer{Time: e.t, Domain: domain}); err != nil {
			return fmt.Errorf("%s timer at %v: %w", domain, e.t, err)
		}
	}
	return nil
}

func (s *keyedTimers[K]) fireEvent(wm Timestamp) error {
	s.wm = wm
	return s.fire(&s.event, wm, EventTime)
}

func (s *keyedTimers[K]) fireProcessing(now Timestamp) error {
	return s.fire(&s.proc, now, ProcessingTime)
}

// nextProcessing is the time of the earliest processing-time timer.
func (s *keyedTimers[K]) nextProcessing() (Timestamp, bool) {
	if len(s.proc.h) == 0 {
		return 0, false
	}
	return s.proc.h[0].t, true
}

// timerDriver is the untyped side of keyedTimers that the task drives.
type timerDriver interface {
	fireEvent(wm Timestamp) error
	fireProcessing(now Timestamp) error
	nextProcessing() (Timestamp, bool)
}
