package viewcount_test

import (
	"context"
	"fmt"
	"os"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/viewcount"
)

func ExampleBuild() {
	job, err := viewcount.Build(jobs.Config{
		Params: map[string]string{"events": "10000", "videos": "100", "top": "3"},
		Output: os.Stdout,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Unordered output:
	// top> #1 video-3: 201 views
	// top> #2 video-2: 198 views
	// top> #3 video-1: 196 views
	// skipped> 91 views without a video id
}
