package dataflow_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
)

// A checkpointed job, run twice. The first run counts the first six words
// and ends with a final checkpoint in a local directory. The second run,
// with more input, restores from the latest checkpoint there: the generator
// goes on after the last word it made and the counts go on from the
// restored keyed state.
func ExampleConfig_checkpoints() {
	dir, err := os.MkdirTemp("", "sluice-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	storage, err := checkpoint.NewLocalStorage(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	words := []string{"a", "b", "a", "c"}
	run := func(count int64, restore bool) {
		cfg := dataflow.Config{
			Parallelism:       2,
			Checkpoint:        checkpoint.Config{Interval: time.Second},
			CheckpointStorage: storage,
		}
		if restore {
			cfg.RestoreFrom = storage
		}
		job := dataflow.NewJob("word-count", cfg)
		src := memory.Generator(job, "words", memory.GeneratorConfig[string]{
			Count:    count,
			Generate: func(seq int64) string { return words[seq%int64(len(words))] },
		}, dataflow.Parallelism(1))
		counts := operators.Aggregate(dataflow.KeyBy(src, func(w string) string { return w }), "count", operators.Count[string]())
		out := memory.Collect(counts, "collect", dataflow.Parallelism(1))
		if err := job.Run(context.Background()); err != nil {
			fmt.Println(err)
			return
		}
		// The running counts' last value per word.
		last := map[string]int64{}
		for _, kv := range out.Values() {
			last[kv.Key] = max(last[kv.Key], kv.Value)
		}
		var seen []string
		for w, n := range last {
			seen = append(seen, fmt.Sprintf("%s=%d", w, n))
		}
		slices.Sort(seen)
		m, err := storage.Latest(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(len(out.Values()), "updates:", seen, "final checkpoint:", m.Final)
	}
	run(6, false) // words 0..5: a b a c a b
	run(10, true) // words 6..9: a c a b
	// Output:
	// 6 updates: [a=3 b=2 c=1] final checkpoint: true
	// 4 updates: [a=5 b=3 c=2] final checkpoint: true
}
