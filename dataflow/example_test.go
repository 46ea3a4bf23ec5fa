package dataflow_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

// A first job: count words, keyed by word, at parallelism 2.
func Example() {
	job := dataflow.NewJob("word-count", dataflow.Config{Parallelism: 2})
	lines := memory.FromSlice(job, "lines", []string{"to be or", "not to be"}, dataflow.Parallelism(1))
	words := operators.FlatMap(lines, "split", func(line string, emit func(string)) error {
		for _, w := range strings.Fields(line) {
			emit(w)
		}
		return nil
	}, dataflow.Parallelism(1))
	counts := operators.Aggregate(dataflow.KeyBy(words, func(w string) string { return w }), "count", operators.Count[string]())
	final := operators.Filter(counts, "final-counts", func(kv dataflow.KV[string, int64]) bool { return kv.Value == 2 })
	out := memory.Collect(final, "collect")
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	var seen []string
	for _, kv := range out.Values() {
		seen = append(seen, kv.Key)
	}
	slices.Sort(seen)
	fmt.Println("twice:", seen)
	// Output: twice: [be to]
}

func ExampleJob_Plan() {
	job := dataflow.NewJob("plan", dataflow.Config{Parallelism: 2})
	src := memory.FromSlice(job, "numbers", []int{1, 2, 3})
	doubled := operators.Map(src, "double", func(v int) int { return 2 * v })
	sums := operators.Reduce(dataflow.KeyBy(doubled, func(v int) bool { return v%4 == 0 }), "sum", func(a, b int) int { return a + b })
	memory.Discard(sums, "discard")
	plan, err := job.Plan()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(plan)
	// Output:
	// job "plan" (max parallelism 128)
	// task 0 x2: numbers -> double
	//   source "numbers" out=int
	//   operator "double" in=int out=int
	// task 1 x2: sum -> discard
	//   operator "sum" in=int out=int keyed
	//   sink "discard" in=int
	// exchange hash: double => sum
}

func ExampleJob_Validate() {
	job := dataflow.NewJob("broken")
	src := memory.FromSlice(job, "numbers", []int{1})
	operators.Map(src, "double", func(v int) int { return 2 * v })
	operators.Map(src, "double", func(v int) int { return 2 * v })
	fmt.Println(job.Validate())
	// Output:
	// dataflow: operator name used twice: "double" names operator #1 and #2
	// dataflow: stream has no consumer: output of operator "double" is not used; end it with a sink
	// dataflow: stream has no consumer: output of operator "double" is not used; end it with a sink
	// dataflow: job has no sink: job "broken"
}

func ExampleSideOutput() {
	job := dataflow.NewJob("side")
	src := memory.FromSlice(job, "numbers", []int{1, -2, 3})
	negative := dataflow.NewOutputTag[int]("negative")
	positive := operators.Process(src, "split", func(ctx *operators.ProcessContext[int], v int) error {
		if v < 0 {
			operators.EmitSide(ctx, negative, v)
		} else {
			ctx.Emit(v)
		}
		return nil
	})
	memory.Print(positive, "positive", os.Stdout)
	memory.Print(dataflow.SideOutput(positive, negative), "negative", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Unordered output:
	// positive> 1
	// negative> -2
	// positive> 3
}

func ExampleKeyGroupOf() {
	// Key groups are stable: the same key maps to the same group in every process.
	kg := dataflow.KeyGroupOf("video-42", 128)
	fmt.Println(kg, "owned by subtask", kg*4/128, "of 4")
	// Output: 63 owned by subtask 1 of 4
}

// A test harness scripts event time: elements, then the watermark.
func ExampleTestHarness() {
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[string]) dataflow.Stream[dataflow.KV[string, int64]] {
		return operators.Aggregate(dataflow.KeyBy(in, func(s string) string { return s }), "count", operators.Count[string]())
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	t0 := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	_ = h.Add("a", t0)
	_ = h.Add("a", t0.Add(time.Second))
	_ = h.AdvanceWatermark(t0.Add(time.Second))
	for _, r := range h.Output() {
		fmt.Println(r.Value, r.Timestamp.Time().Format(time.TimeOnly))
	}
	fmt.Println(h.Watermarks()[0].Time().Format(time.TimeOnly))
	// Output:
	// {a 1} 13:00:00
	// {a 2} 13:00:01
	// 13:00:01
}
