package operators_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

type click struct {
	User string
	Page string
}

// sessionize counts clicks and distinct pages per user in keyed state, and
// emits a summary line each time a user reaches a multiple of 10 clicks.
type sessionize struct {
	clicks *state.Value[int]
	pages  *state.Map[string, bool]
}

func (s *sessionize) Open(_ context.Context, oc *dataflow.OperatorContext) (err error) {
	if s.clicks, err = state.NewValue[int](oc.State(), "clicks"); err != nil {
		return err
	}
	s.pages, err = state.NewMap[string, bool](oc.State(), "pages")
	return err
}

func (s *sessionize) ProcessElement(ctx *operators.KeyedContext[string, string], c click) error {
	n, _, err := s.clicks.Get()
	if err != nil {
		return err
	}
	n++
	if err := s.clicks.Update(n); err != nil {
		return err
	}
	if err := s.pages.Put(c.Page, true); err != nil {
		return err
	}
	if n%10 == 0 {
		pages, err := s.pages.Len()
		if err != nil {
			return err
		}
		ctx.Emit(fmt.Sprintf("%s: %d clicks on %d pages", ctx.Key(), n, pages))
	}
	return nil
}

func clicks(n int) []click {
	out := make([]click, n)
	for i := range out {
		out[i] = click{User: fmt.Sprintf("user-%d", i%7), Page: fmt.Sprintf("page-%d", i*i%13)}
	}
	return out
}

func runSessions(t *testing.T, p int, backend func(state.Config) (state.Backend, error)) []string {
	t.Helper()
	job := dataflow.NewJob("sessions", dataflow.Config{Parallelism: p, StateBackend: backend})
	src := memory.FromSlice(job, "clicks", clicks(700), dataflow.Parallelism(1))
	out := operators.KeyedProcess(dataflow.KeyBy(src, func(c click) string { return c.User }), "sessionize",
		func() operators.KeyedProcessFunction[string, click, string] { return &sessionize{} })
	col := memory.Collect(out, "out")
	require.NoError(t, job.Run(context.Background()))
	lines := col.Values()
	sort.Strings(lines)
	return lines
}

func TestKeyedProcessStateIsPerKeyAtAnyParallelism(t *testing.T) {
	want := runSessions(t, 1, nil)
	require.Len(t, want, 70)
	require.Contains(t, want, "user-0: 100 clicks on 7 pages")
	for _, p := range []int{2, 4} {
		require.Equal(t, want, runSessions(t, p, nil), "parallelism %d", p)
	}
}

func TestBadgerStateBackendGivesTheSameResults(t *testing.T) {
	dir := t.TempDir()
	badger := func(cfg state.Config) (state.Backend, error) {
		return state.NewBadger(cfg, state.BadgerConfig{
			Dir:          filepath.Join(dir, fmt.Sprintf("%s-%d", cfg.OperatorUID, cfg.KeyGroups.Start)),
			CacheEntries: 3, // smaller than the 7 users: entries spill to Badger
		})
	}
	require.Equal(t, runSessions(t, 1, nil), runSessions(t, 2, badger))
}

func TestReduceAndAggregateKeepStateInTheBackend(t *testing.T) {
	var mu sync.Mutex
	var declared []string
	spy := func(cfg state.Config) (state.Backend, error) {
		mu.Lock() // subtasks open concurrently
		defer mu.Unlock()
		declared = append(declared, cfg.OperatorUID)
		return state.NewHeap(cfg)
	}
	job := dataflow.NewJob("spy", dataflow.Config{StateBackend: spy, Parallelism: 2})
	src := memory.FromSlice(job, "src", []int{1, 2, 3})
	ks := dataflow.KeyBy(src, func(v int) int { return v % 2 })
	memory.Discard(operators.Reduce(ks, "sum", func(a, b int) int { return a + b }), "s1")
	memory.Discard(operators.Aggregate(ks, "count", operators.Count[int]()), "s2")
	require.NoError(t, job.Run(context.Background()))
	sort.Strings(declared)
	require.Equal(t, []string{"count", "count", "sum", "sum"}, declared, "one backend per keyed operator subtask")
}

func TestStateMisuseFailsClearly(t *testing.T) {
	t.Run("state outside a keyed operator", func(t *testing.T) {
		job := dataflow.NewJob("not-keyed")
		out := operators.RichProcess(memory.FromSlice(job, "src", []int{1}), "plain", func() operators.ProcessFunction[int, int] {
			return &declares{}
		})
		memory.Discard(out, "sink")
		err := job.Run(context.Background())
		require.ErrorIs(t, err, state.ErrNoCurrentKey)
		require.ErrorContains(t, err, `operator "plain" (subtask 1/1)`)
	})
	t.Run("one name two types", func(t *testing.T) {
		job := dataflow.NewJob("mismatch")
		out := operators.KeyedProcess(dataflow.KeyBy(memory.FromSlice(job, "src", []int{1}), func(v int) int { return v }), "twice",
			func() operators.KeyedProcessFunction[int, int, int] { return &declaresTwice{} })
		memory.Discard(out, "sink")
		err := job.Run(context.Background())
		require.ErrorIs(t, err, state.ErrStateMismatch)
		require.ErrorContains(t, err, `operator "twice" (subtask 1/1): open:`)
	})
	t.Run("backend that cannot open", func(t *testing.T) {
		broken := func(cfg state.Config) (state.Backend, error) {
			return nil, fmt.Errorf("disk for %s is gone", cfg.OperatorUID)
		}
		job := dataflow.NewJob("broken", dataflow.Config{StateBackend: broken})
		memory.Discard(operators.Aggregate(dataflow.KeyBy(memory.FromSlice(job, "src", []int{1}), func(v int) int { return v }), "count", operators.Count[int]()), "sink")
		require.ErrorContains(t, job.Run(context.Background()), `operator "count" (subtask 1/1): open: state backend: disk for count is gone`)
	})
}

type declares struct{}

func (declares) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	_, err := state.NewValue[int](oc.State(), "n")
	return err
}
func (declares) ProcessElement(*operators.ProcessContext[int], int) error { return nil }

type declaresTwice struct{}

func (declaresTwice) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	if _, err := state.NewValue[int](oc.State(), "n"); err != nil {
		return err
	}
	_, err := state.NewValue[string](oc.State(), "n")
	return err
}
func (declaresTwice) ProcessElement(*operators.KeyedContext[int, int], int) error { return nil }
