package state_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

type hiddenFields struct{ sum, n float64 }

type inner struct{ A int }

type withEmbedded struct {
	inner
	B     string
	cache map[string]int `msgpack:"-"`
	At    time.Time
}

// A struct with unexported fields would come back from a snapshot as zeros:
// the default codec refuses it at declaration instead.
func TestUnexportedFieldsAreRefusedNotSilentlyDropped(t *testing.T) {
	b, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: keygroup.Range{Start: 0, End: 128}})
	require.NoError(t, err)
	defer b.Close()
	_, err = state.NewValue[hiddenFields](b, "acc")
	require.ErrorIs(t, err, state.ErrUnsupportedType)
	require.ErrorContains(t, err, "field sum of state_test.hiddenFields is unexported")
	_, err = state.NewMap[string, []hiddenFields](b, "m")
	require.ErrorIs(t, err, state.ErrUnsupportedType)
}

func TestEmbeddedSkippedAndSelfEncodingFieldsRoundTrip(t *testing.T) {
	cfg := state.Config{OperatorUID: "op", KeyGroups: keygroup.Range{Start: 0, End: 128}}
	b, err := state.NewHeap(cfg)
	require.NoError(t, err)
	defer b.Close()
	v, err := state.NewValue[withEmbedded](b, "v")
	require.NoError(t, err)
	at := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	b.SetCurrentKey(3, []byte("k"))
	require.NoError(t, v.Update(withEmbedded{inner: inner{A: 7}, B: "b", cache: map[string]int{"x": 1}, At: at}))

	snap, err := b.Snapshot(1, state.SnapshotOptions{Full: true})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = snap.Write(context.Background(), &buf)
	require.NoError(t, err)
	b2, err := state.NewHeap(cfg)
	require.NoError(t, err)
	defer b2.Close()
	require.NoError(t, b2.Restore(context.Background(), state.Chain{&buf}))
	v2, err := state.NewValue[withEmbedded](b2, "v")
	require.NoError(t, err)
	b2.SetCurrentKey(3, []byte("k"))
	got, ok, err := v2.Get()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 7, got.A)
	require.Equal(t, "b", got.B)
	require.True(t, at.Equal(got.At))
	require.Nil(t, got.cache, "a field tagged msgpack:\"-\" is deliberately not saved")
}
