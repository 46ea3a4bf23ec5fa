package state

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
)

func testConfig() Config {
	return Config{OperatorUID: "op", KeyGroups: keygroup.Range{Start: 0, End: 128}}
}

func TestBadgerCacheIsBounded(t *testing.T) {
	bc := DefaultBadgerConfig(t.TempDir())
	bc.CacheEntries = 100
	bc.MaxDeltaKeys = 10
	b, err := NewBadger(testConfig(), bc)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	v, err := NewValue[string](b, "v")
	require.NoError(t, err)
	m, err := NewMap[int, int](b, "m")
	require.NoError(t, err)
	for i := range 5000 {
		k := []byte(fmt.Sprint("k", i%1000))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		old, _, err := v.Get()
		require.NoError(t, err)
		require.NoError(t, v.Update(old+"x"))
		require.NoError(t, m.Put(i%3, i))
		require.LessOrEqual(t, b.base().entries, bc.CacheEntries+1)
	}
	for i := range 1000 {
		k := []byte(fmt.Sprint("k", i))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		s, ok, err := v.Get()
		require.NoError(t, err)
		require.True(t, ok)
		require.Len(t, s, 5)
		n, err := m.Len()
		require.NoError(t, err)
		require.Equal(t, 3, n)
	}

	// More changed keys than MaxDeltaKeys: the next snapshot is a base.
	s, err := b.Snapshot(1, SnapshotOptions{})
	require.NoError(t, err)
	require.True(t, s.Full())
	s.Discard()
	for i := range 5 {
		k := []byte(fmt.Sprint("k", i))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		require.NoError(t, v.Update("y"))
	}
	s, err = b.Snapshot(2, SnapshotOptions{})
	require.NoError(t, err)
	require.False(t, s.Full())
	s.Discard()
	for i := range 50 {
		k := []byte(fmt.Sprint("k", i))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		require.NoError(t, v.Update("z"))
	}
	s, err = b.Snapshot(3, SnapshotOptions{})
	require.NoError(t, err)
	require.True(t, s.Full(), "50 changed keys > MaxDeltaKeys")
	s.Discard()
}

// FuzzRestore: no input makes Restore panic or succeed with garbage silently;
// any error leaves the backend empty.
func FuzzRestore(f *testing.F) {
	b, err := NewHeap(testConfig())
	require.NoError(f, err)
	v, _ := NewValue[int](b, "v")
	l, _ := NewList[string](b, "l")
	m, _ := NewMap[string, int](b, "m")
	for i := range 20 {
		k := []byte(fmt.Sprint(i))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		_ = v.Update(i)
		_ = l.Add("a", "b")
		_ = m.Put("x", i)
	}
	var base, delta bytes.Buffer
	s, _ := b.Snapshot(1, SnapshotOptions{})
	_, _ = s.Write(context.Background(), &base)
	_ = m.Remove("x")
	s, _ = b.Snapshot(2, SnapshotOptions{})
	_, _ = s.Write(context.Background(), &delta)
	f.Add(base.Bytes(), delta.Bytes())
	f.Add(base.Bytes()[:40], []byte{})
	f.Fuzz(func(t *testing.T, a, d []byte) {
		r, err := NewHeap(testConfig())
		require.NoError(t, err)
		_, _ = NewValue[int](r, "v")
		chain := Chain{bytes.NewReader(a)}
		if len(d) > 0 {
			chain = append(chain, bytes.NewReader(d))
		}
		if err := r.Restore(context.Background(), chain); err != nil {
			require.Zero(t, r.base().entries)
			require.Empty(t, r.base().pending)
		}
		require.NoError(t, r.Close())
	})
}

// With the real clock, Badger rows carry their expiry so compaction drops them.
func TestBadgerRowsExpireInBadger(t *testing.T) {
	bc := DefaultBadgerConfig(t.TempDir())
	bc.CacheEntries = 1
	b, err := NewBadger(testConfig(), bc)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	v, err := NewValue[int](b, "v", WithTTL(time.Hour, OnWrite))
	require.NoError(t, err)
	for i := range 3 {
		k := []byte(fmt.Sprint(i))
		b.SetCurrentKey(keygroup.Of(k, 128), k)
		require.NoError(t, v.Update(i))
	}
	st := b.base().store
	require.NoError(t, st.settle(b.base()))
	k := []byte("0")
	item, err := st.rtxn.Get(st.appendKey(nil, uint16(keygroup.Of(k, 128)), appendLenPrefixed(nil, []byte("v")), k))
	require.NoError(t, err)
	require.InDelta(t, time.Now().Add(time.Hour).Unix(), int64(item.ExpiresAt()), 2)
}

// A WithWriteThrough value leaves the cache once its batch is written, so
// that large values written once do not fill the cache, and reads back
// whole from the batch in flight or the store; a delta snapshot carries the
// values written through since the last one.
func TestWriteThroughLeavesTheCache(t *testing.T) {
	bc := DefaultBadgerConfig(t.TempDir())
	bc.CacheEntries = 100_000
	b, err := NewBadger(testConfig(), bc)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	v, err := NewValue[[]byte](b, "runs", WithWriteThrough())
	require.NoError(t, err)
	_, err = NewList[int](b, "l", WithWriteThrough())
	require.ErrorIs(t, err, ErrInvalidConfig)
	blob := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 8<<10) }
	key := func(i int) []byte { return fmt.Appendf(nil, "run-%d", i) }
	write := func(from, to int) {
		for i := from; i < to; i++ {
			b.SetCurrentKey(keygroup.Of(key(i), 128), key(i))
			require.NoError(t, v.Update(blob(i)))
		}
	}
	write(0, 2000) // 16 MB
	s1, err := b.Snapshot(1, SnapshotOptions{})
	require.NoError(t, err)
	var base bytes.Buffer
	_, err = s1.Write(context.Background(), &base)
	require.NoError(t, err)
	// The cache holds at most the last batch (spillBatchKeys).
	require.LessOrEqual(t, b.base().entries, spillBatchKeys)
	write(2000, 2500)
	s2, err := b.Snapshot(2, SnapshotOptions{})
	require.NoError(t, err)
	require.False(t, s2.Full())
	var delta bytes.Buffer
	_, err = s2.Write(context.Background(), &delta)
	require.NoError(t, err)
	require.Less(t, delta.Len(), base.Len()/2, "the delta holds the last 500 only")
	for i := range 2500 {
		b.SetCurrentKey(keygroup.Of(key(i), 128), key(i))
		got, ok, err := v.Get()
		require.NoError(t, err)
		require.True(t, ok, "run %d", i)
		require.Equal(t, blob(i), got, "run %d", i)
		require.NoError(t, v.Clear())
	}

	h, err := NewHeap(testConfig())
	require.NoError(t, err)
	require.NoError(t, h.Restore(context.Background(), Chain{&base, &delta}))
	hv, err := NewValue[[]byte](h, "runs", WithWriteThrough())
	require.NoError(t, err)
	for i := range 2500 {
		h.SetCurrentKey(keygroup.Of(key(i), 128), key(i))
		got, ok, err := hv.Get()
		require.NoError(t, err)
		require.True(t, ok, "run %d on the heap", i)
		require.Equal(t, blob(i), got, "run %d on the heap", i)
	}
}
