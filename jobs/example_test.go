package jobs_test

import (
	"fmt"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
)

func ExampleRegistry() {
	reg := jobs.NewRegistry() // jobs.Register adds to jobs.Default instead
	reg.Register(jobs.Definition{
		Name:        "hello",
		Description: "print a greeting",
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			job := dataflow.NewJob("hello", cfg.Job)
			memory.Print(memory.FromSlice(job, "words", []string{"hello"}), "print", cfg.Output)
			return job, nil
		},
	})
	d, err := reg.Lookup("hello")
	fmt.Println(d.Description, err)
	// Output: print a greeting <nil>
}
