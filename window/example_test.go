package window_test

import (
	"fmt"
	"time"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/window"
)

func at(hh, mm, ss int) dataflow.Timestamp {
	return dataflow.TimestampOf(time.Date(2026, 11, 22, hh, mm, ss, 0, time.UTC))
}

// A record at 12:00:42 falls into the one-minute window [12:00, 12:01).
func ExampleTumbling() {
	a := window.Tumbling(time.Minute)
	ws, err := a.AssignTo(nil, at(12, 0, 42))
	fmt.Println(ws, err)
	// A timestamp of 0 is an ordinary time, the start of 1970.
	ws, _ = a.AssignTo(ws[:0], 0)
	fmt.Println(ws)
	// A record without a timestamp cannot be windowed in event time.
	_, err = a.AssignTo(ws[:0], dataflow.NoTimestamp)
	fmt.Println(err)
	// Output:
	// [[2026-11-22T12:00:00Z, 2026-11-22T12:01:00Z)] <nil>
	// [[1970-01-01T00:00:00Z, 1970-01-01T00:01:00Z)]
	// window: record has no timestamp
}

// Calendar days in UTC+8: Flink's negative offset and the equivalent positive
// one give the same windows.
func ExampleTumblingAssigner_WithOffset() {
	for _, off := range []time.Duration{-8 * time.Hour, 16 * time.Hour} {
		ws, _ := window.Tumbling(24*time.Hour).WithOffset(off).AssignTo(nil, at(20, 30, 0))
		fmt.Println(ws[0])
	}
	// Output:
	// [2026-11-22T16:00:00Z, 2026-11-23T16:00:00Z)
	// [2026-11-22T16:00:00Z, 2026-11-23T16:00:00Z)
}

// With a 10 s size and a 5 s slide, each record is in two windows.
func ExampleSliding() {
	ws, _ := window.Sliding(10*time.Second, 5*time.Second).AssignTo(nil, at(12, 0, 7))
	for _, w := range ws {
		fmt.Println(w)
	}
	// Output:
	// [2026-11-22T12:00:05Z, 2026-11-22T12:00:15Z)
	// [2026-11-22T12:00:00Z, 2026-11-22T12:00:10Z)
}

// Invalid arguments are reported at build time.
func ExampleSlidingAssigner_Validate() {
	fmt.Println(window.Sliding(time.Second, time.Minute).Validate())
	fmt.Println(window.Session(0).Validate())
	fmt.Println(window.ValidateLateness(-time.Second))
	// Output:
	// window: invalid window configuration: sliding window slide 1m0s is larger than its size 1s
	// window: invalid window configuration: session gap 0s must be positive
	// window: invalid window configuration: allowed lateness -1s is negative
}

// Sessions with a one-minute gap: a late record bridges two sessions of a
// key, and the operator merges the state of the second into the first.
func ExampleMergingSet() {
	a := window.Session(time.Minute)
	set, _ := window.NewMergingSet(nil)
	var buf []window.Window
	for _, ts := range []dataflow.Timestamp{at(12, 0, 0), at(12, 1, 30), at(12, 0, 50)} {
		buf, _ = a.AssignTo(buf[:0], ts)
		m := set.Add(buf[0])
		fmt.Printf("new=%v window=%v replaced=%d merge state of %v\n", m.New, m.Window, len(m.Replaced), m.MergedState)
	}
	fmt.Println(set.Sessions())
	// Output:
	// new=true window=[2026-11-22T12:00:00Z, 2026-11-22T12:01:00Z) replaced=0 merge state of []
	// new=true window=[2026-11-22T12:01:30Z, 2026-11-22T12:02:30Z) replaced=0 merge state of []
	// new=false window=[2026-11-22T12:00:00Z, 2026-11-22T12:02:30Z) replaced=2 merge state of [[2026-11-22T12:01:30Z, 2026-11-22T12:02:30Z)]
	// [{[2026-11-22T12:00:00Z, 2026-11-22T12:02:30Z) [2026-11-22T12:00:00Z, 2026-11-22T12:01:00Z)}]
}

// The two most viewed videos, from two partial accumulators merged, as a
// window does when sessions merge.
func ExampleTopN() {
	type view struct{ Video string }
	top := window.TopN(2, func(v view) string { return v.Video })
	a, b := top.CreateAccumulator(), top.CreateAccumulator()
	for _, v := range []string{"cats", "dogs", "cats"} {
		a = top.Add(a, view{v})
	}
	for _, v := range []string{"owls", "dogs", "dogs"} {
		b = top.Add(b, view{v})
	}
	fmt.Println(top.Result(top.Merge(a, b)))
	// Output: [{dogs 3} {cats 2}]
}
