package window_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/window"
)

// Views per video per minute, in event time.
func ExampleAggregate() {
	type view struct {
		Video string
		At    time.Time
	}
	start := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	views := []view{
		{"cats", start.Add(10 * time.Second)}, {"dogs", start.Add(20 * time.Second)},
		{"cats", start.Add(50 * time.Second)}, {"cats", start.Add(70 * time.Second)},
	}
	job := dataflow.NewJob("views-per-minute")
	src := memory.Generator(job, "views", memory.GeneratorConfig[view]{
		Count:      int64(len(views)),
		Generate:   func(seq int64) view { return views[seq] },
		Watermarks: dataflow.BoundedOutOfOrderness(5*time.Second, func(v view) time.Time { return v.At }),
	})
	counts := window.Aggregate(dataflow.KeyBy(src, func(v view) string { return v.Video }), "views-per-minute",
		window.Tumbling(time.Minute), operators.Count[view]())
	out := memory.Collect(counts, "collect")
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range out.Values() {
		fmt.Printf("%s %s-%s %d\n", r.Key, r.Window.Start.Time().Format("15:04"), r.Window.End.Time().Format("15:04"), r.Value)
	}
	// Output:
	// cats 13:00-13:01 2
	// dogs 13:00-13:01 1
	// cats 13:01-13:02 1
}
