package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicedata/sluice/jobs"
)

// API paths.
const (
	PathRegistry = "/v1/registry"
	PathJobs     = "/v1/jobs"
	PathMetrics  = "/metrics"
	PathHealth   = "/healthz"
)

// StopRequest is the body of POST /v1/jobs/{name}/stop.
type StopRequest struct {
	Drain bool   `json:"drain,omitempty"`
	Dir   string `json:"dir,omitempty"`
}

// RescaleRequest is the body of POST /v1/jobs/{name}/rescale.
type RescaleRequest struct {
	Parallelism int `json:"parallelism"`
}

// SavepointRequest is the body of POST /v1/jobs/{name}/savepoint.
type SavepointRequest struct {
	Dir string `json:"dir,omitempty"`
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// RegisteredJob is one entry of GET /v1/registry.
type RegisteredJob struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Params      []jobs.Param `json:"params,omitempty"`
	Demo        bool         `json:"demo,omitempty"`
}

// Handler serves the runner's REST API and its Prometheus metrics:
//
//	GET  /v1/registry                  the jobs that can be deployed
//	GET  /v1/jobs                      every deployment's status
//	POST /v1/jobs                      deploy a Spec; 201 with its status
//	GET  /v1/jobs/{name}               a deployment's status
//	GET  /v1/jobs/{name}/checkpoints   its completed checkpoints
//	POST /v1/jobs/{name}/savepoint     take a savepoint (SavepointRequest)
//	POST /v1/jobs/{name}/stop          stop with a savepoint or drain (StopRequest)
//	POST /v1/jobs/{name}/cancel        cancel
//	POST /v1/jobs/{name}/rescale       stop with a savepoint and start again at another parallelism (RescaleRequest); its status
//	GET  /metrics                      Prometheus metrics
//	GET  /healthz                      200 "ok"
//
// Errors are JSON ErrorBody with 400 (bad spec or request), 404 (no such
// deployment), 409 (conflict: a deployment of that name is running, or the
// deployment is not running) or 500.
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathRegistry, func(w http.ResponseWriter, _ *http.Request) {
		var out []RegisteredJob
		for _, d := range r.opts.Registry.All() {
			out = append(out, RegisteredJob{Name: d.Name, Description: d.Description, Params: d.Params, Demo: d.Demo != nil})
		}
		WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+PathJobs, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, r.List())
	})
	mux.HandleFunc("POST "+PathJobs, func(w http.ResponseWriter, req *http.Request) {
		var spec Spec
		if !ReadJSON(w, req, &spec) {
			return
		}
		d, err := r.Deploy(context.WithoutCancel(req.Context()), spec)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusCreated, d.Status())
	})
	mux.HandleFunc("GET "+PathJobs+"/{name}", func(w http.ResponseWriter, req *http.Request) {
		s, err := r.Status(req.PathValue("name"))
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET "+PathJobs+"/{name}/checkpoints", func(w http.ResponseWriter, req *http.Request) {
		cs, err := r.Checkpoints(req.Context(), req.PathValue("name"))
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, cs)
	})
	mux.HandleFunc("POST "+PathJobs+"/{name}/savepoint", func(w http.ResponseWriter, req *http.Request) {
		var body SavepointRequest
		if !ReadJSON(w, req, &body) {
			return
		}
		res, err := r.Savepoint(req.Context(), req.PathValue("name"), body.Dir)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST "+PathJobs+"/{name}/stop", func(w http.ResponseWriter, req *http.Request) {
		var body StopRequest
		if !ReadJSON(w, req, &body) {
			return
		}
		res, err := r.Stop(req.Context(), req.PathValue("name"), body.Drain, body.Dir)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST "+PathJobs+"/{name}/rescale", func(w http.ResponseWriter, req *http.Request) {
		var body RescaleRequest
		if !ReadJSON(w, req, &body) {
			return
		}
		d, err := r.Rescale(req.Context(), req.PathValue("name"), body.Parallelism)
		if err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, d.Status())
	})
	mux.HandleFunc("POST "+PathJobs+"/{name}/cancel", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("name")
		if err := r.Cancel(req.Context(), name); err != nil {
			WriteError(w, err)
			return
		}
		s, _ := r.Status(name)
		WriteJSON(w, http.StatusOK, s)
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), r.Collector())
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// ReadJSON decodes the request body into v (unknown fields are an error);
// an empty body leaves v as it is. On error it answers 400 and returns
// false. A cluster node's API reads with it too.
func ReadJSON(w http.ResponseWriter, req *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		WriteJSON(w, http.StatusBadRequest, ErrorBody{Error: fmt.Sprintf("request body: %v", err)})
		return false
	}
	return true
}

// WriteJSON answers code with v as indented JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError answers err as an ErrorBody, with the status its kind calls
// for: 400 ErrBadSpec, 404 ErrNotFound, 409 ErrConflict, 504 a deadline,
// 500 otherwise.
func WriteError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadSpec):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	WriteJSON(w, code, ErrorBody{Error: err.Error()})
}

// Collector returns a Prometheus collector of every deployment's metrics.
func (r *Runner) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Runner }

var (
	opLabels  = []string{"deployment", "operator", "subtask"}
	jobLabels = []string{"deployment", "job"}

	descUp          = prometheus.NewDesc("sluice_job_running", "1 while the deployment's job runs.", jobLabels, nil)
	descUptime      = prometheus.NewDesc("sluice_job_uptime_seconds", "How long the deployment's job has run.", jobLabels, nil)
	descRestarts    = prometheus.NewDesc("sluice_job_restarts_total", "Restarts after failures.", jobLabels, nil)
	descIn          = prometheus.NewDesc("sluice_operator_records_in_total", "Records given to the operator subtask.", opLabels, nil)
	descOut         = prometheus.NewDesc("sluice_operator_records_out_total", "Records the operator subtask emitted.", opLabels, nil)
	descWmLag       = prometheus.NewDesc("sluice_operator_watermark_lag_seconds", "Wall clock minus the operator subtask's watermark.", opLabels, nil)
	descBackpress   = prometheus.NewDesc("sluice_operator_backpressure_seconds_total", "Time the subtask waited for room downstream.", opLabels, nil)
	descCommits     = prometheus.NewDesc("sluice_sink_commits_total", "Transactions a two-phase sink committed.", opLabels, nil)
	descCommitTime  = prometheus.NewDesc("sluice_sink_commit_seconds_total", "Total time of a sink's commits.", opLabels, nil)
	descCommitLast  = prometheus.NewDesc("sluice_sink_commit_last_seconds", "Duration of a sink's last commit.", opLabels, nil)
	descCkCompleted = prometheus.NewDesc("sluice_checkpoints_completed_total", "Completed checkpoints and savepoints.", jobLabels, nil)
	descCkFailed    = prometheus.NewDesc("sluice_checkpoints_failed_total", "Failed checkpoints and savepoints.", jobLabels, nil)
	descCkDuration  = prometheus.NewDesc("sluice_checkpoint_last_duration_seconds", "Duration of the last completed checkpoint.", jobLabels, nil)
	descCkSize      = prometheus.NewDesc("sluice_checkpoint_last_size_bytes", "Bytes the last completed checkpoint wrote.", jobLabels, nil)
	descCkLastID    = prometheus.NewDesc("sluice_checkpoint_last_id", "Id of the last completed checkpoint.", jobLabels, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descUptime, descRestarts, descIn, descOut, descWmLag, descBackpress,
		descCommits, descCommitTime, descCommitLast, descCkCompleted, descCkFailed, descCkDuration, descCkSize, descCkLastID} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	deps := make([]*Deployment, 0, len(c.r.deps))
	for _, d := range c.r.deps {
		deps = append(deps, d)
	}
	c.r.mu.Unlock()
	now := time.Now()
	for _, d := range deps {
		m := d.job.Metrics()
		st := d.Status()
		jl := []string{d.Name, d.Spec.Job}
		up := 0.0
		if st.State == StateRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, jl...)
		ch <- prometheus.MustNewConstMetric(descUptime, prometheus.GaugeValue, st.Uptime, jl...)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(m.Restarts), jl...)
		for _, o := range m.Operators {
			ol := []string{d.Name, o.Operator, strconv.Itoa(o.Subtask)}
			if !o.Source {
				ch <- prometheus.MustNewConstMetric(descIn, prometheus.CounterValue, float64(o.RecordsIn), ol...)
			}
			ch <- prometheus.MustNewConstMetric(descOut, prometheus.CounterValue, float64(o.RecordsOut), ol...)
			if o.Watermark != minWatermark && o.Watermark != maxWatermark {
				ch <- prometheus.MustNewConstMetric(descWmLag, prometheus.GaugeValue, now.Sub(o.Watermark.Time()).Seconds(), ol...)
			}
			ch <- prometheus.MustNewConstMetric(descBackpress, prometheus.CounterValue, o.Backpressured.Seconds(), ol...)
			if o.SinkCommits > 0 {
				ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(o.SinkCommits), ol...)
				ch <- prometheus.MustNewConstMetric(descCommitTime, prometheus.CounterValue, o.SinkCommitTime.Seconds(), ol...)
				ch <- prometheus.MustNewConstMetric(descCommitLast, prometheus.GaugeValue, o.SinkCommitLast.Seconds(), ol...)
			}
		}
		ck := m.Checkpoints
		ch <- prometheus.MustNewConstMetric(descCkCompleted, prometheus.CounterValue, float64(ck.Completed), jl...)
		ch <- prometheus.MustNewConstMetric(descCkFailed, prometheus.CounterValue, float64(ck.Failed), jl...)
		if ck.Last != nil {
			ch <- prometheus.MustNewConstMetric(descCkDuration, prometheus.GaugeValue, ck.Last.Duration.Seconds(), jl...)
			ch <- prometheus.MustNewConstMetric(descCkSize, prometheus.GaugeValue, float64(ck.Last.Size), jl...)
			ch <- prometheus.MustNewConstMetric(descCkLastID, prometheus.GaugeValue, float64(ck.Last.ID), jl...)
		}
	}
}
