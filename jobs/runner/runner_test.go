package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/runner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store keeps what the test sink committed, once per transaction id.
type store struct {
	mu   sync.Mutex
	seen map[string]bool
	seqs map[int64]int
}

func newStore() *store { return &store{seen: map[string]bool{}, seqs: map[int64]int{}} }

func (s *store) count() (distinct, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.seqs {
		distinct++
		total += n
	}
	return distinct, total
}

type txn struct {
	ID   string
	Seqs []int64
}

var txnSeq atomic.Int64

type committer struct {
	st  *store
	id  string
	seq int
}

func (c *committer) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	c.id = fmt.Sprintf("%d-%d", txnSeq.Add(1), oc.Subtask)
	return nil
}
func (c *committer) Begin(context.Context) (*txn, error) {
	c.seq++
	return &txn{ID: fmt.Sprintf("%s-%d", c.id, c.seq)}, nil
}
func (c *committer) Write(_ context.Context, t *txn, v int64, _ dataflow.Timestamp) error {
	t.Seqs = append(t.Seqs, v)
	return nil
}
func (c *committer) Prepare(_ context.Context, t *txn) (*txn, error) { return t, nil }
func (c *committer) Commit(_ context.Context, t *txn) error {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if !c.st.seen[t.ID] {
		c.st.seen[t.ID] = true
		for _, s := range t.Seqs {
			c.st.seqs[s]++
		}
	}
	return nil
}
func (c *committer) Abort(context.Context, *txn) error { return nil }
func (c *committer) Close() error                      { return nil }

// registry holds "numbers": a generator of sequence numbers (param count,
// rate) into an exactly-once sink committing into st.
func registry(st *store) *jobs.Registry {
	reg := jobs.NewRegistry()
	reg.Register(jobs.Definition{
		Name:        "numbers",
		Description: "sequence numbers into a test sink",
		Params:      []jobs.Param{{Name: "count", Default: "1000"}, {Name: "rate", Default: "0"}},
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			count, err := cfg.Int("count", 1000)
			if err != nil {
				return nil, err
			}
			rate, err := cfg.Float("rate", 0)
			if err != nil {
				return nil, err
			}
			job := dataflow.NewJob("numbers", cfg.Job)
			src := memory.Generator(job, "source", memory.GeneratorConfig[int64]{Count: count, Rate: rate,
				Generate: func(seq int64) int64 { return seq }})
			dataflow.AddSink(src, "sink", dataflow.TwoPhaseCommitSink(func() dataflow.TwoPhaseCommitter[int64, *txn] {
				return &committer{st: st}
			}))
			return job, nil
		},
	})
	return reg
}

type api struct {
	t    *testing.T
	base string
}

func (a api) call(method, path string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(a.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	if out != nil {
		require.NoError(a.t, json.Unmarshal(b, out), "%s", b)
	}
	return resp.StatusCode
}

func (a api) get(path string) string {
	a.t.Helper()
	resp, err := http.Get(a.base + path)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, resp.StatusCode, "%s", b)
	return string(b)
}

func newRunner(t *testing.T, st *store) (*runner.Runner, api) {
	dir := t.TempDir()
	r := runner.New(runner.Options{Registry: registry(st), CheckpointDir: filepath.Join(dir, "checkpoints"),
		Defaults: jobs.Config{Output: io.Discard}, Logger: testLogger(t)})
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() {
		r.Close()
		srv.Close()
	})
	return r, api{t, srv.URL}
}

// waitRecords waits until the deployment's sources have read at least n.
func waitRecords(t *testing.T, d *runner.Deployment, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return d.Status().RecordsIn >= n }, 30*time.Second, 5*time.Millisecond)
}

func TestDeploySavepointStopAndRestoreOverREST(t *testing.T) {
	st := newStore()
	r, a := newRunner(t, st)
	const total = 20000

	var status runner.Status
	code := a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Name: "n1", Parallelism: 2,
		Params: map[string]string{"count": fmt.Sprint(total), "rate": "20000"}, CheckpointInterval: "20ms"}, &status)
	require.Equal(t, http.StatusCreated, code)
	require.Equal(t, runner.StateRunning, status.State)
	d, err := r.Get("n1")
	require.NoError(t, err)
	waitRecords(t, d, 2000)

	// Status, list, registry and metrics answer while it runs.
	require.Equal(t, http.StatusOK, a.call("GET", "/v1/jobs/n1", nil, &status))
	require.Equal(t, "numbers", status.Job)
	require.Positive(t, status.RecordsIn)
	var list []runner.Status
	require.Equal(t, http.StatusOK, a.call("GET", "/v1/jobs", nil, &list))
	require.Len(t, list, 1)
	var reg []runner.RegisteredJob
	require.Equal(t, http.StatusOK, a.call("GET", "/v1/registry", nil, &reg))
	require.Equal(t, "numbers", reg[0].Name)
	metrics := a.get("/metrics")
	require.Contains(t, metrics, `sluice_operator_records_out_total{deployment="n1",operator="source",subtask="0"}`)
	require.Contains(t, metrics, `sluice_job_running{deployment="n1",job="numbers"} 1`)
	require.Contains(t, metrics, "sluice_checkpoints_completed_total")
	require.Contains(t, metrics, "go_goroutines")

	// A savepoint on demand, then the checkpoints list.
	spDir := filepath.Join(t.TempDir(), "sp1")
	var sp runner.SavepointResult
	require.Equal(t, http.StatusOK, a.call("POST", "/v1/jobs/n1/savepoint", runner.SavepointRequest{Dir: spDir}, &sp))
	require.Equal(t, spDir, sp.Path)
	require.FileExists(t, filepath.Join(spDir, "manifests", fmt.Sprintf("chk-%d.json", sp.ID)))
	require.Eventually(t, func() bool {
		var cs []runner.CheckpointSummary
		return a.call("GET", "/v1/jobs/n1/checkpoints", nil, &cs) == http.StatusOK && len(cs) > 0
	}, 10*time.Second, 5*time.Millisecond)

	// Stop with a savepoint: the job ends STOPPED before its input ended.
	stopDir := filepath.Join(t.TempDir(), "stop")
	require.Equal(t, http.StatusOK, a.call("POST", "/v1/jobs/n1/stop", runner.StopRequest{Dir: stopDir}, &sp))
	require.Equal(t, http.StatusOK, a.call("GET", "/v1/jobs/n1", nil, &status))
	require.Equal(t, runner.StateStopped, status.State)
	require.Equal(t, stopDir, status.Savepoint)
	_, committed := st.count()
	require.Less(t, committed, total, "stopped before the end")

	// Restore from the savepoint at another parallelism, under a new name.
	code = a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Name: "n2", Parallelism: 3,
		Params: map[string]string{"count": fmt.Sprint(total)}, FromSavepoint: stopDir}, &status)
	require.Equal(t, http.StatusCreated, code, "%+v", status)
	d2, err := r.Get("n2")
	require.NoError(t, err)
	<-d2.Done()
	require.NoError(t, d2.Err())
	require.Equal(t, runner.StateFinished, d2.State())
	distinct, committed := st.count()
	require.Equal(t, total, distinct, "nothing lost")
	require.Equal(t, total, committed, "nothing twice")
}

func TestCancelThenResumeAndDrain(t *testing.T) {
	st := newStore()
	r, a := newRunner(t, st)
	spec := runner.Spec{Job: "numbers", Name: "n", Params: map[string]string{"count": "1000000000", "rate": "20000"},
		CheckpointInterval: "10ms"}
	d, err := r.Deploy(context.Background(), spec)
	require.NoError(t, err)
	waitRecords(t, d, 1000)
	require.Eventually(t, func() bool { return d.Status().CheckpointsCompleted > 0 }, 10*time.Second, 5*time.Millisecond)

	var status runner.Status
	require.Equal(t, http.StatusOK, a.call("POST", "/v1/jobs/n/cancel", nil, &status))
	require.Equal(t, runner.StateCanceled, status.State)
	before, _ := st.count()

	// Deployed again under the same name, it resumes from its checkpoints.
	d, err = r.Deploy(context.Background(), spec)
	require.NoError(t, err)
	waitRecords(t, d, 1000)
	var res runner.SavepointResult
	require.Equal(t, http.StatusOK, a.call("POST", "/v1/jobs/n/stop", runner.StopRequest{Drain: true}, &res))
	require.True(t, res.Final)
	require.NotEmpty(t, res.Path)
	require.Equal(t, runner.StateFinished, d.State())

	distinct, total := st.count()
	require.Equal(t, distinct, total, "no record committed twice across cancel and resume")
	require.Greater(t, distinct, before)
	// The resumed run went on from the checkpoint: every sequence number up
	// to the highest committed is there.
	st.mu.Lock()
	for i := int64(0); i < int64(distinct); i++ {
		require.Equal(t, 1, st.seqs[i], "sequence %d", i)
	}
	st.mu.Unlock()
}

func TestAPIErrors(t *testing.T) {
	st := newStore()
	r, a := newRunner(t, st)
	var eb runner.ErrorBody
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "nope"}, &eb))
	require.Contains(t, eb.Error, `"nope"`)
	require.Contains(t, eb.Error, "numbers", "names the registered jobs")
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Params: map[string]string{"colour": "red"}}, &eb))
	require.Contains(t, eb.Error, `no parameter "colour"`)
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Params: map[string]string{"count": "many"}}, &eb))
	require.Contains(t, eb.Error, `count="many"`)
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Parallelism: 500}, &eb))
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", CheckpointInterval: "soon"}, &eb))
	require.Contains(t, eb.Error, "soon")
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Name: "../x"}, &eb))
	missing := filepath.Join(t.TempDir(), "no-such-savepoint")
	require.Equal(t, http.StatusInternalServerError, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", FromSavepoint: missing}, &eb))
	require.Contains(t, eb.Error, missing)
	require.Equal(t, http.StatusNotFound, a.call("GET", "/v1/jobs/ghost", nil, &eb))
	require.Contains(t, eb.Error, `"ghost"`)
	require.Equal(t, http.StatusNotFound, a.call("POST", "/v1/jobs/ghost/stop", runner.StopRequest{}, &eb))

	// Bad JSON and unknown fields.
	resp, err := http.Post(a.base+"/v1/jobs", "application/json", strings.NewReader(`{"job": "numbers", "paralelism": 2}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(b), "paralelism")

	// A second deployment under a running name is a conflict.
	spec := runner.Spec{Job: "numbers", Name: "busy", Params: map[string]string{"count": "1000000000", "rate": "1000"}}
	d, err := r.Deploy(context.Background(), spec)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, a.call("POST", "/v1/jobs", spec, &eb))
	require.Contains(t, eb.Error, "running")
	require.NoError(t, r.Cancel(context.Background(), "busy"))
	require.Equal(t, http.StatusConflict, a.call("POST", "/v1/jobs/busy/cancel", nil, &eb), "not running any more")
	require.Equal(t, runner.StateCanceled, d.State())
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestDeployWithStorageResumesFromIt(t *testing.T) {
	st := newStore()
	r, _ := newRunner(t, st)
	ckpts, err := checkpoint.NewLocalStorage(filepath.Join(t.TempDir(), "shared"))
	require.NoError(t, err)
	spec := runner.Spec{Job: "numbers", Name: "n", Params: map[string]string{"count": "1000000000", "rate": "20000"},
		CheckpointInterval: "10ms"}
	d, err := r.DeployWithStorage(context.Background(), spec, ckpts)
	require.NoError(t, err)
	require.Empty(t, d.Status().Spec.CheckpointDir, "the runner's directory is not used")
	waitRecords(t, d, 1000)
	require.Eventually(t, func() bool {
		_, err := ckpts.Latest(context.Background())
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "checkpoints go to the storage given")
	require.NoError(t, r.Cancel(context.Background(), "n"))
	first, err := ckpts.Latest(context.Background())
	require.NoError(t, err)

	// Deployed again with the same storage, it goes on from its latest
	// checkpoint: nothing is committed twice.
	_, err = r.DeployWithStorage(context.Background(), spec, ckpts)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m, err := ckpts.Latest(context.Background())
		return err == nil && m.ID > first.ID
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Cancel(context.Background(), "n"))
	distinct, total := st.count()
	require.Equal(t, distinct, total, "no record committed twice")
	for i := int64(0); i < int64(distinct); i++ {
		require.Equal(t, 1, st.seqs[i], "sequence %d", i)
	}

	// A spec that names a directory as well is refused, as is no storage.
	spec.CheckpointDir = t.TempDir()
	_, err = r.DeployWithStorage(context.Background(), spec, ckpts)
	require.ErrorIs(t, err, runner.ErrBadSpec)
	require.ErrorContains(t, err, "keeps its checkpoints in "+ckpts.Location())
	_, err = r.DeployWithStorage(context.Background(), runner.Spec{Job: "numbers"}, nil)
	require.ErrorIs(t, err, runner.ErrBadSpec)
}

func TestRescaleOverRESTResumesFromItsSavepoint(t *testing.T) {
	st := newStore()
	r, a := newRunner(t, st)
	const total = 20000
	var status runner.Status
	require.Equal(t, http.StatusCreated, a.call("POST", "/v1/jobs", runner.Spec{Job: "numbers", Name: "n", Parallelism: 2,
		Params: map[string]string{"count": fmt.Sprint(total), "rate": "20000"}, CheckpointInterval: "20ms"}, &status))
	d, err := r.Get("n")
	require.NoError(t, err)
	waitRecords(t, d, 2000)

	var eb runner.ErrorBody
	require.Equal(t, http.StatusBadRequest, a.call("POST", "/v1/jobs/n/rescale", runner.RescaleRequest{Parallelism: 0}, &eb))
	require.Contains(t, eb.Error, "at least 1")
	require.Equal(t, http.StatusNotFound, a.call("POST", "/v1/jobs/nope/rescale", runner.RescaleRequest{Parallelism: 2}, &eb))

	require.Equal(t, http.StatusOK, a.call("POST", "/v1/jobs/n/rescale", runner.RescaleRequest{Parallelism: 3}, &status), "%+v", status)
	require.Equal(t, runner.StateRunning, status.State)
	require.Equal(t, 3, status.Spec.Parallelism)
	_, committed := st.count()
	require.Less(t, committed, total, "rescaled before the end")
	d3, err := r.Get("n")
	require.NoError(t, err)
	<-d3.Done()
	require.NoError(t, d3.Err())
	require.Equal(t, runner.StateFinished, d3.State())
	distinct, committed := st.count()
	require.Equal(t, total, distinct, "nothing lost")
	require.Equal(t, total, committed, "nothing twice")

	// Finished, it is not rescaled.
	require.Equal(t, http.StatusConflict, a.call("POST", "/v1/jobs/n/rescale", runner.RescaleRequest{Parallelism: 1}, &eb))
	require.Contains(t, eb.Error, "FINISHED")
}
