package checkpointtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
)

// StorageConformance runs the conformance suite against storages made by
// newStorage, one empty storage per subtest.
func StorageConformance(t *testing.T, newStorage func(t *testing.T) checkpoint.Storage) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, st checkpoint.Storage)
	}{
		{"WriteAndRead", testWriteAndRead},
		{"Empty", testEmpty},
		{"CommitLatestLoadList", testCommitLatestLoadList},
		{"CommitRefusesBadManifests", testCommitRefuses},
		{"OpenDetectsMismatch", testOpenDetectsMismatch},
		{"Verify", testVerify},
		{"Abort", testAbort},
		{"Discard", testDiscard},
		{"PruneKeepsSharedFiles", testPrune},
		{"PruneLeavesCheckpointInProgress", testPruneInProgress},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ContextCancelled", testContextCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStorage(t)) })
	}
}

var created = time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)

// Manifest returns a valid manifest of checkpoint id: one operator "op"
// with one subtask whose keyed state is refs.
func Manifest(id int64, refs ...checkpoint.FileRef) *checkpoint.Manifest {
	return &checkpoint.Manifest{
		Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: id, Job: "conformance",
		Created: created, MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{{Name: "op", Parallelism: 1, Subtasks: []checkpoint.SubtaskState{{Keyed: refs}}}},
	}
}

// WriteFile writes data as file name of checkpoint id and returns its
// reference.
func WriteFile(t testing.TB, st checkpoint.Storage, id int64, name string, data []byte) checkpoint.FileRef {
	t.Helper()
	w, err := st.Create(context.Background(), id, name)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	ref, err := w.Commit()
	require.NoError(t, err)
	return ref
}

// ReadFile reads ref through st.Open to EOF.
func ReadFile(st checkpoint.Storage, ref checkpoint.FileRef) ([]byte, error) {
	r, err := st.Open(context.Background(), ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func testWriteAndRead(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	require.NotEmpty(t, st.Location())
	for i, n := range []int{0, 1, 4096, 1<<20 + 3} {
		data := payload(uint64(i), n)
		w, err := st.Create(ctx, 1, fmt.Sprintf("file-%d", i))
		require.NoError(t, err)
		// Written in uneven pieces.
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+len(rest)/3)
			m, err := w.Write(rest[:k])
			require.NoError(t, err)
			require.Equal(t, k, m)
			rest = rest[k:]
		}
		ref, err := w.Commit()
		require.NoError(t, err)
		require.Equal(t, int64(n), ref.Size)
		require.Equal(t, crc(data), ref.CRC32C, "CRC32C (Castagnoli) of the data")
		require.NotEmpty(t, ref.Path)
		require.NoError(t, w.Abort(), "Abort after Commit is a no-op")
		got, err := ReadFile(st, ref)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "file %d reads back", i)
	}
	// A name with directories.
	ref := WriteFile(t, st, 1, "op/3/keyed", []byte("nested"))
	got, err := ReadFile(st, ref)
	require.NoError(t, err)
	require.Equal(t, "nested", string(got))
	// Invalid names.
	for _, name := range []string{"", "../escape", "/abs", "a/../b", "."} {
		_, err := st.Create(ctx, 1, name)
		require.Error(t, err, "name %q", name)
	}
	_, err = st.Create(ctx, 0, "zero-id")
	require.Error(t, err, "checkpoint ids start at 1")
}

func testEmpty(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	_, err := st.Latest(ctx)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.Empty(t, ids)
	_, err = st.Load(ctx, 1)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)
	require.NoError(t, st.Prune(ctx, 3))
	require.NoError(t, st.Discard(ctx, 1))
}

func testCommitLatestLoadList(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	a := WriteFile(t, st, 1, "a", []byte("alpha"))
	m1 := Manifest(1, a)
	require.NoError(t, st.Commit(ctx, m1))
	latest, err := st.Latest(ctx)
	require.NoError(t, err)
	require.Equal(t, m1, latest)

	b := WriteFile(t, st, 2, "b", []byte("beta"))
	m2 := Manifest(2, a, b)
	m2.Final = true
	m2.Operators = append(m2.Operators, checkpoint.OperatorState{Name: "sink", Parallelism: 2,
		Subtasks: []checkpoint.SubtaskState{{Operator: &b}, {Timers: &a}}})
	require.NoError(t, st.Commit(ctx, m2))
	latest, err = st.Latest(ctx)
	require.NoError(t, err)
	require.Equal(t, m2, latest)
	got, err := st.Load(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, m1, got)
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2}, ids)

	// Ids need not be consecutive; Latest is the highest, not the last one written.
	c := WriteFile(t, st, 10, "c", []byte("gamma"))
	require.NoError(t, st.Commit(ctx, Manifest(10, c)))
	d := WriteFile(t, st, 7, "d", []byte("delta"))
	require.NoError(t, st.Commit(ctx, Manifest(7, d)))
	latest, err = st.Latest(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 10, latest.ID)
	ids, err = st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 7, 10}, ids)
	_, err = st.Load(ctx, 3)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)

	// A savepoint is a manifest too.
	s := WriteFile(t, st, 11, "s", []byte("savepoint"))
	sp := Manifest(11, s)
	sp.Kind = checkpoint.KindSavepoint
	require.NoError(t, st.Commit(ctx, sp))
	got, err = st.Load(ctx, 11)
	require.NoError(t, err)
	require.Equal(t, sp, got)
}

func testCommitRefuses(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	a := WriteFile(t, st, 1, "a", []byte("alpha"))

	missing := checkpoint.FileRef{Path: "chk-1/missing", Size: 3, CRC32C: 1}
	err := st.Commit(ctx, Manifest(1, a, missing))
	require.Error(t, err, "a manifest referencing a missing file")
	require.ErrorContains(t, err, "chk-1/missing")

	wrongSize := a
	wrongSize.Size++
	require.Error(t, st.Commit(ctx, Manifest(1, wrongSize)), "a manifest with a wrong size")

	bad := Manifest(1, a)
	bad.Version = checkpoint.FormatVersion + 1
	require.Error(t, st.Commit(ctx, bad), "unknown format version")
	bad = Manifest(1, a)
	bad.Kind = "weekly"
	require.Error(t, st.Commit(ctx, bad), "unknown kind")
	bad = Manifest(1, a)
	bad.Operators[0].Parallelism = 2
	require.Error(t, st.Commit(ctx, bad), "parallelism without subtask states")
	bad = Manifest(1, a)
	bad.Operators = append(bad.Operators, bad.Operators[0])
	require.Error(t, st.Commit(ctx, bad), "duplicate operator")
	bad = Manifest(1, checkpoint.FileRef{Path: "../outside", Size: 0})
	require.Error(t, st.Commit(ctx, bad), "a path outside the storage")
	bad = Manifest(2, a)
	bad.Kind = checkpoint.KindSavepoint
	require.Error(t, st.Commit(ctx, bad), "a savepoint referencing another checkpoint's file")
	require.Error(t, st.Commit(ctx, nil))

	_, err = st.Latest(ctx)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint, "nothing was committed")

	require.NoError(t, st.Commit(ctx, Manifest(1, a)))
	require.Error(t, st.Commit(ctx, Manifest(1, a)), "the same id twice")
}

func testOpenDetectsMismatch(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	data := payload(1, 100_000)
	ref := WriteFile(t, st, 1, "state", data)

	wrongCRC := ref
	wrongCRC.CRC32C ^= 1
	_, err := ReadFile(st, wrongCRC)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, ref.Path)
	require.ErrorContains(t, err, fmt.Sprintf("%08x", wrongCRC.CRC32C), "names the expected checksum")
	require.ErrorContains(t, err, fmt.Sprintf("%08x", ref.CRC32C), "names the actual checksum")

	for _, size := range []int64{ref.Size - 1, ref.Size + 1, 0} {
		wrongSize := ref
		wrongSize.Size = size
		_, err = ReadFile(st, wrongSize)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt, "size %d", size)
		require.ErrorContains(t, err, ref.Path)
		require.ErrorContains(t, err, fmt.Sprint(size))
	}

	missing := checkpoint.FileRef{Path: "chk-4/gone", Size: 10, CRC32C: 5}
	_, err = ReadFile(st, missing)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, "chk-4/gone")
	require.ErrorContains(t, err, "checkpoint 4")

	_, err = ReadFile(st, checkpoint.FileRef{Path: "../../etc/passwd"})
	require.ErrorIs(t, err, checkpoint.ErrCorrupt, "a path outside the storage")
	r, err := st.Open(ctx, ref)
	require.NoError(t, err, "the right reference still opens")
	require.NoError(t, r.Close())
}

func testVerify(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	a := WriteFile(t, st, 1, "a", payload(2, 70_000))
	b := WriteFile(t, st, 1, "b", payload(3, 10))
	m := Manifest(1, a, b)
	require.NoError(t, st.Commit(ctx, m))
	require.NoError(t, st.Verify(ctx, m))

	bad := Manifest(1, a, b)
	bad.Operators[0].Subtasks[0].Keyed[1].CRC32C ^= 0xff
	err := st.Verify(ctx, bad)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	require.ErrorContains(t, err, b.Path)
	bad.Operators[0].Subtasks[0].Keyed = append(bad.Operators[0].Subtasks[0].Keyed, checkpoint.FileRef{Path: "chk-1/nope", Size: 1})
	err = st.Verify(ctx, bad)
	require.ErrorContains(t, err, b.Path, "every bad file is reported")
	require.ErrorContains(t, err, "chk-1/nope")
}

func testAbort(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	w, err := st.Create(ctx, 1, "aborted")
	require.NoError(t, err)
	_, err = w.Write([]byte("partial"))
	require.NoError(t, err)
	require.NoError(t, w.Abort())
	require.NoError(t, w.Abort(), "Abort twice")
	_, err = w.Commit()
	require.Error(t, err, "Commit after Abort")
	_, err = ReadFile(st, checkpoint.FileRef{Path: "chk-1/aborted", Size: 7, CRC32C: crc([]byte("partial"))})
	require.ErrorIs(t, err, checkpoint.ErrCorrupt, "the aborted file is gone")

	// The name can be written again.
	ref := WriteFile(t, st, 1, "aborted", []byte("again"))
	got, err := ReadFile(st, ref)
	require.NoError(t, err)
	require.Equal(t, "again", string(got))
}

func testDiscard(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	a := WriteFile(t, st, 1, "a", []byte("alpha"))
	require.NoError(t, st.Commit(ctx, Manifest(1, a)))

	// Checkpoint 2 fails; one of its files is reused by checkpoint 3.
	b := WriteFile(t, st, 2, "b", []byte("beta"))
	shared := WriteFile(t, st, 2, "shared", []byte("shared"))
	require.NoError(t, st.Commit(ctx, Manifest(3, a, shared)))
	require.NoError(t, st.Discard(ctx, 2))
	_, err := ReadFile(st, b)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt, "the discarded file is gone")
	_, err = ReadFile(st, shared)
	require.NoError(t, err, "a file a completed manifest references stays")

	// Discarding a completed checkpoint keeps its files.
	require.NoError(t, st.Discard(ctx, 1))
	m1, err := st.Load(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, st.Verify(ctx, m1))

	// Files being written are not disturbed; Discard after they end removes them.
	w, err := st.Create(ctx, 4, "slow")
	require.NoError(t, err)
	_, err = w.Write([]byte("still writing"))
	require.NoError(t, err)
	done := WriteFile(t, st, 4, "done", []byte("done"))
	require.NoError(t, st.Discard(ctx, 4))
	_, err = ReadFile(st, done)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
	slow, err := w.Commit()
	require.NoError(t, err)
	require.NoError(t, st.Discard(ctx, 4))
	_, err = ReadFile(st, slow)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)

	latest, err := st.Latest(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, latest.ID)
	require.NoError(t, st.Verify(ctx, latest))
}

func testPrune(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	// An incremental chain: each checkpoint references the full base of
	// checkpoint 1 and the deltas after it.
	base := WriteFile(t, st, 1, "base", payload(1, 5000))
	side := WriteFile(t, st, 1, "side", []byte("only in 1"))
	require.NoError(t, st.Commit(ctx, Manifest(1, base, side)))
	d2 := WriteFile(t, st, 2, "delta", []byte("d2"))
	require.NoError(t, st.Commit(ctx, Manifest(2, base, d2)))
	d3 := WriteFile(t, st, 3, "delta", []byte("d3"))
	require.NoError(t, st.Commit(ctx, Manifest(3, base, d2, d3)))
	d4 := WriteFile(t, st, 4, "delta", []byte("d4"))
	full4 := WriteFile(t, st, 4, "other", []byte("x"))
	require.NoError(t, st.Commit(ctx, Manifest(4, base, d2, d3, d4, full4)))
	// Checkpoint 5 failed and was never discarded.
	orphan := WriteFile(t, st, 5, "orphan", []byte("o"))
	f6 := WriteFile(t, st, 6, "full", []byte("six"))
	require.NoError(t, st.Commit(ctx, Manifest(6, f6)))

	require.NoError(t, st.Prune(ctx, 2))
	ids, err := st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int64{4, 6}, ids)
	for _, id := range ids {
		m, err := st.Load(ctx, id)
		require.NoError(t, err)
		require.NoError(t, st.Verify(ctx, m), "kept checkpoint %d is intact", id)
	}
	for _, gone := range []checkpoint.FileRef{side, orphan} {
		_, err := ReadFile(st, gone)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt, "%s is removed", gone.Path)
	}
	_, err = st.Load(ctx, 1)
	require.ErrorIs(t, err, checkpoint.ErrNoCheckpoint)

	require.NoError(t, st.Prune(ctx, 1))
	ids, err = st.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int64{6}, ids)
	for _, gone := range []checkpoint.FileRef{base, d2, d3, d4} {
		_, err := ReadFile(st, gone)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt, "%s is removed", gone.Path)
	}
	require.NoError(t, st.Prune(ctx, 1), "pruning again changes nothing")
	m6, err := st.Latest(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Verify(ctx, m6))
	require.Error(t, st.Prune(ctx, 0), "keep must be at least 1")
}

func testPruneInProgress(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	a := WriteFile(t, st, 1, "a", []byte("a"))
	require.NoError(t, st.Commit(ctx, Manifest(1, a)))
	// Checkpoint 2 is being written while 1 is pruned.
	b := WriteFile(t, st, 2, "b", []byte("b"))
	w, err := st.Create(ctx, 2, "c")
	require.NoError(t, err)
	require.NoError(t, st.Prune(ctx, 1))
	_, err = w.Write([]byte("c"))
	require.NoError(t, err)
	c, err := w.Commit()
	require.NoError(t, err)
	m2 := Manifest(2, b, c)
	require.NoError(t, st.Commit(ctx, m2))
	require.NoError(t, st.Prune(ctx, 1))
	require.NoError(t, st.Verify(ctx, m2))
	_, err = ReadFile(st, a)
	require.ErrorIs(t, err, checkpoint.ErrCorrupt)
}

func testConcurrentWriters(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	const writers, files = 16, 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		refs = make([][]checkpoint.FileRef, writers)
		errs []error
	)
	for g := range writers {
		wg.Go(func() {
			for f := range files {
				data := payload(uint64(g*files+f), 1000+g*3000+f)
				w, err := st.Create(ctx, 1, fmt.Sprintf("op/%d/file-%d", g, f))
				if err == nil {
					_, err = w.Write(data)
				}
				var ref checkpoint.FileRef
				if err == nil {
					ref, err = w.Commit()
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				refs[g] = append(refs[g], ref)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	m := &checkpoint.Manifest{Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, ID: 1, Created: created,
		Operators: []checkpoint.OperatorState{{Name: "op", Parallelism: writers, Subtasks: make([]checkpoint.SubtaskState, writers)}}}
	for g := range writers {
		m.Operators[0].Subtasks[g].Keyed = refs[g]
	}
	require.NoError(t, st.Commit(ctx, m))
	// Readers in parallel too.
	for g := range writers {
		wg.Go(func() {
			for f, ref := range refs[g] {
				got, err := ReadFile(st, ref)
				if err == nil && !bytes.Equal(got, payload(uint64(g*files+f), 1000+g*3000+f)) {
					err = fmt.Errorf("%s reads back different bytes", ref.Path)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.NoError(t, st.Verify(ctx, m))
}

func testContextCancelled(t *testing.T, st checkpoint.Storage) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := st.Create(ctx, 1, "x")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, st.Commit(ctx, Manifest(1)), context.Canceled)
	_, err = st.Latest(ctx)
	require.ErrorIs(t, err, context.Canceled)
	_, err = st.List(ctx)
	require.ErrorIs(t, err, context.Canceled)
}
