package window_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

func windowsOf(s *window.MergingSet) []window.Window {
	var ws []window.Window
	for _, se := range s.Sessions() {
		ws = append(ws, se.Window)
	}
	return ws
}

func TestMergingSet(t *testing.T) {
	type step struct {
		add  window.Window
		want window.Merge
		// sessions after the step
		after []window.Window
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"in order, one session growing", []step{
			{w(0, 10), window.Merge{Window: w(0, 10), State: w(0, 10), New: true}, []window.Window{w(0, 10)}},
			{w(5, 15), window.Merge{Window: w(0, 15), State: w(0, 10), Replaced: []window.Window{w(0, 10)}}, []window.Window{w(0, 15)}},
			{w(15, 25), window.Merge{Window: w(0, 25), State: w(0, 10), Replaced: []window.Window{w(0, 15)}}, []window.Window{w(0, 25)}}, // touching merges
			{w(26, 36), window.Merge{Window: w(26, 36), State: w(26, 36), New: true}, []window.Window{w(0, 25), w(26, 36)}},
		}},
		{"out of order, within a session", []step{
			{w(10, 20), window.Merge{Window: w(10, 20), State: w(10, 20), New: true}, []window.Window{w(10, 20)}},
			{w(12, 20), window.Merge{Window: w(10, 20), State: w(10, 20)}, []window.Window{w(10, 20)}},
			{w(5, 15), window.Merge{Window: w(5, 20), State: w(10, 20), Replaced: []window.Window{w(10, 20)}}, []window.Window{w(5, 20)}},
			{w(-30, -20), window.Merge{Window: w(-30, -20), State: w(-30, -20), New: true}, []window.Window{w(-30, -20), w(5, 20)}},
		}},
		{"duplicates change nothing", []step{
			{w(0, 10), window.Merge{Window: w(0, 10), State: w(0, 10), New: true}, []window.Window{w(0, 10)}},
			{w(0, 10), window.Merge{Window: w(0, 10), State: w(0, 10)}, []window.Window{w(0, 10)}},
			{w(3, 13), window.Merge{Window: w(0, 13), State: w(0, 10), Replaced: []window.Window{w(0, 10)}}, []window.Window{w(0, 13)}},
			{w(3, 13), window.Merge{Window: w(0, 13), State: w(0, 10)}, []window.Window{w(0, 13)}},
		}},
		{"late record bridges two sessions", []step{
			{w(0, 10), window.Merge{Window: w(0, 10), State: w(0, 10), New: true}, []window.Window{w(0, 10)}},
			{w(30, 40), window.Merge{Window: w(30, 40), State: w(30, 40), New: true}, []window.Window{w(0, 10), w(30, 40)}},
			{w(20, 30), window.Merge{Window: w(20, 40), State: w(30, 40), Replaced: []window.Window{w(30, 40)}}, []window.Window{w(0, 10), w(20, 40)}},
			{w(8, 18), window.Merge{Window: w(0, 18), State: w(0, 10), Replaced: []window.Window{w(0, 10)}}, []window.Window{w(0, 18), w(20, 40)}},
			{w(15, 25), window.Merge{Window: w(0, 40), State: w(0, 10), Replaced: []window.Window{w(0, 18), w(20, 40)}, MergedState: []window.Window{w(30, 40)}}, []window.Window{w(0, 40)}},
		}},
		{"one record bridges three sessions, leaving the others", []step{
			{w(-50, -45), window.Merge{Window: w(-50, -45), State: w(-50, -45), New: true}, []window.Window{w(-50, -45)}},
			{w(0, 5), window.Merge{Window: w(0, 5), State: w(0, 5), New: true}, []window.Window{w(-50, -45), w(0, 5)}},
			{w(20, 25), window.Merge{Window: w(20, 25), State: w(20, 25), New: true}, []window.Window{w(-50, -45), w(0, 5), w(20, 25)}},
			{w(10, 15), window.Merge{Window: w(10, 15), State: w(10, 15), New: true}, []window.Window{w(-50, -45), w(0, 5), w(10, 15), w(20, 25)}},
			{w(100, 105), window.Merge{Window: w(100, 105), State: w(100, 105), New: true}, []window.Window{w(-50, -45), w(0, 5), w(10, 15), w(20, 25), w(100, 105)}},
			{w(4, 21), window.Merge{Window: w(0, 25), State: w(0, 5), Replaced: []window.Window{w(0, 5), w(10, 15), w(20, 25)}, MergedState: []window.Window{w(10, 15), w(20, 25)}},
				[]window.Window{w(-50, -45), w(0, 25), w(100, 105)}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := window.NewMergingSet(nil)
			require.NoError(t, err)
			for i, st := range c.steps {
				got := s.Add(st.add)
				require.Equal(t, st.want, got, "step %d: add %v", i, st.add)
				require.Equal(t, st.after, windowsOf(s), "step %d", i)
				require.Equal(t, len(st.after), s.Len())
				state, ok := s.StateWindow(got.Window)
				require.True(t, ok)
				require.Equal(t, got.State, state)
			}
		})
	}
}

func TestMergingSetRemove(t *testing.T) {
	s, _ := window.NewMergingSet(nil)
	s.Add(w(0, 10))
	s.Add(w(5, 15))
	s.Add(w(20, 30))
	_, ok := s.Remove(w(0, 10)) // no longer a session window
	require.False(t, ok)
	state, ok := s.Remove(w(0, 15))
	require.True(t, ok)
	require.Equal(t, w(0, 10), state)
	require.Equal(t, []window.Window{w(20, 30)}, windowsOf(s))
	_, ok = s.StateWindow(w(0, 15))
	require.False(t, ok)
	// The removed state window's name is free again.
	require.Equal(t, window.Merge{Window: w(0, 10), State: w(0, 10), New: true}, s.Add(w(0, 10)))
	s.Remove(w(0, 10))
	s.Remove(w(20, 30))
	require.Nil(t, s.Sessions())
	require.Zero(t, s.Len())
}

func TestMergingSetSavedForm(t *testing.T) {
	s, _ := window.NewMergingSet(nil)
	for _, win := range []window.Window{w(0, 10), w(30, 40), w(5, 15), w(100, 110)} {
		s.Add(win)
	}
	saved := s.Sessions()
	require.Equal(t, []window.SessionWindow{
		{Window: w(0, 15), State: w(0, 10)},
		{Window: w(30, 40), State: w(30, 40)},
		{Window: w(100, 110), State: w(100, 110)},
	}, saved)

	// The saved form goes through the state codec unchanged.
	codec := state.Msgpack[[]window.SessionWindow]()
	b, err := codec.Append(nil, saved)
	require.NoError(t, err)
	back, err := codec.Decode(b)
	require.NoError(t, err)
	require.Equal(t, saved, back)
	_, err = state.NewValue[[]window.SessionWindow](newBackend(t), "sessions")
	require.NoError(t, err)

	// A restored set behaves like the original.
	r, err := window.NewMergingSet(back)
	require.NoError(t, err)
	require.Equal(t, s.Add(w(14, 31)), r.Add(w(14, 31)))
	require.Equal(t, s.Sessions(), r.Sessions())

	// Sessions is a copy: changing it does not change the set.
	saved = r.Sessions()
	saved[0].Window = w(-1, 0)
	require.NotEqual(t, saved, r.Sessions())

	// Reset reuses a set for another key.
	require.NoError(t, r.Reset(nil))
	require.Zero(t, r.Len())
	require.NoError(t, r.Reset(back))
	require.Equal(t, back, r.Sessions())
}

func TestMergingSetRejectsBadSavedForm(t *testing.T) {
	for _, c := range []struct {
		saved []window.SessionWindow
		msg   string
	}{
		{[]window.SessionWindow{{Window: w(5, 5), State: w(5, 5)}}, "empty window"},
		{[]window.SessionWindow{{Window: w(0, 10), State: w(5, 15)}}, "state window outside the window"},
		{[]window.SessionWindow{{Window: w(0, 10), State: w(0, 10)}, {Window: w(10, 20), State: w(10, 20)}}, "intersects or precedes the previous session"},
		{[]window.SessionWindow{{Window: w(20, 30), State: w(20, 30)}, {Window: w(0, 10), State: w(0, 10)}}, "intersects or precedes the previous session"},
	} {
		_, err := window.NewMergingSet(c.saved)
		require.ErrorIs(t, err, window.ErrInvalidSessions)
		require.ErrorContains(t, err, c.msg)
		s, _ := window.NewMergingSet([]window.SessionWindow{{Window: w(0, 1), State: w(0, 1)}})
		require.Error(t, s.Reset(c.saved))
		require.Zero(t, s.Len(), "a failed Reset leaves the set empty")
	}
}

// The operator's protocol, simulated: each record's id is kept under its
// session's state window, and state is merged as Merge says. Whatever the
// order of the records, every session ends up with exactly the records whose
// windows it covers, and the final sessions are the same.
func TestMergingSetStateAccounting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const gap = 10
	for round := range 200 {
		n := 1 + rng.IntN(40)
		ts := make([]dataflow.Timestamp, n)
		for i := range ts {
			ts[i] = dataflow.Timestamp(rng.IntN(300) - 100)
		}
		var first []window.Window
		for perm := range 3 {
			order := rng.Perm(n)
			s, _ := window.NewMergingSet(nil)
			contents := map[window.Window][]int{} // state window -> record indexes
			for _, i := range order {
				m := s.Add(w(ts[i], ts[i]+gap))
				for _, from := range m.MergedState {
					require.Contains(t, contents, from)
					contents[m.State] = append(contents[m.State], contents[from]...)
					delete(contents, from)
				}
				contents[m.State] = append(contents[m.State], i)
				require.True(t, m.Window.Contains(ts[i]))
			}
			// Sessions are sorted and neither overlap nor touch: the saved
			// form passes Reset's checks.
			require.NoError(t, s.Reset(s.Sessions()))
			got := windowsOf(s)
			if perm == 0 {
				first = got
			} else {
				require.Equal(t, first, got, "round %d: sessions depend on the order", round)
			}
			require.Len(t, contents, s.Len())
			for _, se := range s.Sessions() {
				var want []int
				for i, x := range ts {
					if se.Window.Contains(x) {
						want = append(want, i)
					}
				}
				have := slices.Clone(contents[se.State])
				slices.Sort(have)
				require.Equal(t, want, have, "round %d: session %v", round, se.Window)
				// The session is exactly the cover of its records' windows.
				require.Equal(t, slices.Min(pick(ts, want)), se.Window.Start)
				require.Equal(t, slices.Max(pick(ts, want))+gap, se.Window.End)
			}
		}
	}
}

func pick(ts []dataflow.Timestamp, idx []int) []dataflow.Timestamp {
	out := make([]dataflow.Timestamp, len(idx))
	for k, i := range idx {
		out[k] = ts[i]
	}
	return out
}

func newBackend(t *testing.T) state.Backend {
	t.Helper()
	b, err := state.NewHeap(state.Config{OperatorUID: "window-test", KeyGroups: keygroup.Range{Start: 0, End: keygroup.DefaultMaxParallelism}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}
