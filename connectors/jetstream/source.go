package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/dataflow"
)

// Source reads a JetStream stream into the job, as cfg says. See the package
// documentation for offsets, partitions, bounded reads and errors.
func Source[T any](job *dataflow.Job, name string, cfg SourceConfig[T], opts ...dataflow.Option) dataflow.Stream[T] {
	if err := cfg.Validate(); err != nil {
		job.ReportError(name, err)
	}
	cfg = cfg.withDefaults()
	return dataflow.AddSource(job, name, func() dataflow.Source[T] { return &source[T]{cfg: cfg} }, opts...)
}

// NewSource makes one subtask's source, for dataflow.AddSource or to drive it
// directly (tests). Besides dataflow.Source it implements
// dataflow.Snapshotter and dataflow.Positioner.
func NewSource[T any](cfg SourceConfig[T]) (dataflow.Source[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &source[T]{cfg: cfg.withDefaults()}, nil
}

// sourceState is a subtask's checkpointed position: per partition (subject
// filter) the stream sequence of the last record emitted, and when the stream
// was created, so that a restore notices a stream deleted and created again
// under the same name (whose sequences are another stream's). Checkpoints
// written before Created existed restore without that check.
type sourceState struct {
	Stream  string            `msgpack:"stream"`
	Offsets map[string]uint64 `msgpack:"offsets"`
	Created time.Time         `msgpack:"created,omitempty"`
}

// restoredState is what the offsets of every old subtask say together.
type restoredState struct {
	id      int64
	offsets map[string]uint64
	created time.Time // zero if no old subtask recorded it
}

type source[T any] struct {
	cfg       SourceConfig[T]
	oc        *dataflow.OperatorContext
	nc        *nats.Conn
	js        jetstream.JetStream
	stream    jetstream.Stream
	url       string
	apiPrefix string

	parts  []*partition // the partitions this subtask reads
	active int          // partitions not done
	bySub  map[*nats.Subscription]*partition
	ch     chan *nats.Msg
	reqBuf []byte

	reconnects uint64
	lastPoll   time.Time
	timer      *time.Timer

	wms     *dataflow.PartitionWatermarks[T] // nil without event time
	msgTime time.Time                        // event time of the message being read, for MessageTime
	lastWm  dataflow.Timestamp
	idle    bool

	msg         Msg // reused for every message
	lastSubject string
	lastSeq     uint64

	created time.Time // the stream's creation time, checkpointed

	failures  int64 // decode failures not yet added to DecodeFailures
	dlq       []jetstream.PubAckFuture
	dlqSeqs   []uint64
	infoCache *jetstream.StreamInfo
}

func (s *source[T]) Open(ctx context.Context, oc *dataflow.OperatorContext) error {
	s.oc = oc
	s.lastWm = dataflow.MinWatermark
	s.bySub = map[*nats.Subscription]*partition{}
	s.url = s.cfg.Conn.URL
	var err error
	if s.cfg.Connect != nil {
		s.nc, err = s.cfg.Connect(ctx)
		if err == nil && s.nc == nil {
			err = errors.New("Connect returned no connection")
		}
		if err != nil {
			return fmt.Errorf("%w: stream %s: %w", ErrConnect, s.cfg.Stream, err)
		}
		s.url = s.nc.ConnectedUrlRedacted()
	} else if s.nc, err = Connect(ctx, s.cfg.Conn); err != nil {
		return fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
	}
	s.apiPrefix = "$JS.API."
	if s.cfg.Domain != "" {
		s.apiPrefix = "$JS." + s.cfg.Domain + ".API."
		s.js, err = jetstream.NewWithDomain(s.nc, s.cfg.Domain)
	} else {
		s.js, err = jetstream.New(s.nc)
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s on %s: %w", s.cfg.Stream, s.url, err)
	}
	s.reconnects = s.nc.Stats().Reconnects
	restored, err := s.restoredOffsets(oc)
	if err != nil {
		return err
	}
	actx, cancel := apiContext(ctx)
	s.stream, err = s.js.Stream(actx, s.cfg.Stream)
	cancel()
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if restored != nil && len(restored.offsets) > 0 {
				// The checkpoint read this stream: it was deleted since.
				return fmt.Errorf("%w: stream %s on %s: checkpoint %d has read positions in it, but the stream is gone: %w", ErrStreamDeleted, s.cfg.Stream, s.url, restored.id, ErrStreamNotFound)
			}
			return fmt.Errorf("%w: stream %s on %s", ErrStreamNotFound, s.cfg.Stream, s.url)
		}
		return fmt.Errorf("jetstream: stream %s on %s: %w", s.cfg.Stream, s.url, err)
	}
	info := s.stream.CachedInfo()
	s.created = info.Created
	if restored != nil && !restored.created.IsZero() && !restored.created.Equal(info.Created) {
		return fmt.Errorf("%w: stream %s on %s was deleted and created again since checkpoint %d (created %s then, %s now): the checkpoint's read positions are not positions in it",
			ErrStreamDeleted, s.cfg.Stream, s.url, restored.id, restored.created.UTC().Format(time.RFC3339Nano), info.Created.UTC().Format(time.RFC3339Nano))
	}
	if err := s.checkSubjects(info); err != nil {
		return err
	}
	for i, f := range s.cfg.partitions() {
		if i%oc.Parallelism != oc.Subtask {
			continue
		}
		p := &partition{idx: len(s.parts), filter: f, start: s.cfg.Start, bounded: s.cfg.Bounded}
		if err := s.position(ctx, p, info, restored); err != nil {
			return err
		}
		s.parts = append(s.parts, p)
	}
	switch mt := s.cfg.MessageTime; {
	case mt != nil:
		ws := dataflow.BoundedOutOfOrderness(mt.MaxOutOfOrderness, func(T) time.Time { return s.msgTime })
		if mt.Idleness > 0 {
			ws = ws.WithIdleness(mt.Idleness)
		}
		s.wms = ws.NewPartitions(len(s.parts), nil)
	case !s.cfg.Watermarks.IsZero():
		s.wms = s.cfg.Watermarks.NewPartitions(len(s.parts), nil)
	}
	s.ch = make(chan *nats.Msg, len(s.parts)*(s.cfg.PullBatch+64)+64)
	s.msg.Stream = s.cfg.Stream
	s.lastPoll = time.Now()
	for _, p := range s.parts {
		if p.done {
			continue
		}
		s.active++
		fatal, err := s.createConsumer(ctx, p)
		if fatal != nil {
			return fatal
		}
		if err != nil {
			return fmt.Errorf("jetstream: stream %s on %s: create consumer for partition %s: %w", s.cfg.Stream, s.url, p.filter, err)
		}
	}
	return nil
}

// checkSubjects fails if a partition's filter cannot match any subject the
// stream takes (its configured subjects). A stream without configured
// subjects (a mirror, or one that only sources others) is not checked. It
// also fails if the dead-letter subject would be read back by the source.
func (s *source[T]) checkSubjects(info *jetstream.StreamInfo) error {
	subjects := info.Config.Subjects
	if len(subjects) == 0 {
		return nil
	}
	for _, f := range s.cfg.Partitions {
		ok := false
		for _, sub := range subjects {
			if subjectsIntersect(f, sub) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: stream %s on %s: partition %q matches none of the stream's subjects %v", ErrNoSubjectMatch, s.cfg.Stream, s.url, f, subjects)
		}
	}
	if s.cfg.OnDecodeError.kind == decodeDeadLetter {
		dl := s.cfg.OnDecodeError.subject
		for _, sub := range subjects {
			if !subjectsIntersect(dl, sub) {
				continue
			}
			for _, f := range s.cfg.partitions() {
				if subjectsIntersect(f, dl) {
					return fmt.Errorf("%w: stream %s: dead-letter subject %q is in the stream and read by partition %q", ErrConfig, s.cfg.Stream, dl, f)
				}
			}
		}
	}
	return nil
}

// restoredOffsets merges the offsets of every old subtask: each partition is
// taken by the new subtask it is assigned to now, whatever the old
// parallelism.
func (s *source[T]) restoredOffsets(oc *dataflow.OperatorContext) (*restoredState, error) {
	if oc.Restored == nil {
		return nil, nil
	}
	r := &restoredState{id: oc.Restored.CheckpointID, offsets: map[string]uint64{}}
	for old, b := range oc.Restored.Subtasks {
		if len(b) == 0 {
			continue
		}
		var st sourceState
		if err := msgpack.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("jetstream: stream %s: restore offsets of old subtask %d (checkpoint %d): %w", s.cfg.Stream, old, oc.Restored.CheckpointID, err)
		}
		if st.Stream != s.cfg.Stream {
			return nil, fmt.Errorf("%w: checkpoint %d holds offsets of stream %s, but the source reads stream %s", ErrStartPosition, oc.Restored.CheckpointID, st.Stream, s.cfg.Stream)
		}
		for f, seq := range st.Offsets {
			r.offsets[f] = seq
		}
		if !st.Created.IsZero() {
			r.created = st.Created
		}
	}
	return r, nil
}

// position sets where p starts (restored offset or start position) and,
// when bounded, where it ends.
func (s *source[T]) position(ctx context.Context, p *partition, info *jetstream.StreamInfo, restored *restoredState) error {
	st := info.State
	var last uint64
	ok := false
	if restored != nil {
		last, ok = restored.offsets[p.filter]
	}
	if ok {
		if last > st.LastSeq {
			return fmt.Errorf("%w: stream %s on %s: checkpoint has partition %s at seq %d, but the stream ends at seq %d (was it deleted and recreated?)", ErrStartPosition, s.cfg.Stream, s.url, p.filter, last, st.LastSeq)
		}
		if p.filter == wholeStream && st.LastSeq > last && st.FirstSeq > last+1 {
			// Every message of the stream is the partition's: those after
			// the position and before the stream's start now are lost.
			// (A filtered partition finds out at its first delivery.)
			return fmt.Errorf("%w: stream %s on %s purged: checkpoint %d has it read up to seq %d (next %d), but the stream now starts at seq %d: seqs %d to %d were removed before they were read",
				ErrPurged, s.cfg.Stream, s.url, restored.id, last, last+1, st.FirstSeq, last+1, st.FirstSeq-1)
		}
		p.last, p.resolved, p.strict = last, true, true
	} else {
		switch p.start.kind {
		case startLatest:
			p.last, p.resolved, p.strict = st.LastSeq, true, true
		case startSeq:
			n := p.start.seq
			if n > st.LastSeq+1 {
				return fmt.Errorf("%w: stream %s on %s: start sequence %d is beyond the end of the stream (last seq %d)", ErrStartPosition, s.cfg.Stream, s.url, n, st.LastSeq)
			}
			if st.Msgs > 0 && n < st.FirstSeq {
				return fmt.Errorf("%w: stream %s on %s: start sequence %d is no longer in the stream, which starts at seq %d", ErrStartPosition, s.cfg.Stream, s.url, n, st.FirstSeq)
			}
			p.last, p.resolved, p.strict = n-1, true, true
		}
	}
	if !p.bounded {
		return nil
	}
	var endTime time.Time
	if p.filter == wholeStream {
		p.end, endTime = st.LastSeq, st.LastTime
		if st.Msgs == 0 {
			p.end = 0
		}
	} else {
		actx, cancel := apiContext(ctx)
		m, err := s.stream.GetLastMsgForSubject(actx, p.filter)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			p.end = 0
		case err != nil:
			return fmt.Errorf("jetstream: stream %s on %s: last message of partition %s: %w", s.cfg.Stream, s.url, p.filter, err)
		default:
			p.end, endTime = m.Sequence, m.Time
		}
	}
	switch {
	case p.end == 0,
		p.resolved && p.last >= p.end,
		!p.resolved && p.start.kind == startTime && endTime.Before(p.start.t):
		p.done = true
	}
	return nil
}

// apiTimeout bounds each JetStream API request of the source. A request
// whose response is lost (the server restarted in between) would otherwise
// wait as long as the job's context allows, which may be for ever.
// (A variable, so that a test can shorten it.)
var apiTimeout = 5 * time.Second

// apiContext is ctx bounded by apiTimeout.
func apiContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, apiTimeout)
}

// streamInfo fetches the stream's current info.
func (s *source[T]) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := apiContext(ctx)
	defer cancel()
	return s.stream.Info(ctx)
}

// finish marks a bounded partition as read to its end.
func (s *source[T]) finish(p *partition) {
	if p.done {
		return
	}
	p.done = true
	s.active--
	s.dropConsumer(p)
}

func (s *source[T]) Poll(ctx context.Context, out dataflow.Output[T]) (dataflow.SourceStatus, error) {
	if s.active == 0 {
		if s.cfg.Bounded || len(s.parts) > 0 {
			return dataflow.EndOfInput, nil
		}
		// Owns no partition (more subtasks than partitions): idle for good.
		if !s.idle {
			s.idle = true
			out.MarkIdle()
		}
		return dataflow.NothingAvailable, s.wait(ctx)
	}
	if err := s.maintain(ctx); err != nil {
		return dataflow.NothingAvailable, err
	}
	n, err := s.drain(ctx, out)
	if err == nil {
		err = s.flushDeadLetters(ctx)
	}
	if s.failures > 0 {
		if c := s.cfg.DecodeFailures; c != nil {
			c.n.Add(s.failures)
		}
		s.failures = 0
	}
	if err != nil {
		return dataflow.NothingAvailable, err
	}
	s.emitWatermark(out)
	if n == 0 {
		if s.active == 0 {
			return dataflow.EndOfInput, nil
		}
		return dataflow.NothingAvailable, nil
	}
	return dataflow.MoreAvailable, nil
}

// drain emits up to PollBatch records from the messages that have arrived,
// waiting up to PollWait for the first.
func (s *source[T]) drain(ctx context.Context, out dataflow.Output[T]) (int, error) {
	n := 0
	for n < s.cfg.PollBatch && s.active > 0 {
		var m *nats.Msg
		select {
		case m = <-s.ch:
		default:
			if n > 0 {
				return n, nil
			}
			var err error
			if m, err = s.next(ctx); m == nil {
				return 0, err
			}
		}
		p := s.bySub[m.Sub]
		if p == nil || p.done {
			continue // for a consumer dropped since
		}
		if !strings.HasPrefix(m.Reply, "$JS.ACK.") {
			if err := s.status(ctx, p, m); err != nil {
				return n, err
			}
			if p.needsNew {
				s.dropConsumer(p)
			}
			continue
		}
		emitted, err := s.record(ctx, p, m, out)
		if err != nil {
			return n, err
		}
		if emitted {
			n++
		}
	}
	return n, nil
}

// next waits up to PollWait for a message.
func (s *source[T]) next(ctx context.Context) (*nats.Msg, error) {
	if s.timer == nil {
		s.timer = time.NewTimer(s.cfg.PollWait)
	} else {
		s.timer.Reset(s.cfg.PollWait)
	}
	select {
	case m := <-s.ch:
		s.timer.Stop()
		return m, nil
	case <-s.timer.C:
		return nil, nil
	case <-ctx.Done():
		s.timer.Stop()
		return nil, ctx.Err()
	}
}

func (s *source[T]) wait(ctx context.Context) error {
	if s.timer == nil {
		s.timer = time.NewTimer(s.cfg.PollWait)
	} else {
		s.timer.Reset(s.cfg.PollWait)
	}
	select {
	case <-s.timer.C:
		return nil
	case <-ctx.Done():
		s.timer.Stop()
		return ctx.Err()
	}
}

// record handles a message of p: checks its place in the sequence, decodes
// it and emits it. It reports whether a record was emitted.
func (s *source[T]) record(ctx context.Context, p *partition, m *nats.Msg, out dataflow.Output[T]) (bool, error) {
	a, ok := parseAck(m.Reply)
	if !ok {
		return false, fmt.Errorf("jetstream: stream %s partition %s: cannot parse the reply subject %q of a message on %s", s.cfg.Stream, p.filter, m.Reply, m.Subject)
	}
	p.seen = true
	p.outstanding--
	if a.dseq != p.dseq+1 {
		// Deliveries were lost on the way (the channel overflowed, say):
		// start over from the last record emitted.
		p.needsNew = true
		s.dropConsumer(p)
		return false, nil
	}
	p.dseq = a.dseq
	if p.resolved && a.sseq <= p.last {
		return false, nil // already emitted
	}
	if p.resolved && a.sseq > p.last+1 && p.strict && (p.checkFirst || p.filter == wholeStream) {
		// With a filter, a gap is normal (other subjects); a gap at a
		// consumer's first delivery is not when the stream now starts
		// after the position: messages were removed before they were read.
		info, err := s.streamInfo(ctx)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return false, fmt.Errorf("%w: stream %s on %s was deleted while partition %s was read at seq %d", ErrStreamDeleted, s.cfg.Stream, s.url, p.filter, p.last)
			}
			return false, fmt.Errorf("jetstream: stream %s on %s: check for a purge: %w", s.cfg.Stream, s.url, err)
		}
		if info.State.FirstSeq > p.last+1 {
			return false, fmt.Errorf("%w: stream %s purged: partition %s was at seq %d (next %d) but the stream now starts at seq %d", ErrPurged, s.cfg.Stream, p.filter, p.last, p.last+1, info.State.FirstSeq)
		}
	}
	p.checkFirst = false
	if p.bounded && a.sseq > p.end {
		s.finish(p)
		return false, nil
	}
	p.last, p.resolved, p.strict = a.sseq, true, true
	s.lastSubject, s.lastSeq = m.Subject, a.sseq
	s.msg.Subject, s.msg.Partition, s.msg.Sequence = m.Subject, p.filter, a.sseq
	s.msg.Time, s.msg.Header = time.Unix(0, a.ts), m.Header
	emitted := true
	v, err := s.cfg.Decode(m.Data, &s.msg)
	if err == nil && s.cfg.MessageTime != nil {
		s.msgTime = s.msg.Time
		if h := s.cfg.MessageTime.Header; h != "" {
			s.msgTime, err = headerTime(m.Header.Get(h))
			if err != nil {
				err = fmt.Errorf("event-time header %s: %w", h, err)
			}
		}
	}
	if err != nil {
		emitted = false
		if err := s.decodeFailed(m, a.sseq, err); err != nil {
			return false, err
		}
	} else {
		ts := dataflow.NoTimestamp
		if s.wms != nil {
			ts = s.wms.Observe(p.idx, v)
		}
		out.Collect(v, ts)
	}
	if p.bounded && (a.sseq >= p.end || a.pending == 0) {
		// At the end, or nothing left up to the end (the end message was
		// removed since Open).
		s.finish(p)
	}
	return emitted, nil
}

// decodeFailed applies the decode policy to a message that failed.
func (s *source[T]) decodeFailed(m *nats.Msg, seq uint64, err error) error {
	switch s.cfg.OnDecodeError.kind {
	case decodeSkip:
		s.failures++
		return nil
	case decodeDeadLetter:
		s.failures++
		dl := &nats.Msg{Subject: s.cfg.OnDecodeError.subject, Data: m.Data, Header: nats.Header{}}
		for k, v := range m.Header {
			dl.Header[k] = v
		}
		dl.Header.Set(nats.MsgIdHdr, s.cfg.Stream+":"+strconv.FormatUint(seq, 10))
		dl.Header.Set("Sluice-Source-Stream", s.cfg.Stream)
		dl.Header.Set("Sluice-Source-Subject", m.Subject)
		dl.Header.Set("Sluice-Source-Sequence", strconv.FormatUint(seq, 10))
		dl.Header.Set("Sluice-Error", err.Error())
		f, perr := s.js.PublishMsgAsync(dl)
		if perr != nil {
			return fmt.Errorf("%w: dead letter of stream %s subject %s seq %d to %s: %w", ErrPublish, s.cfg.Stream, m.Subject, seq, dl.Subject, perr)
		}
		s.dlq = append(s.dlq, f)
		s.dlqSeqs = append(s.dlqSeqs, seq)
		return nil
	}
	return fmt.Errorf("%w: stream %s subject %s seq %d: %w", ErrDecode, s.cfg.Stream, m.Subject, seq, err)
}

// flushDeadLetters waits for the acks of the dead letters published in this
// Poll, so that they are stored before a checkpoint covers their records.
func (s *source[T]) flushDeadLetters(ctx context.Context) error {
	if len(s.dlq) == 0 {
		return nil
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, f := range s.dlq {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("%w: dead letter of stream %s seq %d to %s: %w", ErrPublish, s.cfg.Stream, s.dlqSeqs[i], s.cfg.OnDecodeError.subject, err)
		case <-timeout.C:
			return fmt.Errorf("%w: dead letter of stream %s seq %d to %s: no ack within 10s", ErrPublish, s.cfg.Stream, s.dlqSeqs[i], s.cfg.OnDecodeError.subject)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.dlq, s.dlqSeqs = s.dlq[:0], s.dlqSeqs[:0]
	return nil
}

// emitWatermark emits the watermark if it advanced, or marks the subtask idle.
func (s *source[T]) emitWatermark(out dataflow.Output[T]) {
	if s.wms == nil {
		return
	}
	wm, idle := s.wms.Current()
	switch {
	case idle && !s.idle:
		s.idle = true
		out.MarkIdle()
	case !idle && (wm > s.lastWm || s.idle):
		s.idle = false
		s.lastWm = wm
		out.EmitWatermark(wm)
	}
}

// SnapshotState records, per partition, the stream sequence of the last
// record emitted (or the position before the start if none was).
func (s *source[T]) SnapshotState(context.Context, int64) ([]byte, error) {
	st := sourceState{Stream: s.cfg.Stream, Offsets: make(map[string]uint64, len(s.parts)), Created: s.created}
	for _, p := range s.parts {
		if p.resolved {
			st.Offsets[p.filter] = p.last
		}
	}
	return msgpack.Marshal(st)
}

// Position names the message read last (the record emitted last, or the
// message that failed to decode): "stream S subject views.3 seq 1234".
func (s *source[T]) Position() string {
	if s.lastSubject == "" {
		return "stream " + s.cfg.Stream
	}
	return "stream " + s.cfg.Stream + " subject " + s.lastSubject + " seq " + strconv.FormatUint(s.lastSeq, 10)
}

// Close deletes the consumers and closes the connection.
func (s *source[T]) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.nc == nil {
		return nil
	}
	for _, p := range s.parts {
		s.dropConsumer(p)
	}
	s.nc.Close()
	return nil
}
