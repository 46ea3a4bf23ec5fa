package state_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// A keyed operator counts views per video: declare a Value, set the current
// key before each record, read-modify-write.
func Example() {
	b, _ := state.NewHeap(state.Config{
		OperatorUID: "views-per-video",
		KeyGroups:   keygroup.RangeFor(0, 1, keygroup.DefaultMaxParallelism),
	})
	defer b.Close()
	count, _ := state.NewValue[int64](b, "count")

	for _, video := range []string{"cats", "dogs", "cats"} {
		key := []byte(video)
		b.SetCurrentKey(keygroup.Of(key, keygroup.DefaultMaxParallelism), key)
		n, _, _ := count.Get()
		_ = count.Update(n + 1)
	}
	key := []byte("cats")
	b.SetCurrentKey(keygroup.Of(key, keygroup.DefaultMaxParallelism), key)
	n, _, _ := count.Get()
	fmt.Println("cats:", n)
	// Output: cats: 2
}

// TTL with a scripted clock: the value expires a minute after its last write.
func ExampleWithTTL() {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	b, _ := state.NewHeap(state.Config{
		OperatorUID: "sessions",
		KeyGroups:   keygroup.Range{Start: 0, End: keygroup.DefaultMaxParallelism},
		Clock:       func() time.Time { return now },
	})
	defer b.Close()
	last, _ := state.NewValue[string](b, "last-page", state.WithTTL(time.Minute, state.OnWrite))

	b.SetCurrentKey(0, []byte("user-1"))
	_ = last.Update("/home")
	now = now.Add(30 * time.Second)
	page, ok, _ := last.Get()
	fmt.Println(page, ok)
	now = now.Add(31 * time.Second)
	page, ok, _ = last.Get()
	fmt.Printf("%q %v\n", page, ok)
	// Output:
	// /home true
	// "" false
}

// Snapshot a 1-way operator and restore it into the first of 2 subtasks: only
// the key groups of that subtask come back.
func ExampleBackend_Snapshot() {
	const maxPar = keygroup.DefaultMaxParallelism
	cfg := state.Config{OperatorUID: "totals", KeyGroups: keygroup.RangeFor(0, 1, maxPar)}
	b, _ := state.NewHeap(cfg)
	total, _ := state.NewReducing(b, "total", func(a, x int) int { return a + x })
	for _, k := range []string{"a", "b", "c", "d"} {
		b.SetCurrentKey(keygroup.OfString(k, maxPar), []byte(k))
		_ = total.Add(10)
		_ = total.Add(5)
	}
	snap, _ := b.Snapshot(1, state.SnapshotOptions{})
	var file bytes.Buffer
	_, _ = snap.Write(context.Background(), &file) // may run on another goroutine
	_ = b.Close()

	cfg.KeyGroups = keygroup.RangeFor(0, 2, maxPar)
	r, _ := state.NewHeap(cfg)
	defer r.Close()
	if err := r.Restore(context.Background(), state.Chain{&file}); err != nil {
		fmt.Println(err)
		return
	}
	total, _ = state.NewReducing(r, "total", func(a, x int) int { return a + x })
	for _, k := range []string{"a", "b", "c", "d"} {
		kg := keygroup.OfString(k, maxPar)
		if keygroup.Subtask(kg, 2, maxPar) != 0 {
			continue
		}
		r.SetCurrentKey(kg, []byte(k))
		v, _, _ := total.Get()
		fmt.Println(k, v)
	}
	// Output: c 15
}

// A Map state holds several entries per key.
func ExampleNewMap() {
	b, _ := state.NewHeap(state.Config{OperatorUID: "carts", KeyGroups: keygroup.Range{Start: 0, End: 128}})
	defer b.Close()
	cart, _ := state.NewMap[string, int](b, "cart")
	b.SetCurrentKey(3, []byte("user-7"))
	_ = cart.Put("apple", 2)
	_ = cart.Put("pear", 1)
	_ = cart.Remove("pear")
	n, _, _ := cart.Get("apple")
	size, _ := cart.Len()
	fmt.Println(n, size)
	// Output: 2 1
}
