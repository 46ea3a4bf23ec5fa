package memory_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

func ExampleGenerator() {
	job := dataflow.NewJob("squares")
	nums := memory.Generator(job, "numbers", memory.GeneratorConfig[int64]{
		Count:    4,
		Generate: func(seq int64) int64 { return seq * seq },
	})
	memory.Print(nums, "print", os.Stdout)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// print> 0
	// print> 1
	// print> 4
	// print> 9
}

func ExampleCollect() {
	job := dataflow.NewJob("collect")
	words := memory.FromSlice(job, "words", []string{"a", "bb", "ccc"})
	lengths := operators.Map(words, "length", func(s string) int { return len(s) })
	out := memory.Collect(lengths, "collect")
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	fmt.Println(out.Values())
	// Output: [1 2 3]
}
