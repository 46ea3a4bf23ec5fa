package file_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/dataflow"
)

var (
	inProgressName = regexp.MustCompile(`^\.part-0-[0-9a-f]{8}-\d{6}\.jsonl\.inprogress$`)
	pendingName    = regexp.MustCompile(`^\.part-0-[0-9a-f]{8}-\d{6}\.jsonl\.pending$`)
)

func TestLifecycleInProgressPendingFinal(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir}, 0, 1, nil)

	// Open and Begin create nothing: part files are made by the first record.
	v, h := listFiles(t, dir)
	require.Empty(t, v)
	require.Empty(t, h)

	process(t, op, events(0, 3))
	v, h = listFiles(t, dir)
	require.Empty(t, v, "nothing is visible before a checkpoint")
	require.Len(t, h, 1)
	require.Regexp(t, inProgressName, h[0])

	snapshot(t, op, 1)
	v, h = listFiles(t, dir)
	require.Empty(t, v, "a prepared file stays invisible until its checkpoint completes")
	require.Len(t, h, 1)
	require.Regexp(t, pendingName, h[0])

	process(t, op, events(3, 5)) // the next transaction, checkpoint 2
	complete(t, op, 1)
	v, h = listFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl"}, v)
	require.Equal(t, events(0, 3), readJSONL[event](t, filepath.Join(dir, v[0])))
	require.Len(t, h, 1)
	require.Regexp(t, inProgressName, h[0])

	snapshot(t, op, 2)
	complete(t, op, 2)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-2-0.jsonl"}, visibleFiles(t, dir))
	require.Equal(t, events(3, 5), readJSONL[event](t, filepath.Join(dir, "part-0-2-0.jsonl")))

	// An empty transaction prepares and commits to nothing.
	snapshot(t, op, 3)
	complete(t, op, 3)
	v, h = listFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-2-0.jsonl"}, v)
	require.Empty(t, h)

	// A repeated or late notice does nothing more.
	complete(t, op, 2)
	complete(t, op, 3)

	// Close aborts the open transaction: its in-progress file goes.
	process(t, op, events(5, 6))
	require.Len(t, hiddenFiles(t, dir), 1)
	require.NoError(t, op.Close())
	v, h = listFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-2-0.jsonl"}, v)
	require.Empty(t, h)
}

func TestNotificationsMergedCommitEverythingUpToTheID(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir}, 0, 1, nil)
	process(t, op, events(0, 2))
	snapshot(t, op, 1)
	process(t, op, events(2, 4))
	snapshot(t, op, 2) // checkpoint 1's notice never comes
	process(t, op, events(4, 6))
	snapshot(t, op, 3)
	complete(t, op, 2)
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-0-2-0.jsonl"}, visibleFiles(t, dir))
	require.Equal(t, idRange(0, 4), sortedIDs(readVisibleJSONL[event](t, dir)))
	complete(t, op, 3)
	require.Equal(t, idRange(0, 6), sortedIDs(readVisibleJSONL[event](t, dir)))
	require.NoError(t, op.Close())
}

// TestReadersNeverSeePartialFiles lists and reads the directory after every
// step, with parts rolled by size between checkpoints: every visible file is
// complete, and visible files hold exactly the records of completed
// checkpoints.
func TestReadersNeverSeePartialFiles(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir, MaxPartSize: 200}, 0, 1, nil)
	committed := int64(0)
	next := int64(0)
	for ckpt := int64(1); ckpt <= 5; ckpt++ {
		for range 7 {
			process(t, op, events(next, next+3))
			next += 3
			require.Equal(t, idRange(0, committed), sortedIDs(readVisibleJSONL[event](t, dir)))
		}
		snapshot(t, op, ckpt)
		require.Equal(t, idRange(0, committed), sortedIDs(readVisibleJSONL[event](t, dir)))
		complete(t, op, ckpt)
		committed = next
		require.Equal(t, idRange(0, committed), sortedIDs(readVisibleJSONL[event](t, dir)))
		require.Empty(t, hiddenFiles(t, dir))
	}
	require.Greater(t, len(visibleFiles(t, dir)), 10, "parts rolled by size")
	require.NoError(t, op.Close())
}

// TestCrashRestoresExactlyOnce: checkpoint 1 completes but its notice is
// lost; checkpoint 2 is prepared but never completes; more records are in
// progress; the process dies. The restored run commits checkpoint 1's files,
// deletes the rest, and the replayed records are written once.
func TestCrashRestoresExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir, MaxPartSize: 150}
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 10))
	state1 := snapshot(t, op, 1)
	process(t, op, events(10, 20))
	snapshot(t, op, 2)
	process(t, op, events(20, 25))
	// Crash: op is dropped without Close; nothing became visible.
	v, h := listFiles(t, dir)
	require.Empty(t, v)
	require.NotEmpty(t, h)

	re := openOp(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{state1}})
	v, h = listFiles(t, dir)
	require.Empty(t, h, "in-progress and pending files of the crashed run are deleted")
	require.Equal(t, idRange(0, 10), sortedIDs(readVisibleJSONL[event](t, dir)), "exactly checkpoint 1's records are final")
	before := len(v)

	// The source replays from checkpoint 1.
	process(t, re, events(10, 25))
	snapshot(t, re, 2)
	complete(t, re, 2)
	require.Equal(t, idRange(0, 25), sortedIDs(readVisibleJSONL[event](t, dir)), "every record once")
	require.Greater(t, len(visibleFiles(t, dir)), before)
	require.Empty(t, hiddenFiles(t, dir))
	require.NoError(t, re.Close())
}

func TestCommitIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 5))
	state1 := snapshot(t, op, 1)
	complete(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	files := visibleFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl"}, files)

	// A restore from checkpoint 1 commits its transaction again: the pending
	// file is gone and the final one exists, so that is success.
	for range 2 {
		re := openOp(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{state1}})
		require.NoError(t, re.Close())
		require.Equal(t, files, visibleFiles(t, dir))
		require.Equal(t, idRange(0, 5), sortedIDs(readVisibleJSONL[event](t, dir)))
	}
}

func TestCommitOfALostFileFailsLoudly(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 5))
	state1 := snapshot(t, op, 1)
	complete(t, op, 1)
	require.NoError(t, op.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "part-0-1-0.jsonl")))

	re := newOp(t, cfg)
	err := re.Open(context.Background(), opCtx(0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{state1}}))
	require.ErrorIs(t, err, file.ErrLostFile)
	require.ErrorContains(t, err, `sink "files"`)
	require.ErrorContains(t, err, filepath.Join(dir, "part-0-1-0.jsonl"))
	require.NoError(t, re.Close())
}

// TestRescaleThreeToTwo: three subtasks prepare checkpoint 1 and crash with
// more in progress; two subtasks restore: new subtask 0 owns old 0 and 2, new
// subtask 1 owns old 1.
func TestRescaleThreeToTwo(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	states := make([][]byte, 3)
	for sub := range 3 {
		op := openOp(t, cfg, sub, 3, nil)
		base := int64(sub * 100)
		process(t, op, events(base, base+10))
		states[sub] = snapshot(t, op, 1)
		process(t, op, events(base+10, base+20)) // orphaned by the crash
		snapshot(t, op, 2)
		process(t, op, events(base+20, base+25))
	}
	require.Empty(t, visibleFiles(t, dir))

	r := &dataflow.RestoredState{CheckpointID: 1, Subtasks: states}
	ops := []sinkOp[event]{openOp(t, cfg, 0, 2, r), openOp(t, cfg, 1, 2, r)}
	require.Equal(t, []string{"part-0-1-0.jsonl", "part-1-1-0.jsonl", "part-2-1-0.jsonl"}, visibleFiles(t, dir))
	require.Empty(t, hiddenFiles(t, dir))
	var want []int64
	for sub := range int64(3) {
		want = append(want, idRange(sub*100, sub*100+10)...)
	}
	require.Equal(t, want, sortedIDs(readVisibleJSONL[event](t, dir)))

	// The new subtasks go on with the replayed records.
	process(t, ops[0], append(events(10, 25), events(210, 225)...))
	process(t, ops[1], events(110, 125))
	for _, op := range ops {
		snapshot(t, op, 2)
		complete(t, op, 2)
		require.NoError(t, op.Close())
	}
	want = nil
	for sub := range int64(3) {
		want = append(want, idRange(sub*100, sub*100+25)...)
	}
	require.Equal(t, want, sortedIDs(readVisibleJSONL[event](t, dir)))
	require.Contains(t, visibleFiles(t, dir), "part-0-2-0.jsonl")
	require.Contains(t, visibleFiles(t, dir), "part-1-2-0.jsonl")
}

// TestCleanupKeepsOtherSubtasksFiles: a subtask deletes the orphans of the
// subtasks it owns only, not the live files of the others.
func TestCleanupKeepsOtherSubtasksFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	one := openOp(t, cfg, 1, 2, nil)
	process(t, one, events(0, 3))
	snapshot(t, one, 1)
	process(t, one, events(3, 4))
	require.Len(t, hiddenFiles(t, dir), 2)

	zero := openOp(t, cfg, 0, 2, nil) // a fresh start cleans up too
	require.Len(t, hiddenFiles(t, dir), 2, "subtask 1's pending and in-progress files stay")
	complete(t, one, 1)
	require.Equal(t, []string{"part-1-1-0.jsonl"}, visibleFiles(t, dir))
	require.NoError(t, zero.Close())
	require.NoError(t, one.Close())
}

func TestJobWritesFinalFilesAtEndOfInput(t *testing.T) {
	dir := t.TempDir()
	job := dataflow.NewJob("to-files")
	src := memory.FromSlice(job, "events", events(0, 1000), dataflow.Parallelism(2))
	file.Sink(src, "files", file.Config[event]{Dir: dir, Compression: file.Gzip}, dataflow.Parallelism(2))
	require.NoError(t, job.Run(context.Background()))

	v, h := listFiles(t, dir)
	require.Empty(t, h, "the final checkpoint commits everything")
	require.Len(t, v, 2)
	var got []event
	for _, f := range v {
		require.Regexp(t, `^part-[01]-\d+-0\.jsonl\.gz$`, f)
		got = append(got, readGzipJSONL[event](t, filepath.Join(dir, f))...)
	}
	require.Equal(t, idRange(0, 1000), sortedIDs(got))
}

func TestBadConfigFailsTheJob(t *testing.T) {
	type withChan struct {
		C chan int `parquet:"c"`
	}
	cases := []struct {
		name  string
		build func(job *dataflow.Job)
		want  string
	}{
		{"no dir", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []event{}), "files", file.Config[event]{})
		}, "Dir is empty"},
		{"snappy text", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []event{}), "files", file.Config[event]{Dir: "x", Compression: file.Snappy})
		}, "snappy compression is for Parquet only"},
		{"csv of int", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []int{}), "files", file.Config[int]{Dir: "x", Format: file.CSV})
		}, "CSV of int needs a struct type or CSVConfig.Row"},
		{"parquet of int", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []int{}), "files", file.Config[int]{Dir: "x", Format: file.Parquet})
		}, "Parquet schema of int"},
		{"parquet of chan", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []withChan{}), "files", file.Config[withChan]{Dir: "x", Format: file.Parquet})
		}, "Parquet schema of file_test.withChan"},
		{"pattern without time", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []event{}), "files", file.Config[event]{Dir: "x", PartitionPattern: "static"})
		}, `partition pattern "static" has no time field`},
		{"hidden partition", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []event{}), "files", file.Config[event]{Dir: "x", PartitionPattern: "_dt=2006-01-02"})
		}, "hidden from readers"},
		{"leaving partition", func(job *dataflow.Job) {
			file.Sink(memory.FromSlice(job, "src", []event{}), "files", file.Config[event]{Dir: "x", PartitionPattern: "../2006"})
		}, "leaves the directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := dataflow.NewJob("bad")
			tc.build(job)
			err := job.Validate()
			require.ErrorIs(t, err, file.ErrConfig)
			require.ErrorContains(t, err, `sink "files"`)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDirectoryThatCannotBeCreated(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "a-file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	dir := filepath.Join(blocker, "out")

	op := newOp(t, file.Config[event]{Dir: dir})
	err := op.Open(context.Background(), opCtx(0, 1, nil))
	require.ErrorContains(t, err, `file: sink "files": create directory `+dir)
	require.ErrorContains(t, err, "not a directory")
	require.NoError(t, op.Close())

	// In a job, the failure names the operator too.
	job := dataflow.NewJob("bad-dir")
	file.Sink(memory.FromSlice(job, "src", events(0, 3)), "files", file.Config[event]{Dir: dir})
	err = job.Run(context.Background())
	require.ErrorContains(t, err, `sink "files": create directory `+dir)
}

func TestPartitionDirectoryThatCannotBeCreated(t *testing.T) {
	dir := t.TempDir()
	// A file where the partition directory must go.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blocked"), nil, 0o644))
	op := openOp(t, file.Config[event]{Dir: dir, Partition: func(time.Time) string { return "blocked/x" }}, 0, 1, nil)
	err := op.Process(event{ID: 1}, dataflow.TimestampOf(time.Unix(0, 0)))
	require.ErrorContains(t, err, `file: sink "files": create directory `+filepath.Join(dir, "blocked", "x"))
	require.NoError(t, op.Close())
}

func TestUnencodableRecord(t *testing.T) {
	type reading struct {
		Sensor string
		Value  float64
	}
	dir := t.TempDir()
	op := openOp(t, file.Config[reading]{Dir: dir}, 0, 1, nil)
	require.NoError(t, op.Process(reading{Sensor: "a", Value: 1}, dataflow.NoTimestamp))
	err := op.Process(reading{Sensor: "b", Value: math.NaN()}, dataflow.NoTimestamp)
	require.ErrorIs(t, err, file.ErrEncode)
	require.ErrorContains(t, err, `sink "files": record of type file_test.reading as JSON Lines`)
	require.ErrorContains(t, err, "NaN")
	require.NoError(t, op.Close())
	v, h := listFiles(t, dir)
	require.Empty(t, v)
	require.Empty(t, h, "Close aborted the transaction")
}

func TestFreshStartNeverReplacesFinalFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	writeOneCheckpoint(t, cfg, events(0, 3))
	require.Equal(t, []string{"part-0-1-0.jsonl"}, visibleFiles(t, dir))

	// A second fresh start: its checkpoint ids begin at 1 again.
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, events(100, 103))
	_, err := op.SnapshotState(context.Background(), 1)
	require.ErrorIs(t, err, file.ErrFileExists)
	require.ErrorContains(t, err, `sink "files": preparing `+filepath.Join(dir, "part-0-1-0.jsonl")+" for checkpoint 1")
	require.NoError(t, op.Close())
	v, h := listFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl"}, v)
	require.Empty(t, h, "Close deleted the unprepared files")
	require.Equal(t, events(0, 3), readJSONL[event](t, filepath.Join(dir, "part-0-1-0.jsonl")))
}

func TestCommitFindsItsNameTaken(t *testing.T) {
	dir := t.TempDir()
	op := openOp(t, file.Config[event]{Dir: dir}, 0, 1, nil)
	process(t, op, events(0, 3))
	snapshot(t, op, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "part-0-1-0.jsonl"), []byte("someone else's\n"), 0o644))
	err := op.NotifyCheckpointComplete(context.Background(), 1)
	require.ErrorIs(t, err, file.ErrFileExists)
	require.ErrorContains(t, err, filepath.Join(dir, "part-0-1-0.jsonl"))
	require.NoError(t, op.Close())
	b, err := os.ReadFile(filepath.Join(dir, "part-0-1-0.jsonl"))
	require.NoError(t, err)
	require.Equal(t, "someone else's\n", string(b), "never replaced")
}

// TestCommitInterruptedBetweenLinkAndUnlink: a crash left the file under both
// its pending and final names; the restore completes the commit.
func TestCommitInterruptedBetweenLinkAndUnlink(t *testing.T) {
	dir := t.TempDir()
	cfg := file.Config[event]{Dir: dir}
	op := openOp(t, cfg, 0, 1, nil)
	process(t, op, events(0, 3))
	state1 := snapshot(t, op, 1)
	h := hiddenFiles(t, dir)
	require.Len(t, h, 1)
	require.NoError(t, os.Link(filepath.Join(dir, h[0]), filepath.Join(dir, "part-0-1-0.jsonl")))

	re := openOp(t, cfg, 0, 1, &dataflow.RestoredState{CheckpointID: 1, Subtasks: [][]byte{state1}})
	v, h := listFiles(t, dir)
	require.Equal(t, []string{"part-0-1-0.jsonl"}, v)
	require.Empty(t, h)
	require.Equal(t, events(0, 3), readJSONL[event](t, filepath.Join(dir, "part-0-1-0.jsonl")))
	require.NoError(t, re.Close())
}
