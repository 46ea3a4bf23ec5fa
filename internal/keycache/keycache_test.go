package keycache_test

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keycache"
	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

var testConfig = state.Config{OperatorUID: "op", KeyGroups: keygroup.Range{Start: 0, End: 128}, MaxParallelism: 128}

// newBackend returns a Badger backend: in front of it, the cache is
// bounded (it does not own its values).
func newBackend(t *testing.T) state.Backend {
	t.Helper()
	b, err := state.NewBadger(testConfig, state.BadgerConfig{Dir: t.TempDir(), CacheEntries: 1000})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// In front of the heap backend the cache owns its values: it is never
// full, and what an operator takes out of keyed state comes back at Flush.
func TestCacheOwnsValuesOfAnInMemoryBackend(t *testing.T) {
	b, err := state.NewHeap(testConfig)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	require.True(t, state.InMemory(b))
	require.False(t, state.InMemory(newBackend(t)))
	v, err := state.NewValue[int](b, "v")
	require.NoError(t, err)
	for k, x := range map[string]int{"a": 1, "b": 2} {
		b.SetCurrentKey(0, []byte(k))
		require.NoError(t, v.Update(x))
	}
	c := keycache.New[string, int](b, 128, 1)
	require.True(t, c.Owns())
	for _, k := range []string{"a", "b", "c"} {
		require.False(t, c.Full(), "a cache that owns its values has no bound")
		c.SetCurrentKey(k)
		x, ok, err := v.Get()
		require.NoError(t, err)
		if ok {
			require.NoError(t, v.Clear()) // taken out
		}
		e := c.Put(k, x)
		e.Dirty = ok
	}
	c.Get("a").Value = 10
	for _, k := range []string{"a", "b"} {
		c.SetCurrentKey(k)
		_, ok, err := v.Get()
		require.NoError(t, err)
		require.False(t, ok, "%s is held by the cache alone", k)
	}
	require.NoError(t, c.Flush(func(e *keycache.Entry[string, int]) error { return v.Update(e.Value) }))
	for k, want := range map[string]int{"a": 10, "b": 2} {
		c.SetCurrentKey(k)
		got, ok, err := v.Get()
		require.NoError(t, err)
		require.True(t, ok, k)
		require.Equal(t, want, got, k)
	}
	c.SetCurrentKey("c")
	_, ok, err := v.Get()
	require.NoError(t, err)
	require.False(t, ok, "c had no value")
}

func TestCacheWritesBackDirtyEntriesAndEmpties(t *testing.T) {
	b := newBackend(t)
	v, err := state.NewValue[int](b, "v")
	require.NoError(t, err)
	c := keycache.New[string, int](b, 128, 3)
	require.True(t, c.On())
	for _, k := range []string{"a", "b", "c"} {
		require.Nil(t, c.Get(k))
		e := c.Put(k, len(k))
		e.Value, e.Dirty = e.Value*10, k != "b" // b is read, not changed
	}
	for range 5 { // hits outnumber the misses: the cache stays on, and does not grow
		require.Equal(t, 10, c.Get("a").Value)
	}
	require.True(t, c.Full())
	var order []string
	require.NoError(t, c.Flush(func(e *keycache.Entry[string, int]) error {
		order = append(order, e.Key)
		return v.Update(e.Value)
	}))
	require.Equal(t, []string{"a", "c"}, order, "dirty entries, in the order they were cached")
	require.Zero(t, c.Len())
	require.True(t, c.On())
	require.Nil(t, c.Get("a"), "emptied")
	for k, want := range map[string]int{"a": 10, "c": 10} {
		c.SetCurrentKey(k)
		got, ok, err := v.Get()
		require.NoError(t, err)
		require.True(t, ok, k)
		require.Equal(t, want, got, k)
	}
	c.SetCurrentKey("b")
	_, ok, err := v.Get()
	require.NoError(t, err)
	require.False(t, ok, "b was not dirty: not written")
}

// A cache that misses more than it hits turns itself off at its next flush.
func TestCacheThatMissesTurnsOff(t *testing.T) {
	c := keycache.New[int64, int](newBackend(t), 128, 10)
	for k := range int64(4) {
		require.Nil(t, c.Get(k))
		c.Put(k, 0)
	}
	require.NoError(t, c.Flush(func(*keycache.Entry[int64, int]) error { return nil }))
	require.False(t, c.On())
	require.NoError(t, c.Flush(func(*keycache.Entry[int64, int]) error { return nil }), "flushing an off cache is harmless")
	var nilCache *keycache.Cache[int64, int]
	require.False(t, nilCache.On())
	require.NoError(t, nilCache.Flush(nil))
}

func TestNewRefusesWhatCannotBeCached(t *testing.T) {
	b := newBackend(t)
	require.Nil(t, keycache.New[float64, int](b, 128, 10), "NaN is not equal to itself")
	require.Nil(t, keycache.New[string, int](b, 128, 0), "no room")
	require.NotNil(t, keycache.New[[2]int32, int](b, 128, 10))
}

// lowerName encodes lower-cased: "A" and "a" are one key in keyed state.
type lowerName string

func (n lowerName) EncodeMsgpack(e *msgpack.Encoder) error {
	return e.EncodeString(strings.ToLower(string(n)))
}

func TestCacheable(t *testing.T) {
	type plain struct {
		A string
		B int64
	}
	type tagged struct {
		A string `msgpack:"a"`
	}
	type hidden struct{ a int }
	type nested struct {
		P plain
		C [3]uint8
	}
	type withPtr struct{ P *int }
	type withCustom struct{ N lowerName }
	for _, c := range []struct {
		v    any
		want bool
	}{
		{"", true}, {int8(0), true}, {uint64(0), true}, {true, true},
		{[4]int16{}, true}, {plain{}, true}, {nested{}, true},
		{0.5, false}, {float32(0), false}, {tagged{}, false}, {hidden{}, false}, {withPtr{}, false},
		{[2]float64{}, false}, {any(nil), false},
		{lowerName(""), false}, {withCustom{}, false}, {[2]lowerName{}, false},
	} {
		typ := reflect.TypeOf(c.v)
		if typ == nil {
			typ = reflect.TypeFor[any]()
		}
		require.Equal(t, c.want, keycache.Cacheable(typ), "%v", typ)
	}
}

// A cache that fills up while it misses grows 4 times in place, keeping
// its entries, up to Growth times its first size; full there, and still
// missing, its flush turns it off.
func TestCacheThatFillsAndMissesGrows(t *testing.T) {
	b := newBackend(t)
	v, err := state.NewValue[int64](b, "v")
	require.NoError(t, err)
	c := keycache.New[int64, int64](b, 128, 2)
	write := func(e *keycache.Entry[int64, int64]) error { return v.Update(e.Value) }
	next := int64(0)
	fill := func() int { // misses new keys until the cache is full; returns how many it took
		n := 0
		for !c.Full() {
			require.Nil(t, c.Get(next))
			c.Put(next, next).Dirty = true
			next++
			n++
		}
		return n
	}
	require.Equal(t, 32, fill(), "grows 4x in place to Growth (16) x 2")
	for k := range next {
		require.NotNil(t, c.Get(k), "growing kept key %d", k)
	}
	for k := next; k < next+40; k++ { // more misses than hits
		require.Nil(t, c.Get(k))
	}
	require.True(t, c.Full())
	require.NoError(t, c.Flush(write))
	require.Zero(t, c.Len())
	require.False(t, c.On(), "full at its largest and missing: turned off")
	for k := range next { // every value was written back on the way
		c.SetCurrentKey(k)
		got, ok, err := v.Get()
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, k, got)
	}
}

// A cache that hits keeps its size: only missing costs growth.
func TestCacheThatHitsKeepsItsSize(t *testing.T) {
	c := keycache.New[int64, int](newBackend(t), 128, 2)
	for range 3 {
		for k := range int64(2) {
			require.Nil(t, c.Get(k))
			c.Put(k, 0)
			for range 2 {
				require.NotNil(t, c.Get(k))
			}
		}
		require.True(t, c.Full())
		require.NoError(t, c.Flush(func(*keycache.Entry[int64, int]) error { return nil }))
		require.True(t, c.On())
	}
	for k := range int64(2) {
		c.Put(k, 0)
	}
	require.True(t, c.Full(), "still 2 keys")
}

// Prefetch changes nothing: not the entries, nor the hit and miss counts
// that decide whether Flush turns the cache off (here many prefetched keys
// that are not cached would have been misses enough to turn it off).
func TestPrefetchChangesNothing(t *testing.T) {
	b, err := state.NewHeap(testConfig)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	c := keycache.New[int64, int64](b, 128, 1)
	const n = 1 << 16
	for k := range int64(n) {
		c.SetCurrentKey(k)
		c.Put(k, k*2)
	}
	absent := make([]int64, 0, 256)
	for k := range int64(256) {
		absent = append(absent, n+k)
	}
	present := []int64{0, 7, n - 1}
	for range 3 * n / 256 {
		c.Prefetch(absent)
		c.Prefetch(present)
	}
	require.Equal(t, n, c.Len())
	for k := range int64(n) {
		e := c.Get(k)
		require.NotNil(t, e)
		require.Equal(t, k*2, e.Value)
		require.False(t, e.Dirty)
	}
	require.NoError(t, c.Flush(func(*keycache.Entry[int64, int64]) error { return nil }))
	require.True(t, c.On(), "the prefetched keys did not count as misses")
	var off *keycache.Cache[int64, int64]
	off.Prefetch(present) // a nil cache is off
}

// Uncached gives, as the backend knows them, the keys the cache does not
// hold that keep keeps, in order, and counts no hit or miss.
func TestUncachedGivesTheKeysNotHeld(t *testing.T) {
	b := newBackend(t)
	c := keycache.New[int64, int64](b, 128, 1<<17)
	const n = 1 << 16 // past minPrefetchKeys: the held entries are touched too
	for k := range int64(n) {
		c.SetCurrentKey(k)
		c.Put(k, k)
	}
	enc := keygroup.EncoderFor[int64]()
	keys := []int64{3, n + 5, 9, n + 1, n + 5, -2}
	got := c.Uncached(keys, nil)
	var want []state.Key
	for _, k := range []int64{n + 5, n + 1, n + 5, -2} {
		e := enc(nil, k)
		want = append(want, state.Key{Group: keygroup.Of(e, 128), Enc: e})
	}
	require.Equal(t, want, got)
	odd := func(e []byte) bool { return e[len(e)-1]%2 == 1 }
	got = c.Uncached(keys, odd)
	require.Equal(t, []state.Key{want[0], want[1], want[2]}, got, "keep leaves out -2")
	require.NoError(t, c.Flush(func(*keycache.Entry[int64, int64]) error { return nil }))
	require.True(t, c.On(), "no misses counted")
	var off *keycache.Cache[int64, int64]
	require.Nil(t, off.Uncached(keys, nil))
}

// A cache that grows past the keys its first index holds moves them to a
// compact one and finds every key, before and after it is emptied.
func TestCacheFindsEveryKeyAsItsIndexGrows(t *testing.T) {
	b, err := state.NewHeap(testConfig)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	c := keycache.New[int64, int64](b, 128, 1)
	const n = 300_000
	for round := range 2 {
		for k := range int64(n) {
			require.Nil(t, c.Get(k*7))
			c.SetCurrentKey(k * 7)
			c.Put(k*7, k+int64(round))
		}
		for k := range int64(n) {
			e := c.Get(k * 7)
			require.NotNil(t, e, "key %d", k*7)
			require.Equal(t, k+int64(round), e.Value)
		}
		require.Len(t, c.Uncached([]int64{0, 1, 7 * (n - 1), 7 * n}, nil), 2)
		require.True(t, c.On(), "as many hits as misses")
		require.NoError(t, c.Flush(func(*keycache.Entry[int64, int64]) error { return nil }))
	}
}

// A buffer is full at its size whatever its misses, in front of either
// backend, and never turns off; Drain hands over every entry with its key
// group and encoding, and empties it.
func TestBufferDrainsEveryEntry(t *testing.T) {
	heap, err := state.NewHeap(testConfig)
	require.NoError(t, err)
	t.Cleanup(func() { heap.Close() })
	for _, b := range []state.Backend{heap, newBackend(t)} {
		c := keycache.NewBuffer[int64, int](b, 128, 100)
		require.False(t, c.Owns())
		enc := keygroup.EncoderFor[int64]()
		for round := range 3 {
			for k := range int64(100) {
				require.False(t, c.Full())
				require.Nil(t, c.Get(k+int64(round)*1000), "every lookup misses")
				c.Put(k+int64(round)*1000, int(k))
			}
			require.True(t, c.Full(), "a buffer does not grow")
			got := map[int64]int{}
			require.NoError(t, c.Drain(func(e *keycache.Entry[int64, int], kg int, b []byte) error {
				want := enc(nil, e.Key)
				require.Equal(t, want, b)
				require.Equal(t, keygroup.Of(want, 128), kg)
				got[e.Key] = e.Value
				return nil
			}))
			require.Len(t, got, 100)
			require.Equal(t, 0, c.Len())
			require.True(t, c.On(), "a buffer that missed stays on")
		}
	}
}

// Retain keeps the entries it is told to, in order, findable by key, and
// drops the others, below and above the size at which the index changes.
func TestRetainKeepsWhatItIsTold(t *testing.T) {
	heap, err := state.NewHeap(testConfig)
	require.NoError(t, err)
	t.Cleanup(func() { heap.Close() })
	for _, n := range []int64{100, 300_000} {
		c := keycache.NewBuffer[int64, int64](heap, 128, math.MaxInt32)
		for k := range n {
			c.Put(k, k*10)
		}
		c.Retain(func(e *keycache.Entry[int64, int64]) bool { return e.Key%3 == 0 })
		require.Equal(t, int((n+2)/3), c.Len())
		var order []int64
		require.NoError(t, c.Range(func(e *keycache.Entry[int64, int64]) error {
			order = append(order, e.Key)
			return nil
		}))
		require.True(t, slices.IsSorted(order), "in the order cached")
		for k := range n {
			e := c.Get(k)
			if k%3 != 0 {
				require.Nil(t, e, "key %d dropped", k)
				continue
			}
			require.NotNil(t, e, "key %d kept", k)
			require.Equal(t, k*10, e.Value)
		}
		// keys dropped come back as new entries
		e := c.Put(1, 7)
		require.Equal(t, int64(7), e.Value)
		require.Equal(t, int64(7), c.Get(1).Value)
		kg, enc := c.Encode(1)
		require.Equal(t, keygroup.EncoderFor[int64]()(nil, 1), enc)
		require.Equal(t, keygroup.Of(enc, 128), kg)
	}
}
