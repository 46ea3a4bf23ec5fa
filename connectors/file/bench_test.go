package file_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/dataflow"
)

// small is the benchmark record.
type small struct {
	ID    int64   `json:"id" parquet:"id"`
	User  int64   `json:"user" parquet:"user"`
	Score float64 `json:"score" parquet:"score"`
	Kind  string  `json:"kind" parquet:"kind,dict"`
}

var kinds = [...]string{"view", "click", "share", "like"}

func genSmall(i int64) small {
	return small{ID: i, User: i * 7919 % 100_003, Score: float64(i%1000) / 8, Kind: kinds[i%4]}
}

// baselineJSONL is the hand-written loop: json.Encoder into a bufio.Writer
// on a file, synced at the end.
func baselineJSONL(b *testing.B, dir string, n int64) {
	f, err := os.Create(filepath.Join(dir, "baseline.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	enc := json.NewEncoder(bw)
	for i := range n {
		if err := enc.Encode(genSmall(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// baselineParquet is the hand-written loop: parquet-go's GenericWriter on a
// file, rows in batches of 256, snappy pages, synced at the end.
func baselineParquet(b *testing.B, dir string, n int64) {
	f, err := os.Create(filepath.Join(dir, "baseline.parquet"))
	if err != nil {
		b.Fatal(err)
	}
	w := parquet.NewGenericWriter[small](f, parquet.Compression(&parquet.Snappy))
	rows := make([]small, 0, 256)
	for i := range n {
		rows = append(rows, genSmall(i))
		if len(rows) == cap(rows) || i == n-1 {
			if _, err := w.Write(rows); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// viaSink writes n records through the sink's operator and commits them with
// one checkpoint (parts roll at the default 128 MiB).
func viaSink(b *testing.B, cfg file.Config[small], n int64, ts func(i int64) dataflow.Timestamp) {
	factory, err := file.NewSink("bench", cfg)
	if err != nil {
		b.Fatal(err)
	}
	op := factory()
	ctx := context.Background()
	if err := op.Open(ctx, &dataflow.OperatorContext{Parallelism: 1, MaxParallelism: 128}); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		t := dataflow.NoTimestamp
		if ts != nil {
			t = ts(i)
		}
		if err := op.Process(genSmall(i), t); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := op.(dataflow.Snapshotter).SnapshotState(ctx, 1); err != nil {
		b.Fatal(err)
	}
	if err := op.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, 1); err != nil {
		b.Fatal(err)
	}
	if err := op.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite measures records/s writing small structs as JSON Lines and
// Parquet through the sink and with a hand-written loop, in the same run, and
// reports the sink's ratio to its baseline. Run it with -benchtime=1000000x
// (a million records per case).
func BenchmarkWrite(b *testing.B) {
	rates := map[string]float64{}
	measure := func(name, baseline string, run func(b *testing.B, dir string, n int64)) {
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			start := time.Now()
			run(b, dir, int64(b.N))
			rate := float64(b.N) / time.Since(start).Seconds()
			b.ReportMetric(rate, "events/s")
			rates[name] = rate
			if base := rates[baseline]; baseline != "" && base > 0 {
				b.ReportMetric(rate/base, "x-baseline")
			}
		})
	}
	measure("jsonl-baseline", "", baselineJSONL)
	measure("jsonl-sink", "jsonl-baseline", func(b *testing.B, dir string, n int64) {
		viaSink(b, file.Config[small]{Dir: dir}, n, nil)
	})
	measure("jsonl-partitioned-sink", "jsonl-baseline", func(b *testing.B, dir string, n int64) {
		// Event times a millisecond apart: a new hourly partition every
		// 3.6 million records.
		base := dataflow.TimestampOf(time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC))
		viaSink(b, file.Config[small]{Dir: dir, PartitionPattern: "dt=2006-01-02/hour=15"}, n,
			func(i int64) dataflow.Timestamp {
				return base + dataflow.Timestamp(i)*dataflow.Timestamp(time.Millisecond)
			})
	})
	measure("parquet-baseline", "", baselineParquet)
	measure("parquet-sink", "parquet-baseline", func(b *testing.B, dir string, n int64) {
		viaSink(b, file.Config[small]{Dir: dir, Format: file.Parquet, Compression: file.Snappy}, n, nil)
	})
	if rates["jsonl-baseline"] > 0 && rates["parquet-baseline"] > 0 {
		fmt.Fprintf(os.Stderr, "file sink, events/s: JSON Lines baseline %.0f, sink %.0f (%.2fx); Parquet baseline %.0f, sink %.0f (%.2fx)\n",
			rates["jsonl-baseline"], rates["jsonl-sink"], rates["jsonl-sink"]/rates["jsonl-baseline"],
			rates["parquet-baseline"], rates["parquet-sink"], rates["parquet-sink"]/rates["parquet-baseline"])
	}
}
