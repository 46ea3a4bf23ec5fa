// Package testjobs holds the jobs that the cluster's tests deploy, both to
// nodes inside the test process and to the node processes of the soak test
// (package soaknode), so that both run the same code.
package testjobs

import (
	"fmt"
	"strings"

	"github.com/sluicedata/sluice/connectors/jetstream"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/operators"
)

// StateKeys is the number of keys of the "keyed" job's state.
const StateKeys = 100_000

// Register adds to reg:
//   - "copy": it reads the stream IN (partitions in.0 and in.1) and
//     publishes every message as it is to out.<partition>, through the
//     exactly-once JetStream sink; a message is "partition:sequence";
//   - "keyed": a running count over StateKeys keys of generated numbers,
//     whose counts of the keys below 100 go to out.0 as "key:count".
func Register(reg *jobs.Registry) {
	reg.Register(jobs.Definition{
		Name:        "copy",
		Description: "IN to OUT, exactly once",
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			job := dataflow.NewJob("copy", cfg.Job)
			in := jetstream.Source(job, "in", jetstream.SourceConfig[string]{Conn: cfg.NATS, Stream: "IN",
				Partitions: []string{"in.0", "in.1"}, Start: cfg.Start})
			jetstream.Sink(in, "out", jetstream.SinkConfig[string]{Conn: cfg.NATS,
				Subject: func(v string) string { return "out." + v[:strings.IndexByte(v, ':')] }})
			return job, nil
		},
	})
	reg.Register(jobs.Definition{
		Name:        "keyed",
		Description: "a running count over StateKeys keys of generated numbers; the counts of 100 keys to OUT",
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			job := dataflow.NewJob("keyed", cfg.Job)
			src := memory.Generator(job, "numbers", memory.GeneratorConfig[int64]{Rate: 200_000,
				Generate: func(seq int64) int64 { return seq }})
			counts := operators.Aggregate(dataflow.KeyBy(src, func(v int64) int64 { return v % StateKeys }), "count",
				operators.Count[int64]())
			few := operators.Filter(counts, "few", func(kv dataflow.KV[int64, int64]) bool { return kv.Key < 100 })
			out := operators.Map(few, "format", func(kv dataflow.KV[int64, int64]) string { return fmt.Sprintf("%d:%d", kv.Key, kv.Value) })
			jetstream.Sink(out, "out", jetstream.SinkConfig[string]{Conn: cfg.NATS, Subject: func(string) string { return "out.0" }})
			return job, nil
		},
	})
}
