package window

import (
	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
)

// aggContents keeps one accumulator per window (incremental aggregation).
type aggContents[K comparable, In, Acc, Out any] struct {
	agg  operators.AggregateFunction[In, Acc, Out]
	accs *state.Map[Window, Acc]
}

func (c *aggContents[K, In, Acc, Out]) open(b state.Backend) (err error) {
	c.accs, err = state.NewMap[Window, Acc](b, "windows")
	return err
}

func (c *aggContents[K, In, Acc, Out]) add(w Window, v In) (bool, error) {
	acc, ok, err := c.accs.Get(w)
	if err != nil {
		return false, err
	}
	if !ok {
		acc = c.agg.CreateAccumulator()
	}
	return !ok, c.accs.Put(w, c.agg.Add(acc, v))
}

func (c *aggContents[K, In, Acc, Out]) fire(key K, w, stateWin Window, out dataflow.Output[Result[K, Out]]) error {
	acc, ok, err := c.accs.Get(stateWin)
	if err != nil || !ok {
		return err // a purged window that received nothing since: no result
	}
	out.Collect(Result[K, Out]{Key: key, Window: w, Value: c.agg.Result(acc)}, w.MaxTimestamp())
	return nil
}

func (c *aggContents[K, In, Acc, Out]) merge(into Window, from []Window) error {
	for _, f := range from {
		acc, ok, err := c.accs.Get(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if cur, ok, err := c.accs.Get(into); err != nil {
			return err
		} else if ok {
			acc = c.agg.Merge(cur, acc)
		}
		if err := c.accs.Put(into, acc); err != nil {
			return err
		}
		if err := c.accs.Remove(f); err != nil {
			return err
		}
	}
	return nil
}

func (c *aggContents[K, In, Acc, Out]) clear(w Window) error { return c.accs.Remove(w) }

func (c *aggContents[K, In, Acc, Out]) windows(fn func(Window) bool) error {
	return c.accs.Range(func(w Window, _ Acc) bool { return fn(w) })
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
