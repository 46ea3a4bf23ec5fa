package exchange

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func drain(t *testing.T, g *Gate[int], want int) map[int][]int {
	t.Helper()
	got := map[int][]int{}
	n := 0
	ctx := context.Background()
	for n < want {
		ch, m, ok := g.Poll()
		if !ok {
			require.NoError(t, g.Wait(ctx))
			continue
		}
		if m.Event.Kind != NoEvent {
			got[ch] = append(got[ch], -int(m.Event.Value))
			n++
			continue
		}
		got[ch] = append(got[ch], m.Records...)
		n += len(m.Records)
		g.Recycle(ch, m.Records)
	}
	return got
}

func TestOrderPerChannelAndEventsFollowRecords(t *testing.T) {
	g := NewGate[int](3, 2, 4, nil)
	ctx := context.Background()
	done := make(chan struct{})
	for p := 0; p < 3; p++ {
		go func(p int) {
			defer func() { done <- struct{}{} }()
			w := NewWriter([]Target[int]{{g, p}}, nil, false, 4)
			for i := 0; i < 1000; i++ {
				require.NoError(t, w.Write(ctx, i))
			}
			require.NoError(t, w.Emit(ctx, Event{Kind: Watermark, Value: 7}))
		}(p)
	}
	got := drain(t, g, 3*1001)
	for range 3 {
		<-done
	}
	for p := 0; p < 3; p++ {
		require.Len(t, got[p], 1001)
		for i := 0; i < 1000; i++ {
			require.Equal(t, i, got[p][i])
		}
		require.Equal(t, -7, got[p][1000], "event must follow the records written before it")
	}
}

func TestSendBlocksWhenFullAndCancelReleases(t *testing.T) {
	g := NewGate[int](1, 2, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.Send(ctx, 0, Message[int]{Records: []int{1}}))
	require.NoError(t, g.Send(ctx, 0, Message[int]{Records: []int{2}}))
	require.Equal(t, 2, g.Queued(0))
	errc := make(chan error)
	go func() { errc <- g.Send(ctx, 0, Message[int]{Records: []int{3}}) }()
	select {
	case err := <-errc:
		t.Fatalf("send on a full channel returned %v", err)
	default:
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, 2, g.Queued(0), "a cancelled send adds nothing")
	require.ErrorIs(t, g.Wait(ctx), context.Canceled)
}

func TestFullChannelResumesAfterPoll(t *testing.T) {
	g := NewGate[int](1, 1, 1, nil)
	ctx := context.Background()
	require.NoError(t, g.Send(ctx, 0, Message[int]{Records: []int{1}}))
	errc := make(chan error)
	go func() { errc <- g.Send(ctx, 0, Message[int]{Records: []int{2}}) }()
	got := drain(t, g, 2)
	require.NoError(t, <-errc)
	require.Equal(t, []int{1, 2}, got[0])
}

func TestBlockHoldsChannelBack(t *testing.T) {
	g := NewGate[int](2, 4, 1, nil)
	ctx := context.Background()
	require.NoError(t, g.Send(ctx, 0, Message[int]{Records: []int{10}}))
	require.NoError(t, g.Send(ctx, 1, Message[int]{Records: []int{20}}))
	g.Block(0)
	ch, m, ok := g.Poll()
	require.True(t, ok)
	require.Equal(t, 1, ch)
	require.Equal(t, []int{20}, m.Records)
	_, _, ok = g.Poll()
	require.False(t, ok, "blocked channel must not be polled")
	g.UnblockAll()
	ch, m, ok = g.Poll()
	require.True(t, ok)
	require.Equal(t, 0, ch)
	require.Equal(t, []int{10}, m.Records)
}

func TestPartitionAndBroadcast(t *testing.T) {
	g := NewGate[int](2, 8, 2, nil)
	ctx := context.Background()
	targets := []Target[int]{{g, 0}, {g, 1}}
	w := NewWriter(targets, func(e int, n int) int { return e % n }, false, 2)
	for i := 0; i < 6; i++ {
		require.NoError(t, w.Write(ctx, i))
	}
	require.Equal(t, 2, w.Pending(), "4 and 5 wait for their batches to fill")
	require.NoError(t, w.Flush(ctx))
	require.Equal(t, 0, w.Pending())
	got := drain(t, g, 6)
	require.Equal(t, []int{0, 2, 4}, got[0])
	require.Equal(t, []int{1, 3, 5}, got[1])

	b := NewWriter(targets, nil, true, 2)
	require.NoError(t, b.Write(ctx, 9))
	require.Equal(t, 2, b.Pending())
	require.NoError(t, b.Flush(ctx))
	got = drain(t, g, 2)
	require.Equal(t, []int{9}, got[0])
	require.Equal(t, []int{9}, got[1])
}

func TestRecycledBatchesAreReused(t *testing.T) {
	g := NewGate[int](1, 2, 4, nil)
	ctx := context.Background()
	w := NewWriter([]Target[int]{{g, 0}}, nil, false, 4)
	for i := 0; i < 4; i++ {
		require.NoError(t, w.Write(ctx, i))
	}
	_, m, ok := g.Poll()
	require.True(t, ok)
	g.Recycle(0, m.Records)
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 4; i++ {
			_ = w.Write(ctx, i)
		}
		_, m, _ := g.Poll()
		g.Recycle(0, m.Records)
	})
	require.Zero(t, allocs)
}
