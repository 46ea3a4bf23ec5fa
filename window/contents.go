package window

import (
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

// aggContents keeps one accumulator per window (incremental aggregation), in
// the key's list of windows (see slot).
type aggContents[K comparable, In, Acc, Out any] struct {
	agg  operators.AggregateFunction[In, Acc, Out]
	wins *state.Value[[]slot[Acc]]
}

func (c *aggContents[K, In, Acc, Out]) open(b state.Backend) (err error) {
	c.wins, err = newWindowsState[slot[Acc], Acc](b, plainSlots[Acc]{})
	return err
}

func (c *aggContents[K, In, Acc, Out]) add(w Window, v In) (bool, error) {
	s, _, err := c.wins.Get()
	if err != nil {
		return false, err
	}
	i, ok := findSlot(s, w)
	if ok {
		s[i].acc = c.agg.Add(s[i].acc, v)
	} else {
		s = insertSlot(s, i, slot[Acc]{win: w, acc: c.agg.Add(c.agg.CreateAccumulator(), v)})
	}
	return !ok, c.wins.Update(s)
}

func (c *aggContents[K, In, Acc, Out]) fire(key K, w, stateWin Window, out dataflow.Output[Result[K, Out]]) error {
	s, _, err := c.wins.Get()
	if err != nil {
		return err
	}
	i, ok := findSlot(s, stateWin)
	if !ok {
		return nil // a purged window that received nothing since: no result
	}
	out.Collect(Result[K, Out]{Key: key, Window: w, Value: c.agg.Result(s[i].acc)}, w.MaxTimestamp())
	return nil
}

func (c *aggContents[K, In, Acc, Out]) merge(into Window, from []Window) error {
	s, _, err := c.wins.Get()
	if err != nil {
		return err
	}
	changed := false
	for _, f := range from {
		i, ok := findSlot(s, f)
		if !ok {
			continue
		}
		acc := s[i].acc
		s = removeSlot(s, i)
		if j, ok := findSlot(s, into); ok {
			s[j].acc = c.agg.Merge(s[j].acc, acc)
		} else {
			s = insertSlot(s, j, slot[Acc]{win: into, acc: acc})
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return c.wins.Update(s)
}

func (c *aggContents[K, In, Acc, Out]) clear(w Window) error {
	s, _, err := c.wins.Get()
	if err != nil {
		return err
	}
	i, ok := findSlot(s, w)
	if !ok {
		return nil
	}
	if len(s) == 1 {
		return c.wins.Clear()
	}
	return c.wins.Update(removeSlot(s, i))
}

func (c *aggContents[K, In, Acc, Out]) windows(fn func(Window) bool) error {
	s, _, err := c.wins.Get()
	if err != nil {
		return err
	}
	for _, x := range s {
		if !fn(x.win) {
			break
		}
	}
	return nil
}

// ProcessWindowFunction computes a window's results from all its records, in
// arrival order. It may emit any number of results.
type ProcessWindowFunction[K comparable, In, Out any] func(key K, w Window, records []In, emit func(Out)) error

// listContents keeps every record of a window (full-window processing).
type listContents[K comparable, In, Out any] struct {
	fn      ProcessWindowFunction[K, In, Out]
	records *state.Map[Window, []In]
}

func (c *listContents[K, In, Out]) open(b state.Backend) (err error) {
	c.records, err = state.NewMap[Window, []In](b, "windows")
	return err
}

func (c *listContents[K, In, Out]) add(w Window, v In) (bool, error) {
	rs, ok, err := c.records.Get(w)
	if err != nil {
		return false, err
	}
	// Appending in place is safe for snapshots: a captured slice keeps its
	// length and never sees elements written past it.
	return !ok, c.records.Put(w, append(rs, v))
}

func (c *listContents[K, In, Out]) fire(key K, w, stateWin Window, out dataflow.Output[Result[K, Out]]) error {
	rs, ok, err := c.records.Get(stateWin)
	if err != nil || !ok {
		return err
	}
	return c.fn(key, w, rs, func(v Out) { out.Collect(Result[K, Out]{Key: key, Window: w, Value: v}, w.MaxTimestamp()) })
}

func (c *listContents[K, In, Out]) merge(into Window, from []Window) error {
	for _, f := range from {
		rs, ok, err := c.records.Get(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		cur, _, err := c.records.Get(into)
		if err != nil {
			return err
		}
		merged := make([]In, 0, len(cur)+len(rs))
		merged = append(append(merged, cur...), rs...)
		if err := c.records.Put(into, merged); err != nil {
			return err
		}
		if err := c.records.Remove(f); err != nil {
			return err
		}
	}
	return nil
}

func (c *listContents[K, In, Out]) clear(w Window) error { return c.records.Remove(w) }

func (c *listContents[K, In, Out]) windows(fn func(Window) bool) error {
	return c.records.Range(func(w Window, _ []In) bool { return fn(w) })
}
