package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
)

// Writing a checkpoint's file and its manifest, then restoring from the
// latest checkpoint.
func Example() {
	dir, err := os.MkdirTemp("", "checkpoint-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	st, err := checkpoint.NewLocalStorage(dir)
	if err != nil {
		panic(err)
	}
	_, err = st.Latest(ctx)
	fmt.Println("before:", errors.Is(err, checkpoint.ErrNoCheckpoint))

	// A task writes its state...
	w, err := st.Create(ctx, 1, "counter/0/operator")
	if err != nil {
		panic(err)
	}
	if _, err := io.WriteString(w, "count=42"); err != nil {
		w.Abort()
		panic(err)
	}
	ref, err := w.Commit()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %d bytes crc32c %08x\n", ref.Path, ref.Size, ref.CRC32C)

	// ...and once every task has acknowledged, the coordinator commits the
	// manifest: checkpoint 1 is complete.
	m := &checkpoint.Manifest{
		Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: 1, Job: "example",
		Created: time.Now().UTC(), MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{{Name: "counter", Parallelism: 1,
			Subtasks: []checkpoint.SubtaskState{{Operator: &ref}}}},
	}
	if err := st.Commit(ctx, m); err != nil {
		panic(err)
	}

	// After a restart: the latest checkpoint, its files checked as read.
	latest, err := st.Latest(ctx)
	if err != nil {
		panic(err)
	}
	op, _ := latest.Operator("counter")
	r, err := st.Open(ctx, *op.Subtasks[0].Operator)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	state, err := io.ReadAll(r)
	if err != nil {
		panic(err)
	}
	fmt.Printf("restored checkpoint %d: %s\n", latest.ID, state)
	// Output:
	// before: true
	// chk-1/counter/0/operator 8 bytes crc32c 9879c967
	// restored checkpoint 1: count=42
}

func ExampleExponentialBackoff() {
	s, err := checkpoint.ExponentialBackoff(time.Second, 10*time.Second, 2, 5)
	if err != nil {
		panic(err)
	}
	for failures := 1; ; failures++ {
		delay, restart := s.Next(failures, errors.New("task failed"))
		if !restart {
			fmt.Printf("failure %d: give up\n", failures)
			break
		}
		fmt.Printf("failure %d: restart after %v\n", failures, delay)
	}
	// Output:
	// failure 1: restart after 1s
	// failure 2: restart after 2s
	// failure 3: restart after 4s
	// failure 4: restart after 8s
	// failure 5: restart after 10s
	// failure 6: give up
}

// A job that runs stably for ResetAfter gets its full number of attempts
// again.
func ExampleRestartTracker() {
	fixed, err := checkpoint.FixedDelay(2, time.Second)
	if err != nil {
		panic(err)
	}
	tr := &checkpoint.RestartTracker{Strategy: fixed, ResetAfter: 10 * time.Minute}
	for _, ranFor := range []time.Duration{time.Minute, time.Minute, time.Hour, time.Minute, time.Minute} {
		_, restart := tr.Failed(ranFor, errors.New("task failed"))
		fmt.Printf("ran %v: failure %d, restart %v\n", ranFor, tr.Failures(), restart)
	}
	// Output:
	// ran 1m0s: failure 1, restart true
	// ran 1m0s: failure 2, restart true
	// ran 1h0m0s: failure 1, restart true
	// ran 1m0s: failure 2, restart true
	// ran 1m0s: failure 3, restart false
}

func ExampleConfig() {
	cfg := checkpoint.Config{Interval: 30 * time.Second}.WithDefaults()
	fmt.Println(cfg.Validate(), cfg.Timeout, cfg.Retain, cfg.TolerableFailures)
	fmt.Println(checkpoint.Config{Interval: -time.Second}.Validate())
	// Output:
	// <nil> 10m0s 3 0
	// checkpoint: Interval is -1s; it must be positive to enable periodic checkpoints, or 0 to disable them
}
