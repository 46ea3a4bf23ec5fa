package exchange

import (
	"context"
	"errors"
	"testing"
	"time"

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
		got[ch] = append(got[ch], m.Batch.Records...)
		n += m.Batch.Len()
		g.Recycle(ch, m.Batch)
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
			w, err := NewWriter([]Target[int]{{Gate: g, Channel: p}}, RoundRobin, 0, 128, 4)
			require.NoError(t, err)
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
	require.NoError(t, g.Send(ctx, 0, msg(1)))
	require.NoError(t, g.Send(ctx, 0, msg(2)))
	require.Equal(t, 2, g.Queued(0))
	errc := make(chan error)
	go func() { errc <- g.Send(ctx, 0, msg(3)) }()
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
	require.NoError(t, g.Send(ctx, 0, msg(1)))
	errc := make(chan error)
	go func() { errc <- g.Send(ctx, 0, msg(2)) }()
	got := drain(t, g, 2)
	require.NoError(t, <-errc)
	require.Equal(t, []int{1, 2}, got[0])
}

func TestBlockHoldsChannelBack(t *testing.T) {
	g := NewGate[int](2, 4, 1, nil)
	ctx := context.Background()
	require.NoError(t, g.Send(ctx, 0, msg(10)))
	require.NoError(t, g.Send(ctx, 1, msg(20)))
	g.Block(0)
	ch, m, ok := g.Poll()
	require.True(t, ok)
	require.Equal(t, 1, ch)
	require.Equal(t, []int{20}, m.Batch.Records)
	_, _, ok = g.Poll()
	require.False(t, ok, "blocked channel must not be polled")
	g.UnblockAll()
	ch, m, ok = g.Poll()
	require.True(t, ok)
	require.Equal(t, 0, ch)
	require.Equal(t, []int{10}, m.Batch.Records)
}

func msg(vs ...int) Message[int] { return Message[int]{Batch: &Batch[int]{Records: vs}} }

func TestRoundRobinAndBroadcast(t *testing.T) {
	g := NewGate[int](2, 8, 2, nil)
	ctx := context.Background()
	targets := []Target[int]{{Gate: g, Channel: 0}, {Gate: g, Channel: 1}}
	w, err := NewWriter(targets, RoundRobin, 1, 128, 2)
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		require.NoError(t, w.Write(ctx, i))
	}
	require.Equal(t, 1, w.Pending(), "4 waits for its batch to fill")
	require.NoError(t, w.Flush(ctx))
	require.Equal(t, 0, w.Pending())
	got := drain(t, g, 5)
	require.Equal(t, []int{1, 3}, got[0], "round-robin starts at the given target")
	require.Equal(t, []int{0, 2, 4}, got[1])
	require.Error(t, w.WriteKeyed(ctx, []int{1}, []uint16{0}), "a round-robin writer takes no key groups")

	b, err := NewWriter(targets, Broadcast, 0, 128, 2)
	require.NoError(t, err)
	require.NoError(t, b.Write(ctx, 9))
	require.Equal(t, 2, b.Pending())
	require.NoError(t, b.Flush(ctx))
	got = drain(t, g, 2)
	require.Equal(t, []int{9}, got[0])
	require.Equal(t, []int{9}, got[1])
}

// A keyed writer sends each record to the owner of its key group
// (kg*n/maxP), with its key group, in order per target.
func TestKeyedPartitionsByKeyGroup(t *testing.T) {
	const maxP, n = 8, 3
	g := NewGate[int](n, 64, 4, nil)
	ctx := context.Background()
	var targets []Target[int]
	for i := range n {
		targets = append(targets, Target[int]{Gate: g, Channel: i})
	}
	w, err := NewWriter(targets, Keyed, 0, maxP, 4)
	require.NoError(t, err)
	require.Error(t, w.Write(ctx, 1), "a keyed writer needs key groups")
	var recs []int
	var kgs []uint16
	for i := range 50 {
		recs = append(recs, i)
		kgs = append(kgs, uint16(i*5%maxP))
	}
	require.NoError(t, w.WriteKeyed(ctx, recs[:20], kgs[:20]))
	require.NoError(t, w.WriteKeyed(ctx, recs[20:], kgs[20:]))
	require.ErrorContains(t, w.WriteKeyed(ctx, []int{1, 2}, []uint16{1}), "2 records")
	before := w.Pending()
	require.ErrorContains(t, w.WriteKeyed(ctx, []int{1}, []uint16{maxP}), "key group 8 out of range")
	require.Equal(t, before, w.Pending(), "a refused record is not pending")
	require.NoError(t, w.Flush(ctx))
	require.Zero(t, w.Pending())

	want := map[int][]int{}
	wantKG := map[int][]uint16{}
	for i, r := range recs {
		o := int(kgs[i]) * n / maxP
		want[o] = append(want[o], r)
		wantKG[o] = append(wantKG[o], kgs[i])
	}
	got := map[int][]int{}
	gotKG := map[int][]uint16{}
	for seen := 0; seen < len(recs); {
		ch, m, ok := g.Poll()
		require.True(t, ok)
		require.Len(t, m.Batch.KeyGroups, m.Batch.Len(), "a keyed batch carries a key group per record")
		got[ch] = append(got[ch], m.Batch.Records...)
		gotKG[ch] = append(gotKG[ch], m.Batch.KeyGroups...)
		seen += m.Batch.Len()
		g.Recycle(ch, m.Batch)
	}
	require.Equal(t, want, got)
	require.Equal(t, wantKG, gotKG)
}

func TestNewWriterRefusesBadSettings(t *testing.T) {
	g := NewGate[int](2, 1, 1, nil)
	targets := []Target[int]{{Gate: g, Channel: 0}, {Gate: g, Channel: 1}}
	_, err := NewWriter[int](nil, RoundRobin, 0, 128, 1)
	require.ErrorContains(t, err, "without targets")
	_, err = NewWriter(targets, RoundRobin, 0, 128, 0)
	require.ErrorContains(t, err, "batch size 0")
	_, err = NewWriter(targets, Keyed, 0, 1, 1)
	require.ErrorContains(t, err, "1 key groups for 2 targets")
	_, err = NewWriter(targets, Mode(9), 0, 128, 1)
	require.ErrorContains(t, err, "unknown mode")
}

func TestRecycledBatchesAreReused(t *testing.T) {
	g := NewGate[int](1, 2, 4, nil)
	ctx := context.Background()
	w, err := NewWriter([]Target[int]{{Gate: g, Channel: 0}}, Keyed, 0, 128, 4)
	require.NoError(t, err)
	recs, kgs := []int{0, 1, 2, 3}, []uint16{5, 6, 7, 8}
	require.NoError(t, w.WriteKeyed(ctx, recs, kgs))
	_, m, ok := g.Poll()
	require.True(t, ok)
	g.Recycle(0, m.Batch)
	allocs := testing.AllocsPerRun(100, func() {
		_ = w.WriteKeyed(ctx, recs, kgs)
		_, m, _ := g.Poll()
		g.Recycle(0, m.Batch)
	})
	require.Zero(t, allocs)
}

// fakeRemote records what it is sent, copying the batches, and says it
// waited `wait` on each send.
type fakeRemote struct {
	wait    time.Duration
	recs    []int
	kgs     []uint16
	events  []Event
	batches map[*Batch[int]]bool
	err     error
}

func (f *fakeRemote) Send(_ context.Context, m Message[int]) (time.Duration, error) {
	if m.Batch != nil {
		f.recs = append(f.recs, m.Batch.Records...)
		f.kgs = append(f.kgs, m.Batch.KeyGroups...)
		f.batches[m.Batch] = true
	} else {
		f.events = append(f.events, m.Event)
	}
	return f.wait, f.err
}

// A remote target gets its records and events in order, in batches the
// writer reuses, and its waiting counts as backpressure; a local target of
// the same writer is served as before.
func TestRemoteTarget(t *testing.T) {
	g := NewGate[int](1, 64, 4, nil)
	r := &fakeRemote{wait: time.Millisecond, batches: map[*Batch[int]]bool{}}
	ctx := context.Background()
	w, err := NewWriter([]Target[int]{{Gate: g, Channel: 0}, {Remote: r}}, RoundRobin, 0, 128, 4)
	require.NoError(t, err)
	for i := range 40 {
		require.NoError(t, w.Write(ctx, i))
	}
	require.NoError(t, w.Write(ctx, 40))
	require.NoError(t, w.Write(ctx, 41))
	require.Equal(t, 2, w.Pending())
	require.NoError(t, w.Emit(ctx, Event{Kind: Barrier, Value: 3}))
	require.Zero(t, w.Pending())

	var want []int
	for i := 1; i < 42; i += 2 {
		want = append(want, i)
	}
	require.Equal(t, want, r.recs)
	require.Equal(t, []Event{{Kind: Barrier, Value: 3}}, r.events, "the event follows the flushed records")
	require.Len(t, r.batches, 1, "the writer reuses the one batch it sent remotely")
	require.Equal(t, 7*time.Millisecond, w.Blocked(), "6 batches and 1 event waited 1 ms each")
	for b := range r.batches {
		require.Zero(t, b.Len())
		require.Equal(t, make([]int, 4), b.Records[:4], "a kept batch pins no values")
	}
	got := drain(t, g, 22)
	require.Len(t, got[0], 22)
	require.Equal(t, -3, got[0][21])

	allocs := testing.AllocsPerRun(100, func() {
		_ = w.Write(ctx, 1)
		_ = w.Write(ctx, 2)
		_, m, ok := g.Poll()
		if ok {
			g.Recycle(0, m.Batch)
		}
	})
	require.Zero(t, allocs)
}

func TestKeyedRemoteTargetAndErrors(t *testing.T) {
	r := &fakeRemote{batches: map[*Batch[int]]bool{}}
	ctx := context.Background()
	w, err := NewWriter([]Target[int]{{Remote: r}}, Keyed, 0, 8, 2)
	require.NoError(t, err)
	require.NoError(t, w.WriteKeyed(ctx, []int{1, 2, 3}, []uint16{7, 6, 5}))
	require.NoError(t, w.Flush(ctx))
	require.Equal(t, []int{1, 2, 3}, r.recs)
	require.Equal(t, []uint16{7, 6, 5}, r.kgs)

	r.err = errors.New("link down")
	require.ErrorContains(t, w.WriteKeyed(ctx, []int{4, 5}, []uint16{1, 1}), "link down")
	require.ErrorContains(t, w.Emit(ctx, Event{Kind: EndOfInput}), "link down")

	_, err = NewWriter([]Target[int]{{Channel: 1}}, RoundRobin, 0, 8, 2)
	require.ErrorContains(t, err, "target 0 has neither a gate nor a remote")
}
