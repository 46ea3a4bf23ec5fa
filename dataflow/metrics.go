package dataflow

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
)

// Metrics is a snapshot of a job's counters, for status pages and metrics
// exporters (jobrunner turns it into Prometheus metrics). Counters add up
// over the job's restarts: a restart does not set them back.
type Metrics struct {
	Job string
	// Running is true while Run runs; Started is when the current run's
	// tasks started, Restarts how often the job restarted after a failure.
	Running  bool
	Started  time.Time
	Restarts int64
	// Operators has one entry per operator subtask, in graph order.
	Operators []OperatorMetrics
	// Checkpoints are the statistics of the current run's checkpoint
	// coordinator (zero before the job runs).
	Checkpoints checkpoint.Stats
}

// OperatorMetrics are the counters of one operator subtask.
type OperatorMetrics struct {
	Operator string
	Subtask  int
	// Source is true for sources: their RecordsOut is the job's input.
	Source bool
	// RecordsIn counts records the operator was given (not for sources);
	// RecordsOut counts records it emitted, side outputs included.
	RecordsIn, RecordsOut int64
	// Watermark is the last watermark the operator received (a source: the
	// last it emitted); MinWatermark before the first.
	Watermark Timestamp
	// Backpressured is the time the operator's subtask waited for room in
	// the queues of its downstream tasks.
	Backpressured time.Duration
	// SinkCommits counts the transactions a two-phase sink committed, and
	// SinkCommitTime their total duration; SinkCommitLast is the last one's.
	SinkCommits    int64
	SinkCommitTime time.Duration
	SinkCommitLast time.Duration
}

// RecordsIn sums RecordsIn over every subtask of every operator, and
// likewise RecordsOut.
func (m Metrics) Records() (in, out int64) {
	for _, o := range m.Operators {
		in += o.RecordsIn
		out += o.RecordsOut
	}
	return in, out
}

// opCounters are the plain counters of an operator subtask: only its task's
// goroutine touches them, and the task publishes them to opMetrics after
// every batch, so counting costs an increment per record.
type opCounters struct {
	in int64
	wm Timestamp
}

// opMetrics are an operator subtask's published counters, read from any
// goroutine.
type opMetrics struct {
	in, out, wm   atomic.Int64
	commits       atomic.Int64
	commitNanos   atomic.Int64
	lastCommitDur atomic.Int64
}

func newOpMetrics() *opMetrics {
	m := &opMetrics{}
	m.wm.Store(int64(MinWatermark))
	return m
}

// observeCommit records one sink commit that took d.
func (m *opMetrics) observeCommit(d time.Duration) {
	if m == nil {
		return
	}
	m.commits.Add(1)
	m.commitNanos.Add(int64(d))
	m.lastCommitDur.Store(int64(d))
}

// counted is implemented by what counts the records given to it: links
// (operators inside a chain) and exchange writers.
type counted interface{ counter() *int64 }

// blockedTimer is implemented by exchange writers.
type blockedTimer interface{ Blocked() time.Duration }

// publish copies the task's plain counters to its operators' metrics.
func (t *task) publish() {
	for i := range t.ops {
		s := &t.ops[i]
		m := s.oc.m
		if s.c != nil {
			m.in.Store(s.c.in)
			m.wm.Store(int64(s.c.wm))
		}
		var out int64
		for _, p := range s.outs {
			out += *p
		}
		m.out.Store(out)
	}
}

// metricsBase keeps the totals of a job's earlier runs, so that counters do
// not go back when the job restarts.
type metricsBase struct {
	mu    sync.Mutex
	prev  map[opKey]OperatorMetrics
	start time.Time
	coord *checkpoint.Coordinator // of the current or last run
	ckpts checkpoint.Stats        // counts of the runs before it
}

type opKey struct {
	op  string
	sub int
}

// Metrics returns a snapshot of the job's counters. It is safe to call from
// any goroutine, while the job runs or after.
func (j *Job) Metrics() Metrics {
	m := Metrics{Job: j.name, Running: j.running.Load(), Restarts: j.restarts.Load()}
	j.metrics.mu.Lock()
	defer j.metrics.mu.Unlock()
	m.Started = j.metrics.start
	cur := map[opKey]OperatorMetrics{}
	var order []opKey
	if c := j.metrics.coord; c != nil {
		m.Checkpoints = c.Stats()
		m.Checkpoints.Completed += j.metrics.ckpts.Completed
		m.Checkpoints.Failed += j.metrics.ckpts.Failed
		if m.Checkpoints.Last == nil {
			m.Checkpoints.Last = j.metrics.ckpts.Last
		}
		if m.Checkpoints.LastFailure == "" {
			m.Checkpoints.LastFailure = j.metrics.ckpts.LastFailure
			m.Checkpoints.LastFailureTime = j.metrics.ckpts.LastFailureTime
		}
	}
	if r := j.active.Load(); r != nil {
		for _, t := range r.tasks {
			for i := range t.ops {
				k := opKey{t.ops[i].name, t.subtask}
				cur[k] = t.ops[i].snapshotMetrics(t)
				order = append(order, k)
			}
		}
	}
	for k, p := range j.metrics.prev {
		c, ok := cur[k]
		if !ok {
			c = OperatorMetrics{Operator: k.op, Subtask: k.sub, Source: p.Source, Watermark: p.Watermark}
			order = append(order, k)
		}
		cur[k] = addMetrics(c, p)
	}
	// Graph order: by the job's node order, then subtask.
	rank := map[string]int{}
	for i, n := range j.nodes {
		rank[n.name] = i
	}
	sortKeys(order, rank)
	for _, k := range order {
		m.Operators = append(m.Operators, cur[k])
	}
	return m
}

func (s *opSlot) snapshotMetrics(t *task) OperatorMetrics {
	m := s.oc.m
	om := OperatorMetrics{Operator: s.name, Subtask: t.subtask, Source: t.src != nil && s.life == lifecycle(t.src.(lifecycle)),
		RecordsIn: m.in.Load(), RecordsOut: m.out.Load(), Watermark: Timestamp(m.wm.Load()),
		SinkCommits: m.commits.Load(), SinkCommitTime: time.Duration(m.commitNanos.Load()),
		SinkCommitLast: time.Duration(m.lastCommitDur.Load())}
	for _, b := range s.blocked {
		om.Backpressured += b.Blocked()
	}
	return om
}

// addMetrics adds an earlier run's totals p to c (the watermark is c's).
func addMetrics(c, p OperatorMetrics) OperatorMetrics {
	c.RecordsIn += p.RecordsIn
	c.RecordsOut += p.RecordsOut
	c.Backpressured += p.Backpressured
	c.SinkCommits += p.SinkCommits
	c.SinkCommitTime += p.SinkCommitTime
	if c.SinkCommitLast == 0 {
		c.SinkCommitLast = p.SinkCommitLast
	}
	if c.Watermark == MinWatermark {
		c.Watermark = p.Watermark
	}
	return c
}

func sortKeys(keys []opKey, rank map[string]int) {
	// Insertion sort: a job has tens of operator subtasks.
	for i := 1; i < len(keys); i++ {
		for k := i; k > 0 && lessKey(keys[k], keys[k-1], rank); k-- {
			keys[k], keys[k-1] = keys[k-1], keys[k]
		}
	}
}

func lessKey(a, b opKey, rank map[string]int) bool {
	if rank[a.op] != rank[b.op] {
		return rank[a.op] < rank[b.op]
	}
	return a.sub < b.sub
}

// runStarted and runEnded keep the metrics of runs apart: the totals of an
// ended run are kept for the next.
func (j *Job) runStarted(c *checkpoint.Coordinator) {
	j.metrics.mu.Lock()
	defer j.metrics.mu.Unlock()
	if p := j.metrics.coord; p != nil {
		s := p.Stats()
		j.metrics.ckpts.Completed += s.Completed
		j.metrics.ckpts.Failed += s.Failed
		if s.Last != nil {
			j.metrics.ckpts.Last = s.Last
		}
		if s.LastFailure != "" {
			j.metrics.ckpts.LastFailure, j.metrics.ckpts.LastFailureTime = s.LastFailure, s.LastFailureTime
		}
	}
	j.metrics.start = time.Now()
	j.metrics.coord = c
}

func (j *Job) runEnded(tasks []*task) {
	j.metrics.mu.Lock()
	defer j.metrics.mu.Unlock()
	// Metrics reads the active run under the same lock: the run's counters
	// move to prev and the run stops being active in one step.
	j.setRun(nil)
	if j.metrics.prev == nil {
		j.metrics.prev = map[opKey]OperatorMetrics{}
	}
	for _, t := range tasks {
		t.publish()
		for i := range t.ops {
			k := opKey{t.ops[i].name, t.subtask}
			j.metrics.prev[k] = addMetrics(t.ops[i].snapshotMetrics(t), j.metrics.prev[k])
		}
	}
}
