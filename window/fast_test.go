package window_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

// generalTrigger is the event-time trigger under another type, so that
// Aggregate runs its general operator (trigger calls per record, state per
// window) instead of the one specialized for the default trigger.
type generalTrigger struct{ window.Trigger }

type fired struct {
	Out  string
	At   dataflow.Timestamp
	Late []click
}

// windowScript runs a random script of records (out of order, some late) and
// watermarks through a keyed window aggregation, and returns what came out
// after each step: results with their event times, and late records.
func windowScript[Acc, Out any](t *testing.T, cfg dataflow.Config, seed uint64, assigner window.Assigner, agg operators.AggregateFunction[click, Acc, Out], opts ...window.Option) []fired {
	t.Helper()
	late := dataflow.NewOutputTag[click]("late")
	var lateOut *memory.Collector[click]
	h, err := dataflow.NewTestHarness(func(in dataflow.Stream[click]) dataflow.Stream[string] {
		res := window.Aggregate(dataflow.KeyBy(in, func(c click) string { return c.User }), "agg", assigner, agg,
			append(opts, window.LateOutput(late))...)
		lateOut = memory.Collect(dataflow.SideOutput(res, late), "late")
		return operators.Map(res, "fmt", func(r window.Result[string, Out]) string {
			return fmt.Sprintf("%s %v %v", r.Key, fmtWin(r.Window), r.Value)
		})
	}, cfg)
	require.NoError(t, err)
	defer h.Close()
	r := rand.New(rand.NewPCG(seed, 1))
	var got []fired
	lateSeen := 0
	step := func() {
		f := fired{}
		for _, o := range h.TakeOutput() {
			f.Out += o.Value + ";"
			f.At += o.Timestamp
		}
		f.Late = append(f.Late, lateOut.Values()[lateSeen:]...)
		lateSeen = lateOut.Len()
		got = append(got, f)
	}
	// A third of the times fall on whole seconds, or a nanosecond before:
	// window boundaries and MaxTimestamps.
	edgy := func(secs float64) time.Time {
		switch r.IntN(6) {
		case 0:
			return atSec(math.Round(secs))
		case 1:
			return atSec(math.Round(secs)).Add(-time.Nanosecond)
		}
		return atSec(secs)
	}
	wm := 0.0
	for i := range 400 {
		switch {
		case r.IntN(8) == 0:
			wm += r.Float64() * 6
			require.NoError(t, h.AdvanceWatermark(edgy(wm)))
		default:
			// Mostly ahead of the watermark, some behind it (late, or
			// within the lateness), some before time 0. Most records are
			// u0's, so that a small key cache hits more than it misses.
			at := wm - 14 + r.Float64()*24
			user := "u0"
			if r.IntN(3) == 0 {
				user = fmt.Sprint("u", r.IntN(5))
			}
			require.NoError(t, h.Add(click{User: user, N: i}, edgy(at)))
		}
		step()
	}
	require.NoError(t, h.Finish())
	step()
	return got
}

// The operator specialized for the default trigger gives exactly what the
// general one gives, record by record, in order: on time, late within the
// allowed lateness (fired again), and late beyond it.
func TestDefaultTriggerMatchesGeneralOperator(t *testing.T) {
	assigners := []window.Assigner{
		window.Tumbling(10 * time.Second),
		window.Tumbling(10 * time.Second).WithOffset(3 * time.Second),
		window.Sliding(10*time.Second, 2*time.Second),
		window.Sliding(10*time.Second, 3*time.Second).WithOffset(time.Second),
		window.Sliding(4*time.Second, 4*time.Second),
	}
	for _, a := range assigners {
		for _, lateness := range []time.Duration{0, 3 * time.Second, 12 * time.Second} {
			for seed := range uint64(3) {
				t.Run(fmt.Sprintf("%v/lateness %v/seed %d", a, lateness, seed), func(t *testing.T) {
					general := window.WithTrigger(generalTrigger{window.EventTimeTrigger()})
					count := operators.Count[click]()
					// An accumulator holding references, changed in place by Add.
					top := window.TopN(2, func(c click) int { return c.N % 3 })
					heap := dataflow.Config{}
					want := windowScript(t, heap, seed, a, count, window.AllowedLateness(lateness), general)
					want2 := windowScript(t, heap, seed, a, top, window.AllowedLateness(lateness), general)
					// With the key cache, with ones so small they are written
					// to keyed state every other key or every key (in front
					// of Badger: in front of the heap, the cache owns its
					// values and has no bound), and without (on Badger, the
					// records of keys without timers read no state).
					for _, cached := range []int{1 << 16, 2, 1, 0} {
						restore := window.SetMaxCachedKeys(cached)
						cfgs := []dataflow.Config{heap}
						if cached <= 2 {
							cfgs = append(cfgs, badgerConfig(t))
						}
						for _, cfg := range cfgs {
							got := windowScript(t, cfg, seed, a, count, window.AllowedLateness(lateness))
							got2 := windowScript(t, cfg, seed, a, top, window.AllowedLateness(lateness))
							if lateness == 0 {
								// With no lateness the operator keeps runs, and
								// fires a window's keys in an order of its own:
								// the buffer's, or that of key groups then
								// encodings, not that of encodings alone.
								require.Equal(t, inKeyOrder(want), inKeyOrder(got), "runs, buffer of %d keys", cached)
								require.Equal(t, inKeyOrder(want2), inKeyOrder(got2), "runs, buffer of %d keys", cached)
								continue
							}
							require.Equal(t, want, got, "cache of %d keys", cached)
							require.Equal(t, want2, got2, "cache of %d keys", cached)
						}
						if lateness == 0 {
							// per-key windows and timers on the heap
							restoreRuns := window.SetHeapRuns(false)
							require.Equal(t, want, windowScript(t, heap, seed, a, count), "cache of %d keys, no runs", cached)
							require.Equal(t, want2, windowScript(t, heap, seed, a, top), "cache of %d keys, no runs", cached)
							restoreRuns()
						}
						restore()
					}
				})
			}
		}
	}
}

// inKeyOrder sorts the results of each step of fs: those of one window
// come out in an order of keys that depends on the layout.
func inKeyOrder(fs []fired) []fired {
	out := make([]fired, len(fs))
	for i, f := range fs {
		parts := strings.Split(strings.TrimSuffix(f.Out, ";"), ";")
		slices.Sort(parts)
		f.Out = strings.Join(parts, ";")
		out[i] = f
	}
	return out
}

// badgerConfig runs keyed state on Badger, each backend in a directory of
// its own under t's, with a cache of 2 entries so that state goes through
// the store.
func badgerConfig(t *testing.T) dataflow.Config {
	dir := t.TempDir()
	var n atomic.Int64
	return dataflow.Config{StateBackend: func(cfg state.Config) (state.Backend, error) {
		return state.NewBadger(cfg, state.BadgerConfig{Dir: filepath.Join(dir, strconv.FormatInt(n.Add(1), 10)), CacheEntries: 2})
	}}
}
