package window

import (
	"fmt"
	"slices"
	"sort"
)

// SessionWindow is one session of a MergingSet: its current window and the window
// that names its state. MergingSet.Sessions returns a slice of them, the form
// to keep in keyed state (plain data, encodable by the state codec).
type SessionWindow struct {
	// Window is the session's current extent.
	Window Window
	// State is the window under which the operator keeps the session's state
	// (accumulator, trigger state). It is the window of one of the records
	// that formed the session and stays the same while the session grows, so
	// extending a session does not move its state. It lies within Window.
	State Window
}

// Merge reports what MergingSet.Add did with a window.
type Merge struct {
	// Window is the session window the added window belongs to now: the
	// window to add the record to, fire and register timers for.
	Window Window
	// State is the state window of Window (see SessionWindow.State).
	State Window
	// New is true when the added window intersected no session and started
	// its own: Window and State are the added window.
	New bool
	// Replaced lists, in start order, the session windows that were merged
	// into Window and no longer exist: the operator deletes their timers and
	// merges their trigger state. Empty when the added window started a new
	// session or lay within an existing one.
	Replaced []Window
	// MergedState lists, in start order, the state windows of the Replaced
	// sessions other than State: the operator merges the state under each
	// into the state under State (with AggregateFunction.Merge) and clears
	// it. Empty unless the added window bridged two or more sessions.
	MergedState []Window
}

// MergingSet keeps the session windows of one key, as Flink's
// MergingWindowSet does: adding a window merges it with every session it
// intersects (Window.Intersects: overlapping or touching), including two
// sessions that a late record bridges. Sessions never intersect each other.
//
// Results are deterministic: the resulting windows depend only on the set of
// windows added, not their order, and when sessions merge the one with the
// earliest start keeps its state window.
//
// The operator keeps one MergingSet per subtask and loads the current key's
// sessions into it with Reset, or makes one per key with NewMergingSet; it is
// not safe for concurrent use. Save the sessions with Sessions after a change.
type MergingSet struct {
	sessions         []SessionWindow // sorted by Window.Start, pairwise not intersecting
	replaced, merged []Window        // scratch for Merge, reused by the next Add
}

// NewMergingSet returns a set holding saved (a copy of it), as returned by
// Sessions. nil or empty saved gives an empty set.
func NewMergingSet(saved []SessionWindow) (*MergingSet, error) {
	s := &MergingSet{}
	if err := s.Reset(saved); err != nil {
		return nil, err
	}
	return s, nil
}

// Reset replaces the set's sessions with a copy of saved, reusing the set's
// memory. It fails, leaving the set empty, if saved is not what Sessions
// returns: sessions in start order, each with a non-empty window that holds
// its state window, and no two intersecting.
func (s *MergingSet) Reset(saved []SessionWindow) error {
	s.sessions = append(s.sessions[:0], saved...)
	for i, se := range saved {
		var bad string
		switch {
		case se.Window.Start >= se.Window.End:
			bad = "empty window"
		case se.State.Start < se.Window.Start || se.State.End > se.Window.End:
			bad = "state window outside the window"
		case i > 0 && saved[i-1].Window.End >= se.Window.Start:
			bad = "intersects or precedes the previous session"
		}
		if bad != "" {
			s.sessions = s.sessions[:0]
			return fmt.Errorf("%w: session %d (window %v, state %v): %s", ErrInvalidSessions, i, se.Window, se.State, bad)
		}
	}
	return nil
}

// Sessions returns a copy of the sessions in start order, the form to save;
// nil when the set is empty (the operator can then clear the key's state).
func (s *MergingSet) Sessions() []SessionWindow {
	if len(s.sessions) == 0 {
		return nil
	}
	return slices.Clone(s.sessions)
}

// Len is the number of sessions.
func (s *MergingSet) Len() int { return len(s.sessions) }

// find returns the index of the session whose window is w.
func (s *MergingSet) find(w Window) (int, bool) {
	i := sort.Search(len(s.sessions), func(i int) bool { return s.sessions[i].Window.Start >= w.Start })
	return i, i < len(s.sessions) && s.sessions[i].Window == w
}

// StateWindow returns the state window of the session whose window is w.
func (s *MergingSet) StateWindow(w Window) (Window, bool) {
	i, ok := s.find(w)
	if !ok {
		return Window{}, false
	}
	return s.sessions[i].State, true
}

// Remove drops the session whose window is w, when it has fired for the last
// time (or was late on arrival), and returns its state window: the operator
// clears the state under it, so that a later session can reuse the name.
func (s *MergingSet) Remove(w Window) (state Window, ok bool) {
	i, ok := s.find(w)
	if !ok {
		return Window{}, false
	}
	state = s.sessions[i].State
	s.sessions = slices.Delete(s.sessions, i, i+1)
	return state, true
}

// Add adds w (a window from SessionAssigner.AssignTo) and merges it with
// every session it intersects. The slices in the returned Merge belong to
// the set and are valid until the next call to Add.
func (s *MergingSet) Add(w Window) Merge {
	ss := s.sessions
	// Sessions are disjoint and sorted by start, so their ends are sorted too:
	// the sessions intersecting w are the run [i, j).
	i := sort.Search(len(ss), func(i int) bool { return ss[i].Window.End >= w.Start })
	j := i
	for j < len(ss) && ss[j].Window.Start <= w.End {
		j++
	}
	switch {
	case i == j:
		s.sessions = slices.Insert(ss, i, SessionWindow{Window: w, State: w})
		return Merge{Window: w, State: w, New: true}
	case j == i+1 && ss[i].Window.Cover(w) == ss[i].Window:
		return Merge{Window: ss[i].Window, State: ss[i].State}
	}
	cover := w
	s.replaced, s.merged = s.replaced[:0], s.merged[:0]
	for k := i; k < j; k++ {
		cover = cover.Cover(ss[k].Window)
		s.replaced = append(s.replaced, ss[k].Window)
		if k > i {
			s.merged = append(s.merged, ss[k].State)
		}
	}
	m := Merge{Window: cover, State: ss[i].State, Replaced: s.replaced}
	if len(s.merged) > 0 {
		m.MergedState = s.merged
	}
	ss[i] = SessionWindow{Window: cover, State: ss[i].State}
	s.sessions = slices.Delete(ss, i+1, j)
	return m
}
