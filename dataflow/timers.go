package dataflow

import (
	"bufio"
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/keygroup"
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
// Timers are part of checkpoints: each keyed operator subtask writes its
// timers, by key group, next to its keyed state, and a restore at another
// parallelism gives each subtask the timers of the key groups it owns.
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
	// snapshot encodes every pending timer, nil if there is none.
	snapshot() ([]byte, error)
	// restore adds the timers of r whose key group is in rng.
	restore(r io.Reader, rng keygroup.Range) error
}

// timerFileMagic starts a timer snapshot; the version follows it.
const timerFileMagic = "SLTIMERS"

// timerRow is one timer in a snapshot. The key is kept both encoded (its
// identity and order) and as a value (what OnTimer receives).
type timerRow[K comparable] struct {
	Domain uint8  `msgpack:"d"`
	KG     uint16 `msgpack:"g"`
	Time   int64  `msgpack:"t"`
	Enc    []byte `msgpack:"e"`
	Key    K      `msgpack:"k"`
}

// snapshot encodes the timers synchronously: they are small next to keyed
// state (one per key and window at most), and the heap changes right after.
func (s *keyedTimers[K]) snapshot() ([]byte, error) {
	n := len(s.event.h) + len(s.proc.h)
	if n == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	buf.WriteString(timerFileMagic)
	buf.WriteByte(1)
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeInt(int64(n)); err != nil {
		return nil, err
	}
	for d, q := range []*timerQueue[K]{&s.event, &s.proc} {
		for _, e := range q.h {
			row := timerRow[K]{Domain: uint8(d), KG: uint16(e.kg), Time: int64(e.t), Enc: []byte(e.enc), Key: e.key}
			if err := enc.Encode(&row); err != nil {
				return nil, fmt.Errorf("timers: encode key %v: %w", e.key, err)
			}
		}
	}
	return buf.Bytes(), nil
}

func (s *keyedTimers[K]) restore(r io.Reader, rng keygroup.Range) error {
	br := bufio.NewReader(r)
	head := make([]byte, len(timerFileMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("timers: read header: %w", err)
	}
	if string(head[:len(timerFileMagic)]) != timerFileMagic || head[len(head)-1] != 1 {
		return fmt.Errorf("timers: not a timer snapshot of version 1 (header %q)", head)
	}
	dec := msgpack.NewDecoder(br)
	n, err := dec.DecodeInt64()
	if err != nil {
		return fmt.Errorf("timers: read count: %w", err)
	}
	for i := int64(0); i < n; i++ {
		var row timerRow[K]
		if err := dec.Decode(&row); err != nil {
			return fmt.Errorf("timers: read timer %d of %d: %w", i+1, n, err)
		}
		if int(row.KG) < rng.Start || int(row.KG) >= rng.End {
			continue
		}
		q := &s.event
		if row.Domain == uint8(ProcessingTime) {
			q = &s.proc
		}
		q.add(Timestamp(row.Time), row.Enc, row.Key, int(row.KG))
	}
	// Read to the end, so that the storage's reader checks the checksum.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("timers: %w", err)
	}
	return nil
}
