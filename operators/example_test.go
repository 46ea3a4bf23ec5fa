package operators_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

type view struct {
	Video string
	Secs  int
}

func ExampleAggregate() {
	job := dataflow.NewJob("watch-time")
	views := memory.FromSlice(job, "views", []view{{"a", 10}, {"b", 5}, {"a", 30}})
	total := operators.Aggregate(dataflow.KeyBy(views, func(v view) string { return v.Video }), "seconds-per-video",
		operators.Sum(func(v view) int { return v.Secs }))
	memory.Print(total, "total", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// total> {Key:a Value:10}
	// total> {Key:b Value:5}
	// total> {Key:a Value:40}
}

func ExampleProcess() {
	job := dataflow.NewJob("validate")
	views := memory.FromSlice(job, "views", []view{{"a", 10}, {"", 5}})
	invalid := dataflow.NewOutputTag[string]("invalid")
	valid := operators.Process(views, "validate", func(ctx *operators.ProcessContext[view], v view) error {
		if v.Video == "" {
			operators.EmitSide(ctx, invalid, fmt.Sprintf("view without video: %+v", v))
			return nil
		}
		ctx.Emit(v)
		return nil
	})
	memory.Print(valid, "valid", os.Stdout)
	memory.Print(dataflow.SideOutput(valid, invalid), "invalid", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Unordered output:
	// valid> {Video:a Secs:10}
	// invalid> view without video: {Video: Secs:5}
}

func ExampleReduce() {
	job := dataflow.NewJob("longest")
	views := memory.FromSlice(job, "views", []view{{"a", 10}, {"a", 30}, {"a", 20}})
	longest := operators.Reduce(dataflow.KeyBy(views, func(v view) string { return v.Video }), "longest",
		func(a, b view) view {
			if b.Secs > a.Secs {
				return b
			}
			return a
		})
	memory.Print(longest, "print", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// print> {Video:a Secs:10}
	// print> {Video:a Secs:30}
	// print> {Video:a Secs:30}
}
