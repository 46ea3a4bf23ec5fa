package window

import (
	"context"

	"github.com/sluicedata/sluice/dataflow"
	"github.com/sluicedata/sluice/internal/keyindex"
	"github.com/sluicedata/sluice/operators"
)

// Local-global aggregation. Before a keyed exchange, a local operator
// chained to the window operator's input folds the records of each key and
// pane into a partial accumulator; the window operator, after the exchange,
// merges partials instead of adding records. A pane is a slide-long slice
// of time aligned with the window starts: every window that holds one
// record of a pane holds all of them, so a partial belongs to exactly the
// windows its records do, and the window operator assigns it by its
// timestamp (the latest of its records') as it would a record.
//
// Results are those of adding the records one by one, because:
//   - Merge is exact (operators.ExactMerger), so a window's accumulator does
//     not depend on how its records were grouped into partials;
//   - a partial is sent before the local operator forwards a watermark that
//     reaches the end of the first window holding its pane: the window
//     operator's watermark (the least over its inputs) cannot pass that
//     window before the partial arrives, so it is never late where its
//     records would not be. A record that is late already at the local
//     operator is passed on alone at once, to be judged like any record;
//   - nothing is held across a checkpoint: SnapshotState, which runs before
//     the barrier is forwarded and before the operators after it in the
//     chain are captured, sends every partial, so the local operator has no
//     state and the window operator's state is the same as without it
//     (a savepoint of either form restores into the other);
//   - at end of input the MaxWatermark sends everything.
//
// It is used only where it cannot change what a user sees: the event-time
// trigger over tumbling or sliding windows, no allowed lateness (a late
// record within the lateness fires its window again, once per record), no
// late output (which wants the records), and an exact Merge. It pays when
// keys repeat within a pane between two flushes; it steps aside (passes
// records on one by one, as partials of one record) when its output is
// chained (no exchange to save), and for a while after a flush that folded
// fewer than two records per partial (keys too many to repeat).

// partial is the local operator's output: the accumulator of N records of
// Key in one pane.
type partial[K comparable, Acc any] struct {
	Key K
	Acc Acc
	N   int64
}

// localName is the local operator's name, derived from the window
// operator's: stable, so plans and metrics keep it.
func localName(name string) string { return name + "/local" }

// localEntry is one key's partial of the pane being folded.
type localEntry[K comparable, Acc any] struct {
	partial[K, Acc]
	pane dataflow.Timestamp // the pane's start
	ts   dataflow.Timestamp // the latest record's timestamp
}

const (
	// localMaxKeys bounds the partials held: at that many, all are sent.
	localMaxKeys = 1 << 14
	// localBypass is the number of records passed on one by one after a
	// flush of at least localJudge partials that folded too little.
	localBypass = 1 << 16
	localJudge  = 1 << 10
)

type localAgg[K comparable, In, Acc, Out any] struct {
	dataflow.OperatorBase
	agg           operators.AggregateFunction[In, Acc, Out]
	key           func(In) K
	slide, offset dataflow.Timestamp
	out           dataflow.Output[partial[K, Acc]]

	chained bool // the output is chained: nothing to save
	wm      dataflow.Timestamp
	idx     keyindex.Index[K]
	ents    []localEntry[K, Acc]
	// due is the least watermark at which a held partial must be sent: the
	// MaxTimestamp of the first window holding its pane.
	due    dataflow.Timestamp
	folded int64 // records folded into the held partials
	bypass int64 // records still to pass on one by one
}

func newLocalAgg[K comparable, In, Acc, Out any](agg operators.AggregateFunction[In, Acc, Out], key func(In) K, slide, offset dataflow.Timestamp, out dataflow.Output[partial[K, Acc]]) *localAgg[K, In, Acc, Out] {
	return &localAgg[K, In, Acc, Out]{agg: agg, key: key, slide: slide, offset: offset, out: out,
		wm: dataflow.MinWatermark, due: dataflow.MaxWatermark}
}

func (o *localAgg[K, In, Acc, Out]) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	o.chained = oc.ChainedOutput()
	return nil
}

func (o *localAgg[K, In, Acc, Out]) Process(v In, ts dataflow.Timestamp) error {
	if o.chained || o.bypass > 0 || checkTimestamp(ts) != nil {
		// Invalid timestamps go on too: the window operator reports them.
		o.bypass = max(o.bypass-1, 0)
		o.passOn(v, ts)
		return nil
	}
	pane := ts - distance(ts, o.offset, o.slide)
	due := pane + o.slide - 1
	if pane > dataflow.MaxWatermark-o.slide {
		due = dataflow.MaxWatermark
	}
	if due <= o.wm {
		o.passOn(v, ts) // late here: judged alone, like any record
		return nil
	}
	k := o.key(v)
	if i, ok := o.idx.Get(k); ok {
		e := &o.ents[i]
		if e.pane == pane {
			e.Acc = o.agg.Add(e.Acc, v)
			e.N++
			e.ts = max(e.ts, ts)
			o.folded++
			return nil
		}
		// The key moved to another pane: send the old partial, start anew.
		o.out.Collect(e.partial, e.ts)
		*e = localEntry[K, Acc]{partial: partial[K, Acc]{Key: k, Acc: o.agg.Add(o.agg.CreateAccumulator(), v), N: 1}, pane: pane, ts: ts}
		o.folded++
		o.due = min(o.due, due)
		return nil
	}
	if len(o.ents) >= localMaxKeys {
		o.flush()
		if o.bypass > 0 {
			o.passOn(v, ts)
			return nil
		}
	}
	o.idx.Put(k, int32(len(o.ents)))
	o.ents = append(o.ents, localEntry[K, Acc]{partial: partial[K, Acc]{Key: k, Acc: o.agg.Add(o.agg.CreateAccumulator(), v), N: 1}, pane: pane, ts: ts})
	o.folded++
	o.due = min(o.due, due)
	return nil
}

// passOn sends v alone, as a partial of one record.
func (o *localAgg[K, In, Acc, Out]) passOn(v In, ts dataflow.Timestamp) {
	o.out.Collect(partial[K, Acc]{Key: o.key(v), Acc: o.agg.Add(o.agg.CreateAccumulator(), v), N: 1}, ts)
}

// flush sends every held partial. If they were many and folded fewer than
// two records each, the operator passes the next localBypass records on one
// by one (small flushes, at checkpoints and watermarks, say nothing).
func (o *localAgg[K, In, Acc, Out]) flush() {
	if len(o.ents) == 0 {
		return
	}
	for i := range o.ents {
		e := &o.ents[i]
		o.out.Collect(e.partial, e.ts)
	}
	if len(o.ents) >= localJudge && o.folded < 2*int64(len(o.ents)) {
		o.bypass = localBypass
	}
	clear(o.ents) // drop the accumulators' references
	o.ents = o.ents[:0]
	o.idx.Clear()
	o.due, o.folded = dataflow.MaxWatermark, 0
}

// ProcessWatermark sends the partials before the watermark, which the
// runtime forwards next, could reach a window holding them.
func (o *localAgg[K, In, Acc, Out]) ProcessWatermark(wm dataflow.Timestamp) error {
	o.wm = wm
	if wm >= o.due {
		o.flush()
	}
	return nil
}

// SnapshotState sends every partial: the operator keeps nothing across a
// checkpoint.
func (o *localAgg[K, In, Acc, Out]) SnapshotState(context.Context, int64) ([]byte, error) {
	o.flush()
	return nil, nil
}

func (o *localAgg[K, In, Acc, Out]) Finish(context.Context) error {
	o.flush()
	return nil
}

// mergeAgg is the window operator's aggregation over partials: it merges
// their accumulators.
type mergeAgg[K comparable, In, Acc, Out any] struct {
	agg operators.AggregateFunction[In, Acc, Out]
}

func (m mergeAgg[K, In, Acc, Out]) CreateAccumulator() Acc { return m.agg.CreateAccumulator() }
func (m mergeAgg[K, In, Acc, Out]) Add(acc Acc, p partial[K, Acc]) Acc {
	return m.agg.Merge(acc, p.Acc)
}
func (m mergeAgg[K, In, Acc, Out]) Merge(a, b Acc) Acc { return m.agg.Merge(a, b) }
func (m mergeAgg[K, In, Acc, Out]) Result(acc Acc) Out { return m.agg.Result(acc) }

// records is the number of records p stands for, for LateRecords.
func (mergeAgg[K, In, Acc, Out]) records(p partial[K, Acc]) int64 { return p.N }

func partialKey[K comparable, Acc any](p partial[K, Acc]) K { return p.Key }
