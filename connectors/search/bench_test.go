package search_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2"

	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

// benchEpoch is the number of records between two checkpoints in the
// benchmarks, and the size of the baselines' batches.
const benchEpoch = 10_000

// viaSinkOp drives a sink operator through n records with a checkpoint,
// completed at once, every benchEpoch records and at the end.
func viaSinkOp(b *testing.B, factory func() dataflow.Operator[event], n int64) {
	ctx := context.Background()
	op := factory()
	if err := op.Open(ctx, &dataflow.OperatorContext{Job: "bench", Operator: "bench", Parallelism: 1, MaxParallelism: 128}); err != nil {
		b.Fatal(err)
	}
	ckpt := int64(0)
	commit := func() {
		ckpt++
		if _, err := op.(dataflow.Snapshotter).SnapshotState(ctx, ckpt); err != nil {
			b.Fatal(err)
		}
		if err := op.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, ckpt); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		if err := op.Process(eventOf(i), dataflow.NoTimestamp); err != nil {
			b.Fatal(err)
		}
		if (i+1)%benchEpoch == 0 {
			commit()
		}
	}
	commit()
	if err := op.Close(); err != nil {
		b.Fatal(err)
	}
}

// baselineBleve is the hand-written loop: the same records indexed into a
// new Bleve index with bleve batches of benchEpoch.
func baselineBleve(b *testing.B, dir string, n int64) {
	idx, err := bleve.New(filepath.Join(dir, "baseline"), bleve.NewIndexMapping())
	if err != nil {
		b.Fatal(err)
	}
	batch := idx.NewBatch()
	for i := range n {
		e := eventOf(i)
		if err := batch.Index(strconv.FormatInt(e.ID, 10), e); err != nil {
			b.Fatal(err)
		}
		if batch.Size() == benchEpoch || i == n-1 {
			if err := idx.Batch(batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if err := idx.Close(); err != nil {
		b.Fatal(err)
	}
}

// bulkStub is an HTTP server that takes bulk requests as a cluster that
// accepts everything would: it reads the body and answers one created item
// per action. It costs the same for the sink and the baseline.
func bulkStub() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_bulk" {
			_, _ = io.WriteString(w, `{"version":{"number":"2.19.0"}}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte{'\n'}) / 2
		out := make([]byte, 0, 40+n*26)
		out = append(out, `{"took":1,"errors":false,"items":[`...)
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"index":{"status":201}}`...)
		}
		out = append(out, "]}"...)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}))
}

// baselineBulk is the hand-written loop: the same records as index actions
// with external versions, posted in bodies of benchEpoch documents, each
// response checked for errors.
func baselineBulk(b *testing.B, url string, n int64) {
	client := &http.Client{}
	var body []byte
	post := func() {
		resp, err := client.Post(url+"/_bulk", "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var r struct {
			Errors bool              `json:"errors"`
			Items  []json.RawMessage `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.Errors {
			b.Fatal(err, r.Errors)
		}
		body = body[:0]
	}
	version := time.Now().UnixMicro()
	for i := range n {
		e := eventOf(i)
		src, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		body = fmt.Appendf(body, `{"index":{"_index":"events","_id":"%d","version":%d,"version_type":"external"}}`+"\n", e.ID, version)
		body = append(append(body, src...), '\n')
		if (i+1)%benchEpoch == 0 || i == n-1 {
			post()
			version++
		}
	}
	client.CloseIdleConnections()
}

// cpuTime is the CPU time, user and system, the process has used: on a
// machine shared with other work it measures cost where wall time also
// measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSinks measures records/s through each sink and through a
// hand-written loop doing the same work, in the same run, and reports each
// sink's ratio to its baseline, by wall time (x-baseline) and by the CPU
// time of the process (x-baseline-cpu, the bulk cases include the
// in-process server). Run it with -benchtime=100000x.
func BenchmarkSinks(b *testing.B) {
	rates := map[string]float64{}
	cpu := map[string]float64{}
	measure := func(name, baseline string, run func(b *testing.B, n int64)) {
		b.Run(name, func(b *testing.B) {
			start, startCPU := time.Now(), cpuTime()
			run(b, int64(b.N))
			rate := float64(b.N) / time.Since(start).Seconds()
			perEvent := float64(cpuTime()-startCPU) / float64(b.N)
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(perEvent, "cpu-ns/event")
			rates[name], cpu[name] = rate, perEvent
			if base := rates[baseline]; baseline != "" && base > 0 {
				b.ReportMetric(rate/base, "x-baseline")
				b.ReportMetric(cpu[baseline]/perEvent, "x-baseline-cpu")
			}
		})
	}
	measure("bleve-baseline", "", func(b *testing.B, n int64) { baselineBleve(b, b.TempDir(), n) })
	measure("bleve-sink", "bleve-baseline", func(b *testing.B, n int64) {
		factory, err := search.NewBleveSink("bench", search.BleveConfig[event]{Path: filepath.Join(b.TempDir(), "index"), ID: eventID})
		if err != nil {
			b.Fatal(err)
		}
		viaSinkOp(b, factory, n)
	})
	srv := bulkStub()
	defer srv.Close()
	measure("bulk-baseline", "", func(b *testing.B, n int64) { baselineBulk(b, srv.URL, n) })
	measure("bulk-sink", "bulk-baseline", func(b *testing.B, n int64) {
		factory, err := search.NewBulkSink("bench", search.BulkConfig[event]{URLs: []string{srv.URL}, Index: "events", ID: eventID})
		if err != nil {
			b.Fatal(err)
		}
		viaSinkOp(b, factory, n)
	})
	if rates["bleve-baseline"] > 0 && rates["bulk-baseline"] > 0 {
		fmt.Fprintf(os.Stderr, "search sinks, events/s: Bleve baseline %.0f, sink %.0f (%.2fx, by CPU time %.2fx); bulk baseline %.0f, sink %.0f (%.2fx, by CPU time %.2fx)\n",
			rates["bleve-baseline"], rates["bleve-sink"], rates["bleve-sink"]/rates["bleve-baseline"], cpu["bleve-baseline"]/cpu["bleve-sink"],
			rates["bulk-baseline"], rates["bulk-sink"], rates["bulk-sink"]/rates["bulk-baseline"], cpu["bulk-baseline"]/cpu["bulk-sink"])
	}
}
