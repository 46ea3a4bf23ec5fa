package runner

import (
	"sync"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/dataflow"
)

// Status is what `jobrunner status` shows of a deployment, and the JSON of
// GET /v1/jobs/{name}.
type Status struct {
	Name    string    `json:"name"`
	Job     string    `json:"job"`
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Uptime is how long the job has run (until it ended), in seconds.
	Uptime   float64 `json:"uptime_seconds"`
	Restarts int64   `json:"restarts"`
	Error    string  `json:"error,omitempty"`
	// RecordsIn is what the sources read; RecordsPerSecond their recent
	// rate (over the last few seconds).
	RecordsIn        int64   `json:"records_in"`
	RecordsPerSecond float64 `json:"records_per_second"`
	// WatermarkLag is how far, in seconds, the slowest operator's event time
	// is behind the wall clock; absent before the first watermark and after
	// the end of input.
	WatermarkLag *float64 `json:"watermark_lag_seconds,omitempty"`
	// Checkpoints completed and failed, and the last completed one.
	CheckpointsCompleted int64                      `json:"checkpoints_completed"`
	CheckpointsFailed    int64                      `json:"checkpoints_failed"`
	LastCheckpoint       *checkpoint.CheckpointInfo `json:"last_checkpoint,omitempty"`
	LastCheckpointError  string                     `json:"last_checkpoint_error,omitempty"`
	// Savepoint is where the stop's savepoint (or a drain's final
	// checkpoint) went.
	Savepoint string `json:"savepoint,omitempty"`
	Spec      Spec   `json:"spec"`
	// Node is the cluster node the deployment is assigned to; empty on a
	// runner that is not a cluster node.
	Node string `json:"node,omitempty"`
	// Waiting says why a cluster deployment is assigned to no node.
	Waiting string `json:"waiting,omitempty"`
}

// Status returns the deployment's status now.
func (d *Deployment) Status() Status {
	m := d.job.Metrics()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Name: d.Name, Job: d.Spec.Job, State: d.state, Started: d.started, Ended: d.ended,
		Restarts: m.Restarts, Savepoint: d.savepoint, Spec: d.Spec}
	end := time.Now()
	if !d.ended.IsZero() {
		end = d.ended
	}
	s.Uptime = end.Sub(d.started).Seconds()
	if d.err != nil {
		s.Error = d.err.Error()
	}
	s.RecordsIn = sourceRecords(m)
	s.RecordsPerSecond = d.rate.observe(time.Now(), s.RecordsIn)
	if d.state != StateRunning {
		s.RecordsPerSecond = 0
	}
	if lag, ok := watermarkLag(m, time.Now()); ok {
		s.WatermarkLag = &lag
	}
	s.CheckpointsCompleted, s.CheckpointsFailed = m.Checkpoints.Completed, m.Checkpoints.Failed
	s.LastCheckpoint = m.Checkpoints.Last
	s.LastCheckpointError = m.Checkpoints.LastFailure
	return s
}

// sourceRecords sums what the sources emitted.
func sourceRecords(m dataflow.Metrics) int64 {
	var n int64
	for _, o := range m.Operators {
		if o.Source {
			n += o.RecordsOut
		}
	}
	return n
}

// watermarkLag is now minus the lowest watermark of an operator that is
// not a source and has seen a watermark that is not the end of input.
func watermarkLag(m dataflow.Metrics, now time.Time) (float64, bool) {
	found := false
	var low dataflow.Timestamp
	for _, o := range m.Operators {
		if o.Source || o.Watermark == dataflow.MinWatermark || o.Watermark == dataflow.MaxWatermark {
			continue
		}
		if !found || o.Watermark < low {
			low, found = o.Watermark, true
		}
	}
	if !found {
		return 0, false
	}
	return now.Sub(low.Time()).Seconds(), true
}

// rateSampler turns a growing count into a rate over a sliding window of
// recent samples.
type rateSampler struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at time.Time
	n  int64
}

const rateWindow = 5 * time.Second

// observe records n at now and returns the rate over the window.
func (r *rateSampler) observe(now time.Time, n int64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, sample{now, n})
	// Keep one sample older than the window, to measure across it.
	i := 0
	for i+1 < len(r.samples) && now.Sub(r.samples[i+1].at) >= rateWindow {
		i++
	}
	r.samples = r.samples[i:]
	first := r.samples[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(n-first.n) / dt
}

const (
	minWatermark = dataflow.MinWatermark
	maxWatermark = dataflow.MaxWatermark
)
