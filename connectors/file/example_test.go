package file_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

// printTree prints the files under dir with their contents; hidden files
// (still being written, or waiting for their checkpoint) are marked.
func printTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".") {
			fmt.Printf("(hidden) %s\n", filepath.Dir(rel))
			return nil
		}
		b, _ := os.ReadFile(p)
		fmt.Printf("%s:\n%s", filepath.ToSlash(rel), b)
		return nil
	})
}

type order struct {
	ID     int     `json:"id" csv:"id"`
	Amount float64 `json:"amount" csv:"amount"`
}

// A bounded job writes JSON Lines; the final checkpoint at end of input
// commits the part file.
func ExampleSink() {
	dir, _ := os.MkdirTemp("", "orders")
	defer os.RemoveAll(dir)

	job := dataflow.NewJob("orders-to-files")
	orders := memory.FromSlice(job, "orders", []order{{1, 9.5}, {2, 20}, {3, 7.25}})
	file.Sink(orders, "order-files", file.Config[order]{Dir: dir})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	printTree(dir)
	// Output:
	// part-0-1-0.jsonl:
	// {"id":1,"amount":9.5}
	// {"id":2,"amount":20}
	// {"id":3,"amount":7.25}
}

// Driving the sink's operator by hand shows the file lifecycle: a part file is
// hidden while written and while its checkpoint is pending, and appears under
// its final name when the checkpoint completes.
func ExampleNewSink() {
	dir, _ := os.MkdirTemp("", "orders")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	newOp, err := file.NewSink("order-files", file.Config[order]{Dir: dir, Format: file.CSV})
	if err != nil {
		fmt.Println(err)
		return
	}
	op := newOp()
	_ = op.Open(ctx, &dataflow.OperatorContext{Job: "orders", Operator: "order-files", Parallelism: 1, MaxParallelism: 128})
	_ = op.Process(order{1, 9.5}, dataflow.NoTimestamp)
	_ = op.Process(order{2, 20}, dataflow.NoTimestamp)
	fmt.Println("written:")
	printTree(dir)

	_, _ = op.(dataflow.Snapshotter).SnapshotState(ctx, 7)
	fmt.Println("prepared for checkpoint 7:")
	printTree(dir)

	_ = op.(dataflow.CheckpointListener).NotifyCheckpointComplete(ctx, 7)
	fmt.Println("checkpoint 7 complete:")
	printTree(dir)
	_ = op.Close()
	// Output:
	// written:
	// (hidden) .
	// prepared for checkpoint 7:
	// (hidden) .
	// checkpoint 7 complete:
	// part-0-7-0.csv:
	// id,amount
	// 1,9.5
	// 2,20
}

// Records go to Hive-style directories by their event time in UTC; a record
// without an event time goes to the default partition.
func ExampleConfig_partitions() {
	dir, _ := os.MkdirTemp("", "orders")
	defer os.RemoveAll(dir)

	base := time.Date(2026, 11, 22, 13, 59, 0, 0, time.UTC)
	job := dataflow.NewJob("orders-by-hour")
	orders := memory.FromSlice(job, "orders", []timed{{order{1, 9.5}, base}, {order{2, 20}, base.Add(time.Minute)}, {order{3, 1}, time.Time{}}})
	stamped := dataflow.AddOperator(orders, "stamp", func(out dataflow.Output[order]) dataflow.Operator[timed] {
		return stamp{out: out}
	})
	file.Sink(stamped, "order-files", file.Config[order]{Dir: dir, PartitionPattern: "dt=2006-01-02/hour=15"})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	printTree(dir)
	// Output:
	// dt=2026-11-22/hour=13/part-0-1-0.jsonl:
	// {"id":1,"amount":9.5}
	// dt=2026-11-22/hour=14/part-0-1-1.jsonl:
	// {"id":2,"amount":20}
	// dt=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__/part-0-1-2.jsonl:
	// {"id":3,"amount":1}
}

type timed struct {
	order
	At time.Time
}

// stamp gives each order its time as event time (none for a zero time).
type stamp struct {
	dataflow.OperatorBase
	out dataflow.Output[order]
}

func (s stamp) Process(v timed, _ dataflow.Timestamp) error {
	ts := dataflow.NoTimestamp
	if !v.At.IsZero() {
		ts = dataflow.TimestampOf(v.At)
	}
	s.out.Collect(v.order, ts)
	return nil
}
