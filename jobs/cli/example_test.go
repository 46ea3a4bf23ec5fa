package cli_test

import (
	"context"
	"io"
	"os"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
)

// A program with its own jobs calls the same entry point as jobrunner.
func ExampleMain() {
	reg := jobs.NewRegistry()
	reg.Register(jobs.Definition{
		Name: "hello",
		Build: func(cfg jobs.Config) (*dataflow.Job, error) {
			job := dataflow.NewJob("hello", cfg.Job)
			memory.Print(memory.FromSlice(job, "words", []string{"hello", "world"}), "print", cfg.Output)
			return job, nil
		},
	})
	code := cli.Main(context.Background(), reg, []string{"run", "hello"}, os.Stdout, io.Discard)
	os.Stdout.WriteString(map[int]string{cli.ExitOK: "ok\n"}[code])
	// Output:
	// print> hello
	// print> world
	// ok
}
