package runner_test

import (
	"context"
	"fmt"
	"io"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/runner"
)

// A program embeds a runner, deploys a registered job and waits for it.
func ExampleRunner() {
	reg := jobs.NewRegistry()
	reg.Register(jobs.Definition{
		Name: "hello",
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			job := dataflow.NewJob("hello", cfg.Job)
			memory.Print(memory.FromSlice(job, "words", []string{"hello", "runner"}), "print", cfg.Output)
			return job, nil
		},
	})
	out := &syncWriter{}
	r := runner.New(runner.Options{Registry: reg, Defaults: jobs.Config{Output: out}, Logger: discardLogger()})
	defer r.Close()
	d, err := r.Deploy(context.Background(), runner.Spec{Job: "hello"})
	if err != nil {
		fmt.Println(err)
		return
	}
	<-d.Done()
	st := d.Status()
	fmt.Print(out.String())
	fmt.Println(st.Name, st.State, st.RecordsIn, "records read")
	// Output:
	// print> hello
	// print> runner
	// hello FINISHED 2 records read
}

var _ io.Writer = (*syncWriter)(nil)
