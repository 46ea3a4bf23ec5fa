package dataflow

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicedata/sluice/internal/keygroup"
	"github.com/sluicedata/sluice/state"
)

// firedTimer is one OnTimer call.
type firedTimer struct {
	Key    string
	Time   Timestamp
	Domain TimeDomain
}

// timerRecorder records the timers that fire and runs a hook for each.
type timerRecorder struct {
	fired []firedTimer
	hook  func(key string, t Timer)
}

func (r *timerRecorder) OnTimer(key string, t Timer) error {
	r.fired = append(r.fired, firedTimer{key, t.Time, t.Domain})
	if r.hook != nil {
		r.hook(key, t)
	}
	return nil
}

func newTestTimers(t *testing.T, rng keygroup.Range) (*keyedTimers[string], *timerRecorder) {
	t.Helper()
	be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: rng})
	require.NoError(t, err)
	t.Cleanup(func() { be.Close() })
	rec := &timerRecorder{}
	return newKeyedTimers[string](be, rec, nil, keygroup.DefaultMaxParallelism), rec
}

// at makes key current, as the runtime does before a record or a timer.
func at[K comparable](s *keyedTimers[K], key K) *keyedTimers[K] {
	enc := keygroup.EncoderFor[K]()(nil, key)
	s.setCurrent(key, enc, keygroup.Of(enc, keygroup.DefaultMaxParallelism))
	return s
}

var allGroups = keygroup.Range{Start: 0, End: keygroup.DefaultMaxParallelism}

// Timers fire in time order, ties in the order of the keys' encodings, once
// per (key, time, domain).
func TestTimersOrderAndDedup(t *testing.T) {
	s, rec := newTestTimers(t, allGroups)
	at(s, "b").RegisterEventTimeTimer(20)
	at(s, "a").RegisterEventTimeTimer(20)
	at(s, "c").RegisterEventTimeTimer(10)
	at(s, "ab").RegisterEventTimeTimer(20)
	at(s, "a").RegisterEventTimeTimer(20) // again: nothing
	at(s, "a").RegisterProcessingTimeTimer(20)
	require.Equal(t, 5, s.event.n+s.proc.n)

	require.NoError(t, s.fireEvent(15))
	require.Equal(t, []firedTimer{{"c", 10, EventTime}}, rec.fired)
	require.NoError(t, s.fireEvent(20))
	require.Equal(t, []firedTimer{{"c", 10, EventTime}, {"a", 20, EventTime}, {"ab", 20, EventTime}, {"b", 20, EventTime}}, rec.fired)
	next, ok := s.nextProcessing()
	require.True(t, ok)
	require.Equal(t, Timestamp(20), next)
	require.NoError(t, s.fireProcessing(20))
	require.Equal(t, firedTimer{"a", 20, ProcessingTime}, rec.fired[len(rec.fired)-1])
	_, ok = s.nextProcessing()
	require.False(t, ok)
	require.Zero(t, s.event.n+s.proc.n)
}

// Deleted timers do not fire, also when deleted by another timer firing at
// the same time; a deleted and re-registered timer fires once.
func TestTimersDeleteWhileFiring(t *testing.T) {
	s, rec := newTestTimers(t, allGroups)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		at(s, k).RegisterEventTimeTimer(10)
	}
	at(s, "e").DeleteEventTimeTimer(10)
	at(s, "e").DeleteEventTimeTimer(10) // not pending: nothing
	rec.hook = func(key string, _ Timer) {
		if key == "a" {
			at(s, "c").DeleteEventTimeTimer(10)
			at(s, "d").DeleteEventTimeTimer(10)
			at(s, "d").RegisterEventTimeTimer(10) // pending again, in its place
		}
	}
	require.NoError(t, s.fireEvent(10))
	require.Equal(t, []firedTimer{{"a", 10, EventTime}, {"b", 10, EventTime}, {"d", 10, EventTime}}, rec.fired)
	require.Zero(t, s.event.n)
}

// A timer registered while its time fires: a pending one is not duplicated;
// one that already fired fires again, after the others of its time; one for
// an earlier time fires next.
func TestTimersRegisterWhileFiring(t *testing.T) {
	s, rec := newTestTimers(t, allGroups)
	for _, k := range []string{"a", "b", "c"} {
		at(s, k).RegisterEventTimeTimer(10)
	}
	once := map[string]bool{}
	rec.hook = func(key string, tm Timer) {
		if once[key] {
			return
		}
		once[key] = true
		switch key {
		case "a":
			at(s, "c").RegisterEventTimeTimer(10) // pending: nothing
			at(s, "a").RegisterEventTimeTimer(10) // fired: again, after c
		case "b":
			at(s, "z").RegisterEventTimeTimer(5) // earlier: next
		}
		at(s, key) // the key is current again, as in OnTimer
	}
	require.NoError(t, s.fireEvent(10))
	require.Equal(t, []firedTimer{{"a", 10, EventTime}, {"b", 10, EventTime}, {"z", 5, EventTime}, {"c", 10, EventTime}, {"a", 10, EventTime}},
		rec.fired)
	require.Zero(t, s.event.n)
	require.Empty(t, s.event.firing)
}

// A snapshot holds the timers as they were when it was taken, whatever
// happens before it is written, and restores into another subtask's key
// groups only.
func TestTimersSnapshotIsolatedAndRestoredByKeyGroup(t *testing.T) {
	s, _ := newTestTimers(t, allGroups)
	want := map[firedTimer]bool{}
	for i := range 200 {
		k := fmt.Sprintf("key-%d", i)
		tm := Timestamp(10 * (i%3 + 1))
		at(s, k).RegisterEventTimeTimer(tm)
		want[firedTimer{k, tm, EventTime}] = true
		if i%10 == 0 {
			at(s, k).RegisterProcessingTimeTimer(1000)
			want[firedTimer{k, 1000, ProcessingTime}] = true
		}
	}
	snap, err := s.snapshot()
	require.NoError(t, err)
	// Change everything after the capture: fire, delete, add.
	at(s, "key-1").DeleteEventTimeTimer(20)
	at(s, "new").RegisterEventTimeTimer(20)
	at(s, "new").RegisterProcessingTimeTimer(1000)
	require.NoError(t, s.fireEvent(10))
	var buf bytes.Buffer
	n, err := snap.write(context.Background(), &buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)

	restoreAll := func(rng keygroup.Range) map[firedTimer]bool {
		r, rec := newTestTimers(t, rng)
		require.NoError(t, r.restore(bytes.NewReader(buf.Bytes()), rng, allGroups))
		require.NoError(t, r.fireEvent(MaxWatermark))
		require.NoError(t, r.fireProcessing(MaxWatermark))
		got := map[firedTimer]bool{}
		for _, f := range rec.fired {
			require.False(t, got[f], "fired twice: %v", f)
			got[f] = true
		}
		return got
	}
	require.Equal(t, want, restoreAll(allGroups))
	// Two subtasks split the timers by key group.
	lo, hi := keygroup.RangeFor(0, 2, 128), keygroup.RangeFor(1, 2, 128)
	a, b := restoreAll(lo), restoreAll(hi)
	require.Equal(t, len(want), len(a)+len(b))
	for f := range a {
		require.True(t, lo.Contains(keygroup.Of([]byte(f.Key), 128)), f.Key)
	}
	for f := range b {
		require.True(t, hi.Contains(keygroup.Of([]byte(f.Key), 128)), f.Key)
	}
}

// Snapshots of version 1 (msgpack rows) still restore.
func TestTimersRestoreVersion1(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString(timerFileMagic)
	buf.WriteByte(1)
	enc := msgpack.NewEncoder(&buf)
	require.NoError(t, enc.EncodeInt(2))
	for _, row := range []timerRow[string]{
		{Domain: uint8(EventTime), KG: uint16(keygroup.Of([]byte("x"), 128)), Time: 7, Enc: []byte("x"), Key: "x"},
		{Domain: uint8(ProcessingTime), KG: uint16(keygroup.Of([]byte("y"), 128)), Time: 9, Enc: []byte("y"), Key: "y"},
	} {
		require.NoError(t, enc.Encode(&row))
	}
	s, rec := newTestTimers(t, allGroups)
	require.NoError(t, s.restore(bytes.NewReader(buf.Bytes()), allGroups, allGroups))
	require.NoError(t, s.fireEvent(MaxWatermark))
	require.NoError(t, s.fireProcessing(MaxWatermark))
	require.Equal(t, []firedTimer{{"x", 7, EventTime}, {"y", 9, ProcessingTime}}, rec.fired)
}

// A truncated or padded snapshot fails with an error, never half restored
// silently.
func TestTimersRestoreDamaged(t *testing.T) {
	s, _ := newTestTimers(t, allGroups)
	for i := range 50 {
		at(s, fmt.Sprint(i)).RegisterEventTimeTimer(Timestamp(i % 4))
	}
	snap, err := s.snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = snap.write(context.Background(), &buf)
	require.NoError(t, err)
	full := buf.Bytes()
	for _, cut := range []int{3, len(timerFileMagic) + 1, len(timerFileMagic) + 3, len(full) / 2, len(full) - 1} {
		r, _ := newTestTimers(t, allGroups)
		err := r.restore(bytes.NewReader(full[:cut]), allGroups, allGroups)
		require.Error(t, err, "cut at %d of %d", cut, len(full))
		require.ErrorContains(t, err, "timers:")
	}
	r, _ := newTestTimers(t, allGroups)
	require.ErrorContains(t, r.restore(io.MultiReader(bytes.NewReader(full), bytes.NewReader([]byte{0})), allGroups, allGroups), "after the last timer")
	bad := append([]byte(nil), full...)
	bad[len(timerFileMagic)] = 9
	require.ErrorContains(t, r.restore(bytes.NewReader(bad), allGroups, allGroups), "version 9")
}

// Registering an existing timer allocates nothing, and firing a million
// timers of one time is fast (sorted once, not a heap operation each).
func TestTimersRegisterExistingDoesNotAllocate(t *testing.T) {
	s, _ := newTestTimers(t, allGroups)
	at(s, "k").RegisterEventTimeTimer(10)
	require.Zero(t, testing.AllocsPerRun(100, func() { s.RegisterEventTimeTimer(10) }))
}

func BenchmarkTimersTumbling(b *testing.B) {
	be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
	require.NoError(b, err)
	defer be.Close()
	var fired int
	s := newKeyedTimers[int64](be, timerFunc[int64](func(int64, Timer) error { fired++; return nil }), nil, keygroup.DefaultMaxParallelism)
	const keys = 100_000
	for i := 0; b.Loop(); i++ {
		w := Timestamp(i/keys + 1)
		at(s, int64(i%keys)).RegisterEventTimeTimer(w)
		if i%keys == keys-1 {
			require.NoError(b, s.fireEvent(w))
		}
	}
	b.ReportMetric(float64(fired), "fired")
}

type timerFunc[K comparable] func(K, Timer) error

func (f timerFunc[K]) OnTimer(k K, t Timer) error { return f(k, t) }

// sortTimerItems orders many timers (radix on the prefixes, then runs of
// equal prefixes) as a comparison of the whole encoded keys does.
func TestSortTimerItemsMatchesComparisonSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 5, radixSortMin - 1, radixSortMin, 5000} {
		// The shapes vary in the number of prefix bytes that differ, so in
		// the number of radix passes: odd and even.
		for _, shape := range []string{"int", "int-1-byte", "int-3-bytes", "short", "shared-prefix", "mixed"} {
			var items []timerItem[int]
			seen := map[string]bool{}
			for len(items) < n {
				var enc []byte
				switch shape {
				case "int":
					enc = keygroup.EncoderFor[int64]()(nil, r.Int64N(1<<20)-1<<19)
				case "int-1-byte":
					enc = keygroup.EncoderFor[int64]()(nil, r.Int64N(256))
				case "int-3-bytes":
					enc = keygroup.EncoderFor[int64]()(nil, r.Int64N(1<<24))
				case "short":
					enc = make([]byte, r.IntN(4))
					for i := range enc {
						enc[i] = byte(r.IntN(3))
					}
				case "shared-prefix":
					enc = append([]byte("video-00"), fmt.Sprint(r.IntN(100_000))...)
				case "mixed":
					enc = make([]byte, r.IntN(12))
					for i := range enc {
						enc[i] = byte(r.IntN(256))
					}
				}
				if seen[string(enc)] {
					if shape == "short" && len(seen) >= 40 || shape == "int-1-byte" && len(seen) >= 256 {
						break // every short key is taken
					}
					continue
				}
				seen[string(enc)] = true
				var p [8]byte
				copy(p[:], enc)
				items = append(items, timerItem[int]{p: binary.BigEndian.Uint64(p[:]), enc: string(enc), v: timerVal[int]{key: len(items)}})
			}
			want := slices.Clone(items)
			slices.SortFunc(want, func(a, b timerItem[int]) int { return strings.Compare(a.enc, b.enc) })
			var scratch []timerItem[int]
			sortTimerItems(items, &scratch)
			require.Equal(t, want, items, "%d %s keys", n, shape)
		}
	}
}

// firedInt is one OnTimer call of an int64-keyed operator.
type firedInt struct {
	Key    int64
	Time   Timestamp
	Domain TimeDomain
}

// Integer keys are kept by value (timerMap.u), other keys by their encoded
// strings (timerMap.s). The same random script of registrations and
// deletions, also from inside OnTimer while a time fires, with snapshots
// restored into the other kind, fires the same timers in the same order in
// both.
func TestTimersFixedSizeKeysMatchStringKeys(t *testing.T) {
	type run struct {
		s     *keyedTimers[int64]
		fired []firedInt
	}
	newRun := func(fixed bool) *run {
		be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
		require.NoError(t, err)
		t.Cleanup(func() { be.Close() })
		r := &run{}
		r.s = newKeyedTimers[int64](be, nil, nil, keygroup.DefaultMaxParallelism)
		if !fixed {
			r.s.event.fk, r.s.proc.fk = nil, nil
		}
		return r
	}
	// hook registers and deletes timers from inside OnTimer, decided by the
	// timer itself so that both runs do the same.
	hook := func(r *run) TimerHandler[int64] {
		return timerFunc[int64](func(k int64, tm Timer) error {
			r.fired = append(r.fired, firedInt{k, tm.Time, tm.Domain})
			if tm.Domain != EventTime {
				return nil
			}
			switch k % 7 {
			case 0: // the same time, another key: fires in this round if it sorts after k
				at(r.s, k+1000).RegisterEventTimeTimer(tm.Time)
			case 1: // an earlier time: fires next
				at(r.s, k+2000).RegisterEventTimeTimer(tm.Time - 1)
			case 2: // delete a timer of this time not fired yet, then register it again
				at(r.s, k+1).DeleteEventTimeTimer(tm.Time)
				if k%2 == 0 {
					at(r.s, k+1).RegisterEventTimeTimer(tm.Time)
				}
			case 3: // register the key again for later: it fires again
				if tm.Time < 10_000 {
					at(r.s, k).RegisterEventTimeTimer(tm.Time + 5)
				}
			}
			at(r.s, k) // the current key is the timer's again
			return nil
		})
	}
	runs := []*run{newRun(true), newRun(false)}
	for _, r := range runs {
		r.s.handler = hook(r)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	wm := Timestamp(0)
	for step := range 3000 {
		k := rnd.Int64N(400) - 200
		tm := wm + 1 + Timestamp(rnd.IntN(30))
		op := rnd.IntN(10)
		snapshot := step%700 == 699
		for i, r := range runs {
			switch {
			case op < 5:
				at(r.s, k).RegisterEventTimeTimer(tm)
			case op < 6:
				at(r.s, k).RegisterProcessingTimeTimer(tm)
			case op < 8:
				at(r.s, k).DeleteEventTimeTimer(tm)
			case op < 9:
				require.NoError(t, r.s.fireEvent(wm))
			default:
				require.NoError(t, r.s.fireProcessing(tm))
			}
			if snapshot {
				// Restore into the other kind of map.
				snap, err := r.s.snapshot()
				require.NoError(t, err)
				var buf bytes.Buffer
				_, err = snap.write(context.Background(), &buf)
				require.NoError(t, err)
				nr := newRun(i == 1)
				nr.fired = r.fired
				nr.s.handler = hook(nr)
				nr.s.wm = r.s.wm
				require.NoError(t, nr.s.restore(bytes.NewReader(buf.Bytes()), allGroups, allGroups))
				runs[i] = nr
			}
		}
		if op == 8 {
			wm += Timestamp(rnd.IntN(8))
		}
	}
	for _, r := range runs {
		require.NoError(t, r.s.fireEvent(MaxWatermark))
		require.NoError(t, r.s.fireProcessing(MaxWatermark))
		require.Zero(t, r.s.event.n+r.s.proc.n)
	}
	require.Greater(t, len(runs[0].fired), 1000)
	require.Equal(t, runs[0].fired, runs[1].fired)
}

// A snapshot whose keys do not encode to 8 bytes does not restore into an
// integer-keyed operator.
func TestTimersRestoreWrongKeySize(t *testing.T) {
	s, _ := newTestTimers(t, allGroups)
	at(s, "abc").RegisterEventTimeTimer(5)
	snap, err := s.snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = snap.write(context.Background(), &buf)
	require.NoError(t, err)
	be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
	require.NoError(t, err)
	defer be.Close()
	r := newKeyedTimers[int64](be, nil, nil, keygroup.DefaultMaxParallelism)
	err = r.restore(bytes.NewReader(buf.Bytes()), allGroups, allGroups)
	require.ErrorContains(t, err, "encoded key of 3 bytes")
}

// Keys that encode alike (0.0 and -0.0) are one timer: the first
// registration's key is the one OnTimer gets.
func TestTimersFirstRegistrationKeyStays(t *testing.T) {
	be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: allGroups})
	require.NoError(t, err)
	defer be.Close()
	var got []float64
	s := newKeyedTimers[float64](be, timerFunc[float64](func(k float64, _ Timer) error { got = append(got, k); return nil }), nil, keygroup.DefaultMaxParallelism)
	zero := 0.0
	at(s, zero).RegisterEventTimeTimer(5)
	at(s, -zero).RegisterEventTimeTimer(5)
	require.NoError(t, s.fireEvent(5))
	require.Len(t, got, 1)
	require.False(t, math.Signbit(got[0]), "the first registration's key")
}

// Snapshots of version 2, written by the code before version 3 and kept in
// testdata/, restore: whole, and split between two subtasks by key group,
// the timers fire as the golden file, written with them, lists.
func TestTimersRestoreVersion2Files(t *testing.T) {
	for _, name := range []string{"string", "int64"} {
		t.Run(name, func(t *testing.T) {
			snap, err := os.ReadFile("testdata/timers-v2-" + name + ".bin")
			require.NoError(t, err)
			require.Equal(t, byte(2), snap[len(timerFileMagic)], "a version 2 file")
			golden, err := os.ReadFile("testdata/timers-v2-" + name + ".golden")
			require.NoError(t, err)
			want := strings.Split(strings.TrimSuffix(string(golden), "\n"), "\n")
			restore := func(rng keygroup.Range) []string {
				be, err := state.NewHeap(state.Config{OperatorUID: "op", KeyGroups: rng})
				require.NoError(t, err)
				defer be.Close()
				var got []string
				if name == "string" {
					s := newKeyedTimers[string](be, timerFunc[string](func(k string, tm Timer) error {
						got = append(got, fmt.Sprintf("%d %d %q", tm.Domain, tm.Time, k))
						return nil
					}), nil, keygroup.DefaultMaxParallelism)
					require.NoError(t, s.restore(bytes.NewReader(snap), rng, allGroups))
					require.NoError(t, s.fireEvent(MaxWatermark))
					require.NoError(t, s.fireProcessing(MaxWatermark))
				} else {
					s := newKeyedTimers[int64](be, timerFunc[int64](func(k int64, tm Timer) error {
						got = append(got, fmt.Sprintf("%d %d %d", tm.Domain, tm.Time, k))
						return nil
					}), nil, keygroup.DefaultMaxParallelism)
					require.NoError(t, s.restore(bytes.NewReader(snap), rng, allGroups))
					require.NoError(t, s.fireEvent(MaxWatermark))
					require.NoError(t, s.fireProcessing(MaxWatermark))
				}
				return got
			}
			require.Equal(t, want, restore(allGroups))
			lo, hi := restore(keygroup.RangeFor(0, 2, 128)), restore(keygroup.RangeFor(1, 2, 128))
			require.NotEmpty(t, lo)
			require.NotEmpty(t, hi)
			require.ElementsMatch(t, want, append(lo, hi...))
		})
	}
}
