package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

func TestMain(m *testing.M) {
	// WithWriteThrough values go to the store every few writes, so that the
	// suite sees them read back from batches in flight and from the store.
	state.SetSpillBatch(16<<10, 7)
	goleak.VerifyTestMain(m)
}

const maxPar = 128

// backendKind is one implementation under the conformance suite.
type backendKind struct {
	name string
	open func(t testing.TB, cfg state.Config) state.Backend
}

// smallCache makes the Badger cache tiny so tests exercise flush and eviction.
const smallCache = 50

var backends = []backendKind{
	{"heap", func(t testing.TB, cfg state.Config) state.Backend {
		b, err := state.NewHeap(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b
	}},
	{"badger", func(t testing.TB, cfg state.Config) state.Backend {
		bc := state.DefaultBadgerConfig(t.TempDir())
		bc.CacheEntries = smallCache
		bc.MaxDeltaKeys = 1 << 20 // keep deltas although the cache is tiny
		bc.MemTableSize = 4 << 20
		bc.BlockCacheSize = 4 << 20
		b, err := state.NewBadger(cfg, bc)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b
	}},
}

// forEachBackend runs fn as a subtest per backend: the conformance suite.
func forEachBackend(t *testing.T, fn func(t *testing.T, bk backendKind)) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) { fn(t, bk) })
	}
}

// clock is a scripted clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newClock() *clock { return &clock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)} }

func cfgFor(subtask, parallelism int, clk *clock) state.Config {
	return state.Config{
		OperatorUID:    "counts",
		KeyGroups:      keygroup.RangeFor(subtask, parallelism, maxPar),
		MaxParallelism: maxPar,
		Clock:          clk.Now,
	}
}

func kgOf(key string) int { return keygroup.OfString(key, maxPar) }

func setKey(b state.Backend, key string) { b.SetCurrentKey(kgOf(key), []byte(key)) }

// ---- the five state types, with a model to compare against ----

type avg struct{}

func (avg) CreateAccumulator() [2]int64         { return [2]int64{} }
func (avg) Add(acc [2]int64, in int64) [2]int64 { return [2]int64{acc[0] + in, acc[1] + 1} }
func (avg) Result(acc [2]int64) float64         { return float64(acc[0]) / float64(acc[1]) }
func sum(a, b int64) int64                      { return a + b }

// must and get turn a call's results into a check: must(f())(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		require.NoError(t, err)
		return v
	}
}

func get[T any](v T, ok bool, err error) func(testing.TB) (T, bool) {
	return func(t testing.TB) (T, bool) {
		t.Helper()
		require.NoError(t, err)
		return v, ok
	}
}

type handles struct {
	val  *state.Value[int64]
	list *state.List[string]
	m    *state.Map[string, int]
	red  *state.Reducing[int64]
	agg  *state.Aggregating[int64, float64]
	// blob is written through to the store (WithWriteThrough)
	blob *state.Value[[]byte]
}

func declareAll(t testing.TB, b state.Backend, opts ...state.Option) handles {
	t.Helper()
	return handles{
		val:  must(state.NewValue[int64](b, "val", opts...))(t),
		list: must(state.NewList[string](b, "list", opts...))(t),
		m:    must(state.NewMap[string, int](b, "map", opts...))(t),
		red:  must(state.NewReducing(b, "red", sum, opts...))(t),
		agg:  must(state.NewAggregating[int64, [2]int64, float64](b, "agg", avg{}, opts...))(t),
		blob: must(state.NewValue[[]byte](b, "blob", append(slices.Clip(opts), state.WithWriteThrough())...))(t),
	}
}

type keyModel struct {
	val    *int64
	list   []string
	m      map[string]int
	red    *int64
	aggSum int64
	aggN   int64
	blob   []byte
}

type model map[string]*keyModel

func (m model) key(k string) *keyModel {
	km := m[k]
	if km == nil {
		km = &keyModel{}
		m[k] = km
	}
	return km
}

// step applies one random operation to key on the backend and the model.
func step(t testing.TB, rng *rand.Rand, b state.Backend, h handles, m model, key string) {
	t.Helper()
	setKey(b, key)
	km := m.key(key)
	x := rng.Int64N(1000)
	switch rng.IntN(15) {
	case 0, 1:
		require.NoError(t, h.val.Update(x))
		km.val = &x
	case 2:
		require.NoError(t, h.val.Clear())
		km.val = nil
	case 3:
		s := fmt.Sprint(x)
		require.NoError(t, h.list.Add(s))
		km.list = append(km.list, s)
	case 4:
		if rng.IntN(2) == 0 {
			require.NoError(t, h.list.Clear())
			km.list = nil
		} else {
			require.NoError(t, h.list.Update([]string{"a", "b"}))
			km.list = []string{"a", "b"}
		}
	case 5, 6:
		mk := fmt.Sprint("mk", x%5)
		require.NoError(t, h.m.Put(mk, int(x)))
		if km.m == nil {
			km.m = map[string]int{}
		}
		km.m[mk] = int(x)
	case 7:
		mk := fmt.Sprint("mk", x%5)
		require.NoError(t, h.m.Remove(mk))
		delete(km.m, mk)
	case 8:
		require.NoError(t, h.red.Add(x))
		r := x
		if km.red != nil {
			r += *km.red
		}
		km.red = &r
	case 9:
		require.NoError(t, h.agg.Add(x))
		km.aggSum += x
		km.aggN++
	case 10:
		require.NoError(t, h.agg.Clear())
		km.aggSum, km.aggN = 0, 0
	case 11:
		require.NoError(t, h.red.Clear())
		require.NoError(t, h.m.Clear())
		km.red, km.m = nil, nil
	case 12:
		// Prefetch changes nothing: this key and others, some twice,
		// some that were never written.
		var ks []state.Key
		for range 1 + rng.IntN(40) {
			k := fmt.Sprintf("key-%04d", rng.IntN(400))
			ks = append(ks, state.Key{Group: kgOf(k), Enc: []byte(k)})
		}
		ks = append(ks, state.Key{Group: kgOf(key), Enc: []byte(key)})
		h.val.Prefetch(ks)
		setKey(b, key)
	case 13:
		// A blob of a few hundred bytes to a few KB: written through to the
		// store in batches the tests make small (state.SetSpillBatch).
		blob := bytes.Repeat([]byte{byte(x)}, 1+rng.IntN(4000))
		require.NoError(t, h.blob.Update(blob))
		km.blob = blob
	case 14:
		require.NoError(t, h.blob.Clear())
		km.blob = nil
	}
}

// check compares every state of key with the model.
func check(t testing.TB, b state.Backend, h handles, m model, key string) {
	t.Helper()
	setKey(b, key)
	km := m.key(key)
	v, ok := get(h.val.Get())(t)
	if km.val == nil {
		require.False(t, ok, "val of %s", key)
	} else {
		require.True(t, ok, "val of %s", key)
		require.Equal(t, *km.val, v, "val of %s", key)
	}
	l, err := h.list.Get()
	require.NoError(t, err)
	require.Equal(t, len(km.list), len(l), "list of %s", key)
	if len(km.list) > 0 {
		require.Equal(t, km.list, l, "list of %s", key)
	}
	got := map[string]int{}
	require.NoError(t, h.m.Range(func(k string, v int) bool { got[k] = v; return true }))
	want := maps.Clone(km.m)
	if want == nil {
		want = map[string]int{}
	}
	require.Equal(t, want, got, "map of %s", key)
	n, err := h.m.Len()
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	r, ok := get(h.red.Get())(t)
	require.Equal(t, km.red != nil, ok, "red of %s", key)
	if ok {
		require.Equal(t, *km.red, r)
	}
	a, ok := get(h.agg.Get())(t)
	require.Equal(t, km.aggN > 0, ok, "agg of %s", key)
	if ok {
		require.Equal(t, float64(km.aggSum)/float64(km.aggN), a)
	}
	bl, ok := get(h.blob.Get())(t)
	require.Equal(t, km.blob != nil, ok, "blob of %s", key)
	if ok {
		require.Equal(t, km.blob, bl, "blob of %s", key)
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%04d", i)
	}
	return out
}

func TestStateTypes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		h := declareAll(t, b)
		m := model{}
		rng := rand.New(rand.NewPCG(1, 2))
		ks := keys(300) // more keys than the badger cache: exercises eviction
		for i := 0; i < 20000; i++ {
			key := ks[rng.IntN(len(ks))]
			step(t, rng, b, h, m, key)
			if i%97 == 0 {
				check(t, b, h, m, key)
			}
		}
		for _, k := range ks {
			check(t, b, h, m, k)
		}
	})
}

func TestValueBasics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		v := must(state.NewValue[string](b, "v"))(t)
		setKey(b, "a")
		_, ok := get(v.Get())(t)
		require.False(t, ok)
		require.NoError(t, v.Update("x"))
		setKey(b, "b")
		_, ok = get(v.Get())(t)
		require.False(t, ok, "state is scoped to the current key")
		require.NoError(t, v.Update("y"))
		// the runtime reuses its key buffer: the backend must have copied it
		buf := []byte("a")
		b.SetCurrentKey(kgOf("a"), buf)
		s, ok := get(v.Get())(t)
		require.True(t, ok)
		require.Equal(t, "x", s)
		buf[0] = 'b'
		b.SetCurrentKey(kgOf("b"), buf)
		s, _ = get(v.Get())(t)
		require.Equal(t, "y", s)

		// declaring again with the same type returns the same state
		v2 := must(state.NewValue[string](b, "v"))(t)
		s, _ = get(v2.Get())(t)
		require.Equal(t, "y", s)
	})
}

func TestTTL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		w := must(state.NewValue[int](b, "w", state.WithTTL(time.Minute, state.OnWrite)))(t)
		rw := must(state.NewValue[int](b, "rw", state.WithTTL(time.Minute, state.OnReadAndWrite)))(t)
		l := must(state.NewList[int](b, "l", state.WithTTL(time.Minute, state.OnWrite)))(t)
		m := must(state.NewMap[int, int](b, "m", state.WithTTL(time.Minute, state.OnWrite)))(t)
		setKey(b, "k")
		require.NoError(t, w.Update(1))
		require.NoError(t, rw.Update(1))
		require.NoError(t, l.Add(1))
		require.NoError(t, m.Put(1, 1))

		clk.Advance(40 * time.Second)
		_, ok := get(w.Get())(t)
		require.True(t, ok)
		_, ok = get(rw.Get())(t) // refreshes rw
		require.True(t, ok)

		clk.Advance(30 * time.Second) // 70s after the write, 30s after the read
		_, ok = get(w.Get())(t)
		require.False(t, ok, "expired after write")
		_, ok = get(rw.Get())(t)
		require.True(t, ok, "read refreshed it")
		lv, err := l.Get()
		require.NoError(t, err)
		require.Empty(t, lv)
		n, err := m.Len()
		require.NoError(t, err)
		require.Zero(t, n)
		require.NoError(t, l.Add(2)) // a new list, not appended to the expired one
		lv, _ = l.Get()
		require.Equal(t, []int{2}, lv)

		// Expired values stay expired through a snapshot; live TTL timestamps survive it.
		setKey(b, "other")
		require.NoError(t, w.Update(7))
		clk.Advance(59 * time.Second)
		var buf bytes.Buffer
		snap := must(b.Snapshot(1, state.SnapshotOptions{}))(t)
		_, err = snap.Write(context.Background(), &buf)
		require.NoError(t, err)

		b2 := bk.open(t, cfgFor(0, 1, clk))
		w2 := must(state.NewValue[int](b2, "w", state.WithTTL(time.Minute, state.OnWrite)))(t)
		require.NoError(t, b2.Restore(context.Background(), state.Chain{bytes.NewReader(buf.Bytes())}))
		setKey(b2, "other")
		x, ok := get(w2.Get())(t)
		require.True(t, ok)
		require.Equal(t, 7, x)
		clk.Advance(time.Second)
		_, ok = get(w2.Get())(t)
		require.False(t, ok, "TTL timestamp survived the snapshot")
	})
}

// ---- snapshots ----

func snapshot(t testing.TB, b state.Backend, id int64, opts state.SnapshotOptions) []byte {
	t.Helper()
	s := must(b.Snapshot(id, opts))(t)
	var buf bytes.Buffer
	n, err := s.Write(context.Background(), &buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	return buf.Bytes()
}

// history keeps the snapshots of one backend; chain returns the files to
// restore the latest: the last base and the deltas after it.
type snapHistory struct {
	files [][]byte
	full  []bool
}

func (h *snapHistory) take(t testing.TB, b state.Backend, id int64) {
	t.Helper()
	s := must(b.Snapshot(id, state.SnapshotOptions{}))(t)
	var buf bytes.Buffer
	_, err := s.Write(context.Background(), &buf)
	require.NoError(t, err)
	h.files = append(h.files, buf.Bytes())
	h.full = append(h.full, s.Full())
}

func (h *snapHistory) chain() state.Chain {
	last := 0
	for i, f := range h.full {
		if f {
			last = i
		}
	}
	return chain(h.files[last:]...)
}

func chain(files ...[]byte) state.Chain {
	c := make(state.Chain, len(files))
	for i, f := range files {
		c[i] = bytes.NewReader(f)
	}
	return c
}

func TestSnapshotRestoreEqual(t *testing.T) {
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+"_to_"+to.name, func(t *testing.T) {
				clk := newClock()
				b := from.open(t, cfgFor(0, 1, clk))
				h := declareAll(t, b)
				m := model{}
				rng := rand.New(rand.NewPCG(3, 4))
				ks := keys(200)
				var hist snapHistory
				for id := int64(1); id <= 4; id++ {
					for i := 0; i < 3000; i++ {
						step(t, rng, b, h, m, ks[rng.IntN(len(ks))])
					}
					hist.take(t, b, id)
				}
				b2 := to.open(t, cfgFor(0, 1, clk))
				// Restore before declaring: rows wait until the states are declared.
				require.NoError(t, b2.Restore(context.Background(), hist.chain()))
				h2 := declareAll(t, b2)
				for _, k := range ks {
					check(t, b2, h2, m, k)
				}
			})
		}
	}
}

func TestIncrementalCarriesDeletes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		h := declareAll(t, b)
		m := model{}
		ks := keys(500)
		for i, k := range ks {
			setKey(b, k)
			require.NoError(t, h.val.Update(int64(i)))
			require.NoError(t, h.m.Put("a", i))
			require.NoError(t, h.m.Put("b", i))
			x := int64(i)
			m.key(k).val = &x
			m.key(k).m = map[string]int{"a": i, "b": i}
		}
		base := snapshot(t, b, 1, state.SnapshotOptions{})
		for i, k := range ks[:50] {
			setKey(b, k)
			if i%2 == 0 {
				require.NoError(t, h.val.Clear())
				require.NoError(t, h.m.Clear())
				m.key(k).val, m.key(k).m = nil, nil
			} else {
				require.NoError(t, h.m.Remove("a"))
				delete(m.key(k).m, "a")
			}
		}
		s := must(b.Snapshot(2, state.SnapshotOptions{}))(t)
		require.False(t, s.Full())
		require.Equal(t, int64(1), s.ParentID())
		var buf bytes.Buffer
		_, err := s.Write(context.Background(), &buf)
		require.NoError(t, err)
		delta := buf.Bytes()
		require.Less(t, len(delta), len(base)/4, "a delta holds only changed keys")

		b2 := bk.open(t, cfgFor(0, 1, clk))
		h2 := declareAll(t, b2)
		require.NoError(t, b2.Restore(context.Background(), chain(base, delta)))
		for _, k := range ks {
			check(t, b2, h2, m, k)
		}
		// Without the delta the deletes are not there: the delta carried them.
		b3 := bk.open(t, cfgFor(0, 1, clk))
		h3 := declareAll(t, b3)
		require.NoError(t, b3.Restore(context.Background(), chain(base)))
		setKey(b3, ks[0])
		_, ok := get(h3.val.Get())(t)
		require.True(t, ok)

		// FullEvery and Full force bases.
		s = must(b.Snapshot(3, state.SnapshotOptions{Full: true}))(t)
		require.True(t, s.Full())
		s.Discard()
	})
}

func TestSnapshotWhileMutating(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		h := declareAll(t, b)
		m := model{}
		rng := rand.New(rand.NewPCG(5, 6))
		ks := keys(300)
		var hist snapHistory
		for id := int64(1); id <= 3; id++ {
			for i := 0; i < 2000; i++ {
				step(t, rng, b, h, m, ks[rng.IntN(len(ks))])
			}
			want := model{}
			for k, km := range m {
				c := *km
				c.list = slices.Clone(km.list)
				c.m = maps.Clone(km.m)
				want[k] = &c
			}
			s := must(b.Snapshot(id, state.SnapshotOptions{}))(t)
			var buf bytes.Buffer
			hist.full = append(hist.full, s.Full())
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() { _, werr = s.Write(context.Background(), &buf) })
			for i := 0; i < 2000; i++ { // keeps mutating while the snapshot is written
				step(t, rng, b, h, m, ks[rng.IntN(len(ks))])
			}
			wg.Wait()
			require.NoError(t, werr)
			hist.files = append(hist.files, buf.Bytes())

			b2 := bk.open(t, cfgFor(0, 1, clk))
			h2 := declareAll(t, b2)
			require.NoError(t, b2.Restore(context.Background(), hist.chain()))
			for _, k := range ks {
				check(t, b2, h2, want, k)
			}
		}
	})
}

// rescale writes state over oldP subtasks (a base and a delta each), restores
// it into newP subtasks and checks every key in its new owner.
func rescale(t *testing.T, bk backendKind, oldP, newP int) {
	clk := newClock()
	ks := keys(400)
	m := model{}
	rng := rand.New(rand.NewPCG(uint64(oldP), uint64(newP)))
	var olds []state.Backend
	var oldH []handles
	for i := 0; i < oldP; i++ {
		b := bk.open(t, cfgFor(i, oldP, clk))
		olds = append(olds, b)
		oldH = append(oldH, declareAll(t, b))
	}
	owner := func(k string, p int) int { return keygroup.Subtask(kgOf(k), p, maxPar) }
	hists := make([]snapHistory, oldP)
	for id := int64(1); id <= 3; id++ {
		for i := 0; i < 2000; i++ {
			k := ks[rng.IntN(len(ks))]
			o := owner(k, oldP)
			step(t, rng, olds[o], oldH[o], m, k)
		}
		for i, b := range olds {
			hists[i].take(t, b, id)
		}
	}
	for j := 0; j < newP; j++ {
		b := bk.open(t, cfgFor(j, newP, clk))
		h := declareAll(t, b)
		cs := make([]state.Chain, oldP)
		for i := range hists {
			cs[i] = hists[i].chain()
		}
		require.NoError(t, b.Restore(context.Background(), cs...))
		for _, k := range ks {
			if owner(k, newP) == j {
				check(t, b, h, m, k)
			}
		}
		// keys of other subtasks were not restored here
		for _, k := range ks {
			if owner(k, newP) != j && m.key(k).val != nil {
				b.SetCurrentKey(kgOf(k), []byte(k))
				_, _, err := h.val.Get()
				require.ErrorIs(t, err, state.ErrKeyGroupOutOfRange)
				break
			}
		}
	}
}

func TestRescale(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		t.Run("1to3", func(t *testing.T) { rescale(t, bk, 1, 3) })
		t.Run("4to2", func(t *testing.T) { rescale(t, bk, 4, 2) })
	})
}

func TestUndeclaredStateSurvives(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		v := must(state.NewValue[int](b, "kept"))(t)
		setKey(b, "k")
		require.NoError(t, v.Update(42))
		f1 := snapshot(t, b, 1, state.SnapshotOptions{})

		// A new version of the operator does not declare "kept" before its first snapshot.
		b2 := bk.open(t, cfgFor(0, 1, clk))
		require.NoError(t, b2.Restore(context.Background(), chain(f1)))
		f2 := snapshot(t, b2, 2, state.SnapshotOptions{})

		b3 := bk.open(t, cfgFor(0, 1, clk))
		require.NoError(t, b3.Restore(context.Background(), chain(f2)))
		v3 := must(state.NewValue[int](b3, "kept"))(t)
		setKey(b3, "k")
		x, ok := get(v3.Get())(t)
		require.True(t, ok)
		require.Equal(t, 42, x)
	})
}

// ---- bad input ----

type withChan struct {
	Name string
	C    chan int
}

func TestBadDeclarations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		_, err := state.NewValue[int](b, "s")
		require.NoError(t, err)
		_, err = state.NewValue[string](b, "s")
		require.ErrorIs(t, err, state.ErrStateMismatch)
		require.ErrorContains(t, err, `operator "counts", state "s"`)
		_, err = state.NewList[int](b, "s")
		require.ErrorIs(t, err, state.ErrStateMismatch)
		_, err = state.NewMap[string, int](b, "s")
		require.ErrorIs(t, err, state.ErrStateMismatch)

		_, err = state.NewValue[chan int](b, "ch")
		require.ErrorIs(t, err, state.ErrUnsupportedType)
		_, err = state.NewValue[func()](b, "fn")
		require.ErrorIs(t, err, state.ErrUnsupportedType)
		_, err = state.NewList[withChan](b, "nested")
		require.ErrorIs(t, err, state.ErrUnsupportedType)
		_, err = state.NewMap[string, map[string]func()](b, "deep")
		require.ErrorIs(t, err, state.ErrUnsupportedType)
		_, err = state.NewValue[int](b, "codec", state.WithCodec(state.Msgpack[string]()))
		require.ErrorIs(t, err, state.ErrInvalidConfig)
		_, err = state.NewValue[int](b, "ttl", state.WithTTL(0, state.OnWrite))
		require.ErrorIs(t, err, state.ErrInvalidConfig)

		// State used outside a keyed operator: no current key.
		v := must(state.NewValue[int](b, "v"))(t)
		_, _, err = v.Get()
		require.ErrorIs(t, err, state.ErrNoCurrentKey)
		require.ErrorIs(t, v.Update(1), state.ErrNoCurrentKey)
		_, err = state.NewValue[int](nil, "v")
		require.ErrorIs(t, err, state.ErrNoCurrentKey)
	})
}

func TestBadConfig(t *testing.T) {
	_, err := state.NewHeap(state.Config{KeyGroups: keygroup.Range{Start: 0, End: 1}})
	require.ErrorIs(t, err, state.ErrInvalidConfig)
	_, err = state.NewHeap(state.Config{OperatorUID: "x", KeyGroups: keygroup.Range{Start: 5, End: 200}})
	require.ErrorIs(t, err, state.ErrInvalidConfig)
	_, err = state.NewBadger(state.Config{OperatorUID: "x", KeyGroups: keygroup.Range{Start: 0, End: 1}}, state.BadgerConfig{})
	require.ErrorIs(t, err, state.ErrInvalidConfig)
}

func TestBadSnapshots(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		h := declareAll(t, b)
		for i, k := range keys(100) {
			setKey(b, k)
			require.NoError(t, h.val.Update(int64(i)))
			require.NoError(t, h.m.Put(k, i))
		}
		base := snapshot(t, b, 1, state.SnapshotOptions{})
		setKey(b, "key-0001")
		require.NoError(t, h.val.Clear())
		d2 := snapshot(t, b, 2, state.SnapshotOptions{})
		d3 := snapshot(t, b, 3, state.SnapshotOptions{})
		base2 := snapshot(t, b, 4, state.SnapshotOptions{Full: true})
		d5 := snapshot(t, b, 5, state.SnapshotOptions{})

		restore := func(cs ...state.Chain) error {
			b2 := bk.open(t, cfgFor(0, 1, clk))
			h2 := declareAll(t, b2)
			err := b2.Restore(context.Background(), cs...)
			if err != nil { // a failed restore leaves the backend empty, never half-restored
				setKey(b2, "key-0002")
				_, ok := get(h2.val.Get())(t)
				require.False(t, ok)
			}
			return err
		}
		require.NoError(t, restore(chain(base, d2, d3)))
		require.NoError(t, restore(chain(base2, d5)))

		flip := func(f []byte, at int) []byte {
			g := slices.Clone(f)
			g[at] ^= 0x40
			return g
		}
		for _, at := range []int{20, len(base) / 2, len(base) - 30, len(base) - 2} {
			err := restore(chain(flip(base, at)))
			require.ErrorIs(t, err, state.ErrCorrupt, "flipped byte %d", at)
		}
		require.ErrorIs(t, restore(chain(base, flip(d2, len(d2)-10))), state.ErrCorrupt)
		for _, n := range []int{0, 10, 70, len(base) / 2, len(base) - 1} {
			require.ErrorIs(t, restore(chain(base[:n])), state.ErrCorrupt, "truncated at %d", n)
		}
		require.ErrorIs(t, restore(chain(append(slices.Clone(base), 0))), state.ErrCorrupt)

		unknown := slices.Clone(base)
		unknown[9] = 99 // version
		err := restore(chain(unknown))
		require.ErrorIs(t, err, state.ErrUnknownVersion)
		require.ErrorContains(t, err, "99")

		require.ErrorIs(t, restore(chain(d2)), state.ErrBadChain, "a delta alone")
		require.ErrorIs(t, restore(chain(base, d3)), state.ErrBadChain, "a skipped delta")
		require.ErrorIs(t, restore(chain(base2, d2)), state.ErrBadChain, "a delta on the wrong base")
		require.ErrorIs(t, restore(chain(base, base2)), state.ErrBadChain, "two bases")
		require.ErrorIs(t, restore(chain(base), chain(base2)), state.ErrRestoreOverlap)

		other := bk.open(t, state.Config{OperatorUID: "other", KeyGroups: keygroup.Range{Start: 0, End: maxPar}, MaxParallelism: maxPar, Clock: clk.Now})
		require.ErrorIs(t, other.Restore(context.Background(), chain(base)), state.ErrWrongOperator)

		// A state restored with another kind than it is declared with.
		b3 := bk.open(t, cfgFor(0, 1, clk))
		_ = must(state.NewList[int64](b3, "val"))(t)
		require.ErrorIs(t, b3.Restore(context.Background(), chain(base)), state.ErrStateMismatch)
		b4 := bk.open(t, cfgFor(0, 1, clk))
		require.NoError(t, b4.Restore(context.Background(), chain(base)))
		_, err = state.NewList[int64](b4, "val")
		require.ErrorIs(t, err, state.ErrStateMismatch)

		// Snapshots are written once; ids increase.
		s := must(b.Snapshot(10, state.SnapshotOptions{}))(t)
		_, err = s.Write(context.Background(), &bytes.Buffer{})
		require.NoError(t, err)
		_, err = s.Write(context.Background(), &bytes.Buffer{})
		require.ErrorIs(t, err, state.ErrSnapshotUsed)
		_, err = b.Snapshot(10, state.SnapshotOptions{})
		require.ErrorIs(t, err, state.ErrInvalidConfig)
		// A cancelled write fails.
		s = must(b.Snapshot(11, state.SnapshotOptions{}))(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = s.Write(ctx, &bytes.Buffer{})
		require.True(t, errors.Is(err, context.Canceled))
	})
}

func TestClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		v := must(state.NewValue[int](b, "v"))(t)
		require.NoError(t, b.Close())
		setKey(b, "k")
		_, _, err := v.Get()
		require.ErrorIs(t, err, state.ErrClosed)
		_, err = b.Snapshot(1, state.SnapshotOptions{})
		require.ErrorIs(t, err, state.ErrClosed)
	})
}

type bag struct{ Items map[string]int }

// bagAgg changes its accumulator in place, as aggregate functions over maps do.
type bagAgg struct{}

func (bagAgg) CreateAccumulator() *bag { return &bag{Items: map[string]int{}} }
func (bagAgg) Add(acc *bag, in string) *bag {
	acc.Items[in]++
	return acc
}
func (bagAgg) Result(acc *bag) int { return len(acc.Items) }

func TestInPlaceAccumulatorKeepsSnapshot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		agg := must(state.NewAggregating[string, *bag, int](b, "bag", bagAgg{}))(t)
		setKey(b, "k")
		require.NoError(t, agg.Add("a"))
		s := must(b.Snapshot(1, state.SnapshotOptions{}))(t)
		require.NoError(t, agg.Add("b")) // after the capture, before the write
		var buf bytes.Buffer
		_, err := s.Write(context.Background(), &buf)
		require.NoError(t, err)

		b2 := bk.open(t, cfgFor(0, 1, clk))
		agg2 := must(state.NewAggregating[string, *bag, int](b2, "bag", bagAgg{}))(t)
		require.NoError(t, b2.Restore(context.Background(), chain(buf.Bytes())))
		setKey(b2, "k")
		n, ok := get(agg2.Get())(t)
		require.True(t, ok)
		require.Equal(t, 1, n, "the snapshot holds the state at its capture")
	})
}

// ---- values changed in place by callers (read-modify-write) ----

// tally holds references, like the accumulators of TopN and CountDistinct.
type tally struct {
	Counts map[string]int64
	Seen   []string
}

func newTally() tally {
	return tally{Counts: map[string]int64{"a": 1}, Seen: append(make([]string, 0, 8), "a")}
}

// bump changes t in place, as an aggregate function does.
func bump(t tally, s string) tally {
	t.Counts["a"]++
	t.Counts[s]++
	t.Seen[0] = s
	t.Seen = append(t.Seen, s)
	return t
}

// captureAround captures snapshot id, runs change and writes the snapshot:
// after change, or (concurrent) on another goroutine while change runs.
func captureAround(t *testing.T, b state.Backend, id int64, concurrent bool, change func()) []byte {
	t.Helper()
	s := must(b.Snapshot(id, state.SnapshotOptions{}))(t)
	var buf bytes.Buffer
	var werr error
	if concurrent {
		var wg sync.WaitGroup
		wg.Go(func() { _, werr = s.Write(context.Background(), &buf) })
		change()
		wg.Wait()
	} else {
		change()
		_, werr = s.Write(context.Background(), &buf)
	}
	require.NoError(t, werr)
	return buf.Bytes()
}

// forEachMode runs fn with the snapshot written after the change and while it happens.
func forEachMode(t *testing.T, fn func(t *testing.T, bk backendKind, concurrent bool)) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		for _, concurrent := range []bool{false, true} {
			t.Run(map[bool]string{false: "after", true: "concurrent"}[concurrent], func(t *testing.T) {
				fn(t, bk, concurrent)
			})
		}
	})
}

func TestValueGetChangedInPlaceKeepsSnapshot(t *testing.T) {
	forEachMode(t, func(t *testing.T, bk backendKind, concurrent bool) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		val := must(state.NewValue[tally](b, "tally"))(t)
		ptr := must(state.NewValue[*bag](b, "bag"))(t)
		setKey(b, "k")
		require.NoError(t, val.Update(newTally()))
		require.NoError(t, ptr.Update(&bag{Items: map[string]int{"a": 1}}))
		data := captureAround(t, b, 1, concurrent, func() {
			setKey(b, "k")
			v, ok := get(val.Get())(t)
			require.True(t, ok)
			require.NoError(t, val.Update(bump(v, "b")))
			p, ok := get(ptr.Get())(t)
			require.True(t, ok)
			p.Items["a"]++
			p.Items["b"] = 1
			require.NoError(t, ptr.Update(p))
		})

		setKey(b, "k")
		v, _ := get(val.Get())(t)
		require.Equal(t, tally{Counts: map[string]int64{"a": 2, "b": 1}, Seen: []string{"b", "b"}}, v, "the live backend has the change")
		p, _ := get(ptr.Get())(t)
		require.Equal(t, map[string]int{"a": 2, "b": 1}, p.Items)

		b2 := bk.open(t, cfgFor(0, 1, clk))
		val2 := must(state.NewValue[tally](b2, "tally"))(t)
		ptr2 := must(state.NewValue[*bag](b2, "bag"))(t)
		require.NoError(t, b2.Restore(context.Background(), chain(data)))
		setKey(b2, "k")
		v, _ = get(val2.Get())(t)
		require.Equal(t, tally{Counts: map[string]int64{"a": 1}, Seen: []string{"a"}}, v, "the snapshot holds the state at its capture")
		p, _ = get(ptr2.Get())(t)
		require.Equal(t, map[string]int{"a": 1}, p.Items)
	})
}

func TestMapGetChangedInPlaceKeepsSnapshot(t *testing.T) {
	forEachMode(t, func(t *testing.T, bk backendKind, concurrent bool) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		// As the window operator keeps its accumulators: window -> accumulator.
		wins := must(state.NewMap[string, tally](b, "windows"))(t)
		lists := must(state.NewMap[string, []int](b, "lists"))(t)
		bags := must(state.NewMap[string, *bag](b, "bags"))(t)
		setKey(b, "k")
		for _, w := range []string{"w1", "w2", "w3"} {
			require.NoError(t, wins.Put(w, newTally()))
			require.NoError(t, lists.Put(w, append(make([]int, 0, 8), 1, 2)))
			require.NoError(t, bags.Put(w, &bag{Items: map[string]int{"a": 1}}))
		}
		data := captureAround(t, b, 1, concurrent, func() {
			setKey(b, "k")
			// Get, change, Put: the window operator's add.
			acc, ok := get(wins.Get("w1"))(t)
			require.True(t, ok)
			require.NoError(t, wins.Put("w1", bump(acc, "b")))
			s, _ := get(lists.Get("w1"))(t)
			s[0] = 10
			require.NoError(t, lists.Put("w1", append(s, 3)))
			bg, _ := get(bags.Get("w1"))(t)
			bg.Items["a"]++
			require.NoError(t, bags.Put("w1", bg))
			// Values given to Range, changed and written back after it.
			changed := map[string]tally{}
			require.NoError(t, wins.Range(func(w string, acc tally) bool {
				if w == "w2" {
					changed[w] = bump(acc, "c")
				}
				return true
			}))
			for w, acc := range changed {
				require.NoError(t, wins.Put(w, acc))
			}
			require.NoError(t, lists.Range(func(w string, s []int) bool {
				if w == "w2" {
					s[1] = 20 // changed in place, written back below
				}
				return true
			}))
			s, _ = get(lists.Get("w2"))(t)
			require.NoError(t, lists.Put("w2", s))
		})

		orig := newTally()
		setKey(b, "k")
		live := map[string]tally{}
		require.NoError(t, wins.Range(func(w string, acc tally) bool { live[w] = acc; return true }))
		require.Equal(t, map[string]tally{
			"w1": {Counts: map[string]int64{"a": 2, "b": 1}, Seen: []string{"b", "b"}},
			"w2": {Counts: map[string]int64{"a": 2, "c": 1}, Seen: []string{"c", "c"}},
			"w3": orig,
		}, live, "the live backend has the changes")
		s, _ := get(lists.Get("w1"))(t)
		require.Equal(t, []int{10, 2, 3}, s)
		s, _ = get(lists.Get("w2"))(t)
		require.Equal(t, []int{1, 20}, s)
		bg, _ := get(bags.Get("w1"))(t)
		require.Equal(t, map[string]int{"a": 2}, bg.Items)

		b2 := bk.open(t, cfgFor(0, 1, clk))
		wins2 := must(state.NewMap[string, tally](b2, "windows"))(t)
		lists2 := must(state.NewMap[string, []int](b2, "lists"))(t)
		bags2 := must(state.NewMap[string, *bag](b2, "bags"))(t)
		require.NoError(t, b2.Restore(context.Background(), chain(data)))
		setKey(b2, "k")
		for _, w := range []string{"w1", "w2", "w3"} {
			acc, ok := get(wins2.Get(w))(t)
			require.True(t, ok)
			require.Equal(t, orig, acc, "the snapshot holds the state at its capture")
			s, _ := get(lists2.Get(w))(t)
			require.Equal(t, []int{1, 2}, s)
			bg, _ := get(bags2.Get(w))(t)
			require.Equal(t, map[string]int{"a": 1}, bg.Items)
		}
	})
}

func TestListGetChangedInPlaceKeepsSnapshot(t *testing.T) {
	forEachMode(t, func(t *testing.T, bk backendKind, concurrent bool) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		list := must(state.NewList[map[string]int](b, "list"))(t)
		added := must(state.NewList[tally](b, "added"))(t)
		setKey(b, "k")
		require.NoError(t, list.Update([]map[string]int{{"a": 1}, {"b": 2}}))
		require.NoError(t, added.Add(newTally()))
		data := captureAround(t, b, 1, concurrent, func() {
			setKey(b, "k")
			l := must(list.Get())(t)
			l[0]["a"]++
			l[1]["c"] = 3
			require.NoError(t, list.Update(l))
			// Add first (the list is copied for the append), then change an
			// element that was there at the capture.
			require.NoError(t, added.Add(tally{Counts: map[string]int64{"x": 1}, Seen: []string{"x"}}))
			a := must(added.Get())(t)
			a[0] = bump(a[0], "b")
			require.NoError(t, added.Update(a))
		})

		setKey(b, "k")
		require.Equal(t, []map[string]int{{"a": 2}, {"b": 2, "c": 3}}, must(list.Get())(t), "the live backend has the change")
		require.Equal(t, []tally{
			{Counts: map[string]int64{"a": 2, "b": 1}, Seen: []string{"b", "b"}},
			{Counts: map[string]int64{"x": 1}, Seen: []string{"x"}},
		}, must(added.Get())(t))

		b2 := bk.open(t, cfgFor(0, 1, clk))
		list2 := must(state.NewList[map[string]int](b2, "list"))(t)
		added2 := must(state.NewList[tally](b2, "added"))(t)
		require.NoError(t, b2.Restore(context.Background(), chain(data)))
		setKey(b2, "k")
		require.Equal(t, []map[string]int{{"a": 1}, {"b": 2}}, must(list2.Get())(t), "the snapshot holds the state at its capture")
		require.Equal(t, []tally{{Counts: map[string]int64{"a": 1}, Seen: []string{"a"}}}, must(added2.Get())(t))
	})
}

// TestSnapshotsInARowKeepTheirEpochs changes values in place between a full
// snapshot and a delta and after the delta, and writes both only at the end:
// each holds the values of its own capture. More keys than the Badger test
// cache holds, so entries are evicted, flushed and loaded again meanwhile.
func TestSnapshotsInARowKeepTheirEpochs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		wins := must(state.NewMap[string, tally](b, "windows"))(t)
		val := must(state.NewValue[tally](b, "tally"))(t)
		ks := keys(3 * smallCache)
		for _, k := range ks {
			setKey(b, k)
			require.NoError(t, wins.Put("w", tally{Counts: map[string]int64{"n": 0}, Seen: []string{k}}))
			require.NoError(t, val.Update(tally{Counts: map[string]int64{"n": 0}}))
		}
		incr := func() {
			for _, k := range ks {
				setKey(b, k)
				acc, ok := get(wins.Get("w"))(t)
				require.True(t, ok)
				acc.Counts["n"]++
				acc.Seen[0] = fmt.Sprint(k, acc.Counts["n"])
				require.NoError(t, wins.Put("w", acc))
				v, ok := get(val.Get())(t)
				require.True(t, ok)
				v.Counts["n"]++
				require.NoError(t, val.Update(v))
			}
		}
		s1 := must(b.Snapshot(1, state.SnapshotOptions{}))(t)
		require.True(t, s1.Full())
		incr()
		s2 := must(b.Snapshot(2, state.SnapshotOptions{}))(t)
		require.False(t, s2.Full())
		incr()
		var f1, f2 bytes.Buffer
		_, err := s1.Write(context.Background(), &f1)
		require.NoError(t, err)
		_, err = s2.Write(context.Background(), &f2)
		require.NoError(t, err)

		checkAt := func(b state.Backend, wins *state.Map[string, tally], val *state.Value[tally], n int64) {
			t.Helper()
			for _, k := range ks {
				setKey(b, k)
				acc, ok := get(wins.Get("w"))(t)
				require.True(t, ok)
				seen := k
				if n > 0 {
					seen = fmt.Sprint(k, n)
				}
				require.Equal(t, tally{Counts: map[string]int64{"n": n}, Seen: []string{seen}}, acc, "key %s", k)
				v, ok := get(val.Get())(t)
				require.True(t, ok)
				require.Equal(t, map[string]int64{"n": n}, v.Counts, "key %s", k)
			}
		}
		for i, files := range [][][]byte{{f1.Bytes()}, {f1.Bytes(), f2.Bytes()}} {
			b2 := bk.open(t, cfgFor(0, 1, clk))
			wins2 := must(state.NewMap[string, tally](b2, "windows"))(t)
			val2 := must(state.NewValue[tally](b2, "tally"))(t)
			require.NoError(t, b2.Restore(context.Background(), chain(files...)))
			checkAt(b2, wins2, val2, int64(i))
		}
		checkAt(b, wins, val, 2)
	})
}

// TestReadsCopyAtMostOncePerSnapshot: a value without references is never
// copied on read; one with references is copied by the first read after a
// snapshot only.
func TestReadsCopyAtMostOncePerSnapshot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		n := must(state.NewValue[int64](b, "n"))(t)
		val := must(state.NewValue[tally](b, "tally"))(t)
		wins := must(state.NewMap[string, tally](b, "windows"))(t)
		setKey(b, "k")
		require.NoError(t, n.Update(1))
		require.NoError(t, val.Update(newTally()))
		require.NoError(t, wins.Put("w", newTally()))
		must(b.Snapshot(1, state.SnapshotOptions{}))(t).Discard()
		setKey(b, "k")
		require.Zero(t, testing.AllocsPerRun(10, func() { _, _, _ = n.Get() }))
		first, _ := get(val.Get())(t) // copies
		require.Zero(t, testing.AllocsPerRun(10, func() { _, _, _ = val.Get() }))
		again, _ := get(val.Get())(t)
		again.Counts["z"] = 1
		require.Equal(t, int64(1), first.Counts["z"], "reads in one epoch return the same owned value")
		_, _ = get(wins.Get("w"))(t) // copies
		require.Zero(t, testing.AllocsPerRun(10, func() { _, _, _ = wins.Get("w") }))
	})
}

// point holds no pointer: a []point is copied by its bytes, not the codec.
type point struct {
	X, Y int64
	Tag  [2]int32
	On   bool
}

// A slice of pointer-free elements read with Get and changed in place (an
// element changed, one appended) keeps the snapshot taken before.
func TestFlatSliceChangedInPlaceKeepsSnapshot(t *testing.T) {
	forEachMode(t, func(t *testing.T, bk backendKind, concurrent bool) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		pts := must(state.NewValue[[]point](b, "points"))(t)
		setKey(b, "k")
		require.NoError(t, pts.Update(append(make([]point, 0, 8), point{X: 1, Tag: [2]int32{1, 2}}, point{X: 2})))
		data := captureAround(t, b, 1, concurrent, func() {
			setKey(b, "k")
			v, ok := get(pts.Get())(t)
			require.True(t, ok)
			v[0].X, v[0].On = 100, true
			v = append(v, point{X: 3}) // within capacity, if the copy kept it
			require.NoError(t, pts.Update(v))
		})
		setKey(b, "k")
		v, _ := get(pts.Get())(t)
		require.Equal(t, []point{{X: 100, Tag: [2]int32{1, 2}, On: true}, {X: 2}, {X: 3}}, v, "the live backend has the change")

		b2 := bk.open(t, cfgFor(0, 1, clk))
		pts2 := must(state.NewValue[[]point](b2, "points"))(t)
		require.NoError(t, b2.Restore(context.Background(), chain(data)))
		setKey(b2, "k")
		v, _ = get(pts2.Get())(t)
		require.Equal(t, []point{{X: 1, Tag: [2]int32{1, 2}}, {X: 2}}, v, "the snapshot holds the state at its capture")
	})
}

// A chain of a base and several deltas in which keys are deleted, created
// again and changed in turn restores to exactly the last snapshot, whether
// the states are declared before the restore or after it (the runtime
// restores before the operator declares its state), and a full snapshot
// of a backend restored but not declared yet carries the same state on.
func TestDeltaChainRestoresDeclaredOrNot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		clk := newClock()
		b := bk.open(t, cfgFor(0, 1, clk))
		h := declareAll(t, b)
		m := model{}
		ks := keys(300)
		rng := rand.New(rand.NewPCG(7, 11))
		var files [][]byte
		for id := int64(1); id <= 5; id++ {
			n := 600
			if id > 1 {
				n = 150 // deltas: some keys, each changed, deleted or created again
			}
			for range n {
				step(t, rng, b, h, m, ks[rng.IntN(len(ks))])
			}
			s := must(b.Snapshot(id, state.SnapshotOptions{}))(t)
			require.Equal(t, id == 1, s.Full(), "snapshot %d", id)
			var buf bytes.Buffer
			_, err := s.Write(context.Background(), &buf)
			require.NoError(t, err)
			files = append(files, buf.Bytes())
		}

		declaredFirst := bk.open(t, cfgFor(0, 1, clk))
		h1 := declareAll(t, declaredFirst)
		require.NoError(t, declaredFirst.Restore(context.Background(), chain(files...)))
		declaredAfter := bk.open(t, cfgFor(0, 1, clk))
		require.NoError(t, declaredAfter.Restore(context.Background(), chain(files...)))
		// Passed on through a full snapshot before being declared.
		carried := bk.open(t, cfgFor(0, 1, clk))
		require.NoError(t, carried.Restore(context.Background(), chain(snapshot(t, declaredAfter, 6, state.SnapshotOptions{Full: true}))))
		h2 := declareAll(t, declaredAfter)
		h3 := declareAll(t, carried)
		for _, k := range ks {
			check(t, declaredFirst, h1, m, k)
			check(t, declaredAfter, h2, m, k)
			check(t, carried, h3, m, k)
		}
	})
}

// On the heap a base follows once the deltas since the last one changed more
// keys than the state holds, so that a restore reads at most about twice the
// state.
func TestHeapBaseWhenDeltasOutgrowState(t *testing.T) {
	b := backends[0].open(t, cfgFor(0, 1, newClock()))
	v := must(state.NewValue[int](b, "v"))(t)
	ks := keys(100)
	touch := func(ks []string, x int) {
		for _, k := range ks {
			setKey(b, k)
			require.NoError(t, v.Update(x))
		}
	}
	touch(ks, 0)
	full := func(id int64) bool {
		s := must(b.Snapshot(id, state.SnapshotOptions{}))(t)
		defer s.Discard()
		return s.Full()
	}
	require.True(t, full(1), "the first snapshot is a base")
	touch(ks[:60], 1)
	require.False(t, full(2), "60 changes of 100 keys: a delta")
	touch(ks[:30], 2)
	require.False(t, full(3), "90 changes in the deltas: a delta")
	touch(ks[50:70], 3)
	require.True(t, full(4), "110 changes in the deltas, 100 keys: a base")
	touch(ks[:10], 4)
	require.False(t, full(5), "deltas count again from the base")
}

// Entries are copied before a change only while a snapshot that may read them
// is not written yet: once it is, they change in place again (the heap, where
// allocations can be counted: Badger allocates in the background).
func TestWrittenSnapshotReleasesEntries(t *testing.T) {
	clk := newClock()
	b := backends[0].open(t, cfgFor(0, 1, clk))
	pts := must(state.NewValue[[]point](b, "points"))(t)
	setKey(b, "k")
	require.NoError(t, pts.Update([]point{{X: 1}}))
	bump := func() {
		v, _ := get(pts.Get())(t)
		v[0].X++
		require.NoError(t, pts.Update(v))
	}
	capture := func(id int64) (*state.Snapshot, int64) {
		v, _ := get(pts.Get())(t) // (a read after the capture may copy)
		s := must(b.Snapshot(id, state.SnapshotOptions{Full: true}))(t)
		t.Cleanup(s.Discard) // a no-op once written
		return s, v[0].X
	}
	written := func(s *state.Snapshot) int64 {
		var buf bytes.Buffer
		_, err := s.Write(context.Background(), &buf)
		require.NoError(t, err)
		r := backends[0].open(t, cfgFor(0, 1, clk))
		rp := must(state.NewValue[[]point](r, "points"))(t)
		require.NoError(t, r.Restore(context.Background(), chain(buf.Bytes())))
		setKey(r, "k")
		v, _ := get(rp.Get())(t)
		setKey(b, "k")
		return v[0].X
	}
	// allocs counts the allocations of one call (AllocsPerRun would call f
	// once first, unmeasured).
	allocs := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs
	}
	bump() // the change list has room
	s, x := capture(1)
	require.NotZero(t, allocs(bump), "a change while the snapshot is pending copies")
	require.Equal(t, x, written(s), "the pending snapshot kept its value")
	s, _ = capture(2)
	_ = written(s)
	require.Zero(t, allocs(bump), "after the snapshot is written, the first change is in place")
	s, x = capture(3)
	bump()
	bump()
	require.Equal(t, x, written(s), "a new snapshot froze the entry again")
	s, _ = capture(4)
	s.Discard()
	require.Zero(t, allocs(bump), "a discarded snapshot releases it too")
}

// A key source defers computing the key to the first handle used after the
// source moved, calls it once however many handles are used, and never for
// a key no handle reads; the result is as after SetCurrentKey, and an
// explicit SetCurrentKey wins until the source moves again.
func TestSetKeySource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, bk backendKind) {
		b := bk.open(t, cfgFor(0, 1, newClock()))
		v := must(state.NewValue[string](b, "v"))(t)
		l := must(state.NewList[int](b, "l"))(t)
		calls := 0
		var key string
		var seq uint64
		buf := make([]byte, 0, 8)
		b.SetKeySource(&seq, func() (int, []byte) {
			calls++
			buf = append(buf[:0], key...) // one buffer, rewritten for every key
			return kgOf(key), buf
		})
		set := func(k string) { key = k; seq++ }

		require.ErrorIs(t, v.Update("before any key"), state.ErrNoCurrentKey)
		set("a")
		set("b") // no handle used: never computed
		require.Zero(t, calls)
		require.NoError(t, v.Update("x"))
		require.NoError(t, l.Add(1))
		_, _ = get(v.Get())(t)
		require.Equal(t, 1, calls, "computed once per key")

		set("c")
		require.NoError(t, v.Update("y"))
		require.Equal(t, 2, calls)
		setKey(b, "b") // explicit: wins until the source moves
		s, ok := get(v.Get())(t)
		require.True(t, ok)
		require.Equal(t, "x", s, "the backend copied the key before the buffer was reused")
		require.Equal(t, []int{1}, must(l.Get())(t))
		require.Equal(t, 2, calls)
		set("c")
		s, _ = get(v.Get())(t)
		require.Equal(t, "y", s)
		require.Equal(t, 3, calls)

		// A key group the backend does not own fails at first use, as with
		// SetCurrentKey.
		b2 := bk.open(t, cfgFor(0, 2, newClock()))
		v2 := must(state.NewValue[string](b2, "v"))(t)
		var other string
		for i := 0; ; i++ {
			if other = fmt.Sprint("k", i); !keygroup.RangeFor(0, 2, maxPar).Contains(kgOf(other)) {
				break
			}
		}
		var seq2 uint64
		b2.SetKeySource(&seq2, func() (int, []byte) { return kgOf(other), []byte(other) })
		seq2++
		require.ErrorIs(t, v2.Update("z"), state.ErrKeyGroupOutOfRange)
	})
}
