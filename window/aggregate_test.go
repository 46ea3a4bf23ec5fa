package window_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/operators"
	"github.com/sluicedata/sluice/state"
	"github.com/sluicedata/sluice/window"
)

type event struct {
	User  string
	Video string
	Secs  int
}

// Every ready aggregation is an operators.AggregateFunction.
var (
	_ operators.AggregateFunction[event, int64, int64]                                        = window.Count[event]()
	_ operators.AggregateFunction[event, int, int]                                            = window.Sum(func(e event) int { return e.Secs })
	_ operators.AggregateFunction[event, window.MinMaxAcc[int], int]                          = window.Min(func(e event) int { return e.Secs })
	_ operators.AggregateFunction[event, window.MinMaxAcc[string], string]                    = window.Max(func(e event) string { return e.Video })
	_ operators.AggregateFunction[event, window.AvgAcc, float64]                              = window.Avg(func(e event) int { return e.Secs })
	_ operators.AggregateFunction[event, window.CountsAcc[string], []window.KeyCount[string]] = window.TopN(3, func(e event) string { return e.Video })
	_ operators.AggregateFunction[event, window.DistinctAcc[string], int64]                   = window.CountDistinct(func(e event) string { return e.User })
)

func fold[In, Acc, Out any](agg operators.AggregateFunction[In, Acc, Out], in []In) Acc {
	acc := agg.CreateAccumulator()
	for _, v := range in {
		acc = agg.Add(acc, v)
	}
	return acc
}

func result[In, Acc, Out any](agg operators.AggregateFunction[In, Acc, Out], in []In) Out {
	return agg.Result(fold(agg, in))
}

var events = []event{
	{"ann", "cats", 10}, {"bob", "dogs", 5}, {"ann", "cats", 30}, {"cid", "owls", 7},
	{"bob", "cats", 1}, {"dan", "dogs", 12}, {"ann", "emus", 3},
}

func TestAggregations(t *testing.T) {
	secs := func(e event) int { return e.Secs }
	video := func(e event) string { return e.Video }
	user := func(e event) string { return e.User }

	require.Equal(t, int64(7), result(window.Count[event](), events))
	require.Equal(t, 68, result(window.Sum(secs), events))
	require.Equal(t, 1, result(window.Min(secs), events))
	require.Equal(t, 30, result(window.Max(secs), events))
	require.Equal(t, "cats", result(window.Min(video), events))
	require.Equal(t, "owls", result(window.Max(video), events))
	require.InDelta(t, 68.0/7, result(window.Avg(secs), events), 1e-12)
	require.Equal(t, int64(4), result(window.CountDistinct(user), events))
	require.Equal(t, []window.KeyCount[string]{{Key: "cats", Count: 3}, {Key: "dogs", Count: 2}, {Key: "emus", Count: 1}},
		result(window.TopN(3, video), events))
	// Ties by key, ascending; fewer keys than n give a shorter result.
	require.Equal(t, []window.KeyCount[string]{{Key: "cats", Count: 3}, {Key: "dogs", Count: 2}, {Key: "emus", Count: 1}, {Key: "owls", Count: 1}},
		result(window.TopN(10, video), events))
	require.Equal(t, []window.KeyCount[string]{{Key: "cats", Count: 3}}, result(window.TopN(1, video), events))
	// TopNFunc with a custom tie order: descending keys among equal counts.
	rev := func(a, b string) int { return strings.Compare(b, a) }
	require.Equal(t, []window.KeyCount[string]{{Key: "cats", Count: 3}, {Key: "dogs", Count: 2}, {Key: "owls", Count: 1}},
		result(window.TopNFunc(3, video, rev), events))

	// Same results as the operators package's own Count and Sum.
	require.Equal(t, result(operators.Count[event](), events), result(window.Count[event](), events))
	require.Equal(t, result(operators.Sum(secs), events), result(window.Sum(secs), events))
}

func TestAggregationsEmpty(t *testing.T) {
	secs := func(e event) int { return e.Secs }
	require.Equal(t, int64(0), result(window.Count[event](), nil))
	require.Equal(t, 0, result(window.Sum(secs), nil))
	require.Equal(t, 0, result(window.Min(secs), nil)) // zero value, Seen false
	require.False(t, fold(window.Min(secs), nil).Seen)
	require.Equal(t, 0, result(window.Max(secs), nil))
	require.True(t, math.IsNaN(result(window.Avg(secs), nil)))
	require.Empty(t, result(window.TopN(3, func(e event) string { return e.Video }), nil))
	require.Equal(t, int64(0), result(window.CountDistinct(func(e event) string { return e.User }), nil))
}

func TestMinMaxFloats(t *testing.T) {
	id := func(f float64) float64 { return f }
	vals := []float64{3, -1, math.Inf(1), 2}
	require.Equal(t, -1.0, result(window.Min(id), vals))
	require.Equal(t, math.Inf(1), result(window.Max(id), vals))
	withNaN := []float64{3, math.NaN(), 2}
	require.True(t, math.IsNaN(result(window.Min(id), withNaN)))
	require.True(t, math.IsNaN(result(window.Max(id), withNaN)))
	// -0 orders below +0 whatever the order of adds or merges.
	negZero := math.Copysign(0, -1)
	require.True(t, math.Signbit(result(window.Min(id), []float64{0, negZero})))
	require.True(t, math.Signbit(result(window.Min(id), []float64{negZero, 0})))
	require.False(t, math.Signbit(result(window.Max(id), []float64{negZero, 0})))
	require.False(t, math.Signbit(result(window.Max(id), []float64{0, negZero})))
}

// checkMerge splits in at random into parts, folds each, and merges the
// partial accumulators in random pairs and orders, with empty accumulators
// mixed in: every way must give the result of folding everything at once.
func checkMerge[In, Acc, Out any](t *testing.T, agg operators.AggregateFunction[In, Acc, Out], in []In, rng *rand.Rand) {
	t.Helper()
	want := result(agg, in)
	for range 50 {
		parts := make([][]In, 1+rng.IntN(6))
		for _, v := range in {
			k := rng.IntN(len(parts))
			parts[k] = append(parts[k], v)
		}
		accs := make([]Acc, 0, len(parts)+1)
		for _, p := range parts {
			accs = append(accs, fold(agg, p))
		}
		accs = append(accs, agg.CreateAccumulator())
		for len(accs) > 1 {
			i, j := rng.IntN(len(accs)), rng.IntN(len(accs)-1)
			if j >= i {
				j++
			}
			merged := agg.Merge(accs[i], accs[j])
			accs[i] = merged
			accs = append(accs[:j], accs[j+1:]...)
		}
		require.Equal(t, want, agg.Result(accs[0]))
	}
}

func TestMergeAssociativeCommutative(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	in := make([]event, 500)
	for i := range in {
		in[i] = event{User: string(rune('a' + rng.IntN(26))), Video: string(rune('A' + rng.IntN(8))), Secs: rng.IntN(1000) - 200}
	}
	secs := func(e event) int { return e.Secs }
	checkMerge(t, window.Count[event](), in, rng)
	checkMerge(t, window.Sum(secs), in, rng)
	checkMerge(t, window.Sum(func(e event) float64 { return float64(e.Secs) }), in, rng)
	checkMerge(t, window.Min(secs), in, rng)
	checkMerge(t, window.Max(secs), in, rng)
	checkMerge(t, window.Min(func(e event) string { return e.User }), in, rng)
	checkMerge(t, window.Avg(secs), in, rng)
	checkMerge(t, window.TopN(3, func(e event) string { return e.Video }), in, rng)
	checkMerge(t, window.TopN(5, func(e event) int { return e.Secs % 7 }), in, rng)
	checkMerge(t, window.CountDistinct(func(e event) string { return e.User }), in, rng)
	checkMerge(t, window.CountDistinct(func(e event) int { return e.Secs }), in, rng)
}

// Accumulators survive the state codec, including after a round trip that
// turns empty maps into nil ones, and the state backend accepts their types.
func TestAccumulatorsEncode(t *testing.T) {
	video := func(e event) string { return e.Video }
	roundTrip(t, fold(window.Min(func(e event) int { return e.Secs }), events))
	roundTrip(t, fold(window.Avg(func(e event) int { return e.Secs }), events))
	roundTrip(t, fold(window.TopN(2, video), events))
	roundTrip(t, fold(window.TopN(2, func(e event) int64 { return int64(e.Secs) }), events))
	roundTrip(t, fold(window.CountDistinct(video), events))
	roundTrip(t, fold(window.CountDistinct(func(e event) int { return e.Secs }), events))

	// An empty accumulator decodes with a nil map, and still works.
	agg := window.TopN(2, video)
	empty := roundTrip(t, agg.CreateAccumulator())
	require.Equal(t, []window.KeyCount[string]{{Key: "cats", Count: 1}}, agg.Result(agg.Add(empty, events[0])))
	require.Equal(t, int64(1), agg.Merge(empty, agg.Add(agg.CreateAccumulator(), events[0])).Counts["cats"])
	d := window.CountDistinct(video)
	emptyD := roundTrip(t, d.CreateAccumulator())
	require.Equal(t, int64(1), d.Result(d.Add(emptyD, events[0])))
	require.Equal(t, int64(1), d.Result(d.Merge(emptyD, d.Add(d.CreateAccumulator(), events[0]))))
}

func roundTrip[A any](t *testing.T, acc A) A {
	t.Helper()
	c := state.Msgpack[A]()
	b, err := c.Append(nil, acc)
	require.NoError(t, err)
	back, err := c.Decode(b)
	require.NoError(t, err)
	require.EqualValues(t, acc, back)
	backend := newBackend(t)
	v, err := state.NewValue[A](backend, "acc")
	require.NoError(t, err, "the state backend refuses %T", acc)
	backend.SetCurrentKey(0, []byte("k"))
	require.NoError(t, v.Update(acc))
	return back
}

func TestAggregationValidate(t *testing.T) {
	type validator interface{ Validate() error }
	for _, c := range []struct {
		agg validator
		msg string
	}{
		{window.Sum[event, int](nil), "Sum's value function is nil"},
		{window.Min[event, int](nil), "Min's value function is nil"},
		{window.Max[event, int](nil), "Max's value function is nil"},
		{window.Avg[event, int](nil), "Avg's value function is nil"},
		{window.TopN(0, func(e event) string { return e.Video }), "TopN's n 0 must be positive"},
		{window.TopN(-1, func(e event) string { return e.Video }), "TopN's n -1 must be positive"},
		{window.TopN[event, string](3, nil), "TopN's key function is nil"},
		{window.TopNFunc(3, func(e event) string { return e.Video }, nil), "TopNFunc's compare function is nil"},
		{window.CountDistinct[event, string](nil), "CountDistinct's key function is nil"},
	} {
		err := c.agg.Validate()
		require.ErrorIs(t, err, window.ErrInvalidAggregation)
		require.EqualError(t, err, "window: invalid aggregation: "+c.msg)
	}
	for _, ok := range []validator{
		window.Sum(func(e event) int { return e.Secs }), window.Min(func(e event) int { return e.Secs }),
		window.Max(func(e event) int { return e.Secs }), window.Avg(func(e event) int { return e.Secs }),
		window.TopN(1, func(e event) string { return e.Video }), window.CountDistinct(func(e event) string { return e.User }),
	} {
		require.NoError(t, ok.Validate())
	}
}
