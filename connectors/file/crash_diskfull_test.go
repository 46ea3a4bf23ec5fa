package file_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/file"
	"github.com/sluicedata/sluice/dataflow"
)

// The disk-full tests run a checkpointed job whose part files sit on a
// "disk" that fills up once checkpoint 2 has completed: a KiB later, writes
// fail with ENOSPC after writing what fits (or, in sync mode, the writes land
// and fsync fails with ENOSPC, as on file systems that allocate late). The
// source holds back most of its records until the disk is filling, so the
// fault comes whatever the machine's speed. The sink has a hook for exactly this (it creates part files through
// a replaceable function, see SetCreateFile); what it renames, links and
// syncs as directories goes to the real disk. The job must fail with an error
// naming the sink, the file and ENOSPC; no visible file may be partial, and
// what is visible must be whole checkpoints; and once the disk has room
// again, the job restored from its checkpoint must finish with every record
// exactly once.

// fullDiskMode is what fails when the disk is full.
type fullDiskMode int

const (
	failWrites fullDiskMode = iota // write: the bytes that fit, then ENOSPC
	failSyncs                      // fsync: ENOSPC
)

// fillingDisk is shared by the part files of a job. Concurrency: the files of
// several subtasks use it at once.
type fillingDisk struct {
	mode    fullDiskMode
	armed   atomic.Bool   // the disk fills from now on
	filling chan struct{} // closed when first armed
	once    sync.Once

	mu        sync.Mutex
	left      int64 // bytes left once armed
	faults    int   // operations failed
	freeAfter int   // if > 0, the disk has room again after this many faults
	freed     bool
	dir       string
	check     error // what checkVisible found at the first fault
	seen      bool
}

func newFillingDisk(mode fullDiskMode, dir string, freeAfter int) *fillingDisk {
	return &fillingDisk{mode: mode, dir: dir, left: diskRoom, freeAfter: freeAfter, filling: make(chan struct{})}
}

func (d *fillingDisk) create(name string, real func(string) (file.PartFile, error)) (file.PartFile, error) {
	f, err := real(name)
	if err != nil {
		return nil, err
	}
	return &fillingFile{PartFile: f, d: d, name: name}, nil
}

// take reserves n bytes and returns how many fit; fault reports a failure.
func (d *fillingDisk) take(n int) (fit int, full bool) {
	if !d.armed.Load() {
		return n, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if int64(n) <= d.left {
		d.left -= int64(n)
		return n, false
	}
	fit = int(max(d.left, 0))
	d.left = 0
	return fit, true
}

// fault counts a failure and, at the first, checks what readers see right
// then.
func (d *fillingDisk) fault() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults++
	if d.freeAfter > 0 && d.faults >= d.freeAfter {
		d.freed = true
		d.armed.Store(false)
	}
	if !d.seen {
		d.seen = true
		_, d.check = readVisibleStrict(d.dir)
	}
}

func (d *fillingDisk) stats() (faults int, check error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults, d.check
}

// fillingFile fails like an *os.File: with an *fs.PathError.
type fillingFile struct {
	file.PartFile
	d    *fillingDisk
	name string
}

func (f *fillingFile) Write(p []byte) (int, error) {
	fit, full := f.d.take(len(p))
	if !full || f.d.mode != failWrites {
		return f.PartFile.Write(p)
	}
	n, err := f.PartFile.Write(p[:fit])
	if err != nil {
		return n, err
	}
	f.d.fault()
	return n, &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
}

func (f *fillingFile) Sync() error {
	if f.d.mode == failSyncs && f.d.armed.Load() {
		f.d.mu.Lock()
		full := f.d.left == 0
		f.d.mu.Unlock()
		if full {
			f.d.fault()
			return &fs.PathError{Op: "sync", Path: f.name, Err: syscall.ENOSPC}
		}
	}
	return f.PartFile.Sync()
}

// diskArmer arms the disk when checkpoint 2 completes.
type diskArmer struct {
	dataflow.OperatorBase
	d *fillingDisk
}

func (a *diskArmer) Process(crashEvent, dataflow.Timestamp) error { return nil }

func (a *diskArmer) NotifyCheckpointComplete(_ context.Context, id int64) error {
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	if id >= 2 && !a.d.freed {
		a.d.armed.Store(true)
		a.d.once.Do(func() { close(a.d.filling) })
	}
	return nil
}

const (
	diskRecords = 2000
	diskGate    = 600     // the source makes the records from here on once the disk fills
	diskRoom    = 1 << 10 // bytes the disk takes after checkpoint 2
)

// gatedSource makes the records of crashEvents 0 to diskRecords-1, subtask i
// of p those with seq%p == i, in order; those from diskGate on only once gate
// is closed (nil: at once). Its state is its next sequence number, for the
// same parallelism.
type gatedSource struct {
	gate       <-chan struct{}
	next, step int64
}

func (s *gatedSource) Open(_ context.Context, oc *dataflow.OperatorContext) error {
	s.next, s.step = int64(oc.Subtask), int64(oc.Parallelism)
	if r := oc.Restored; r != nil {
		b := r.Subtasks[oc.Subtask]
		if len(b) != 8 {
			return fmt.Errorf("gated source: restored state %x of subtask %d", b, oc.Subtask)
		}
		s.next = int64(binary.BigEndian.Uint64(b))
	}
	return nil
}

func (s *gatedSource) Poll(ctx context.Context, out dataflow.Output[crashEvent]) (dataflow.SourceStatus, error) {
	if s.gate != nil && s.next >= diskGate {
		select {
		case <-s.gate:
			s.gate = nil
		case <-ctx.Done():
			return dataflow.NothingAvailable, ctx.Err()
		case <-time.After(2 * time.Millisecond):
			return dataflow.NothingAvailable, nil
		}
	}
	for n := 0; n < 64 && s.next < diskRecords && (s.gate == nil || s.next < diskGate); n++ {
		out.Collect(genCrashEvent(s.next), dataflow.NoTimestamp)
		s.next += s.step
	}
	if s.next >= diskRecords {
		return dataflow.EndOfInput, nil
	}
	return dataflow.MoreAvailable, nil
}

func (s *gatedSource) SnapshotState(context.Context, int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(s.next)), nil
}

func (s *gatedSource) Close() error { return nil }

func TestCrashDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format file.Format
		comp   file.Compression
		mode   fullDiskMode
		op     string // in the error
	}{
		{"jsonl/write", file.JSONLines, file.Uncompressed, failWrites, "write"},
		{"csv-gzip/write", file.CSV, file.Gzip, failWrites, "write"},
		{"parquet/write", file.Parquet, file.Zstd, failWrites, "write"},
		{"jsonl/sync", file.JSONLines, file.Uncompressed, failSyncs, "sync"},
		{"parquet/sync", file.Parquet, file.Snappy, failSyncs, "sync"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "out")
			disk := newFillingDisk(tc.mode, dir, 0)
			restore := file.SetCreateFile(disk.create)
			defer restore()
			cfg := file.Config[crashEvent]{Dir: dir, Format: tc.format, Compression: tc.comp, MaxPartSize: 1 << 10}

			err := runDiskJob(t, base, cfg, disk)
			faults, check := disk.stats()
			require.Positive(t, faults, "the disk filled up")
			require.Error(t, err, "a full disk fails the job")
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.ErrorContains(t, err, `file: sink "files": `+tc.op+" "+dir+string(filepath.Separator)+".part-")
			require.ErrorContains(t, err, "no space left on device")
			require.Equal(t, 1, strings.Count(err.Error(), ".part-"), "the message names the file once")
			t.Logf("%d faults; the job failed with: %v", faults, err)

			// What readers saw at the first fault, and see now: whole files
			// of whole checkpoints.
			require.NoError(t, check, "visible files at the first fault")
			got, err := readVisibleStrict(dir)
			require.NoError(t, err)
			requireWholeCheckpoints(t, got)
			storage, err := checkpoint.NewLocalStorage(filepath.Join(base, "checkpoints"))
			require.NoError(t, err)
			m, err := storage.Latest(context.Background())
			require.NoError(t, err)
			require.GreaterOrEqual(t, m.ID, int64(2))
			t.Logf("after the failure: checkpoint %d complete, %d records visible", m.ID, len(got))

			// Room again: the job restores from its checkpoint and finishes.
			restore()
			require.NoError(t, runDiskJob(t, base, cfg, nil))
			got, err = readVisibleStrict(dir)
			require.NoError(t, err)
			slices.SortFunc(got, func(a, b crashEvent) int { return cmp.Compare(a.Seq, b.Seq) })
			require.Equal(t, diskWant(), got, "every record exactly once")
			require.Empty(t, hiddenFiles(t, dir))
		})
	}
}

// TestCrashDiskFullRecoversWithRestarts: the disk stays full for three
// faults, across restarts (each restored run fails again at its first
// write or sync); then it has room, and the restarted job finishes with
// every record exactly once.
func TestCrashDiskFullRecoversWithRestarts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format file.Format
		comp   file.Compression
		mode   fullDiskMode
	}{
		{"jsonl-zstd/write", file.JSONLines, file.Zstd, failWrites},
		{"parquet/sync", file.Parquet, file.Zstd, failSyncs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "out")
			disk := newFillingDisk(tc.mode, dir, 3)
			defer file.SetCreateFile(disk.create)()
			cfg := file.Config[crashEvent]{Dir: dir, Format: tc.format, Compression: tc.comp, MaxPartSize: 1 << 10}
			restart, err := checkpoint.FixedDelay(10, time.Millisecond)
			require.NoError(t, err)
			var log syncBuffer
			require.NoError(t, runDiskJob(t, base, cfg, disk, func(jc *dataflow.Config) {
				jc.Restart = restart
				jc.Logger = slog.New(slog.NewTextHandler(&log, nil))
			}))

			faults, check := disk.stats()
			restarts := strings.Count(log.String(), "job failed; restarting")
			require.GreaterOrEqual(t, faults, 3)
			require.Positive(t, restarts)
			require.Contains(t, log.String(), "no space left on device")
			require.NoError(t, check, "visible files at the first fault")
			got, err := readVisibleStrict(dir)
			require.NoError(t, err)
			slices.SortFunc(got, func(a, b crashEvent) int { return cmp.Compare(a.Seq, b.Seq) })
			require.Equal(t, diskWant(), got, "every record exactly once")
			require.Empty(t, hiddenFiles(t, dir))
			t.Logf("%d faults, %d restarts, %d records", faults, restarts, len(got))
		})
	}
}

func diskWant() []crashEvent {
	want := make([]crashEvent, diskRecords)
	for i := range want {
		want[i] = genCrashEvent(int64(i))
	}
	return want
}

// runDiskJob runs the job once, restored from its checkpoint storage if that
// holds a checkpoint; disk, if not nil, is armed by checkpoint 2. opts change
// the job's configuration.
func runDiskJob(t *testing.T, base string, cfg file.Config[crashEvent], disk *fillingDisk, opts ...func(*dataflow.Config)) error {
	t.Helper()
	storage, err := checkpoint.NewLocalStorage(filepath.Join(base, "checkpoints"))
	require.NoError(t, err)
	jc := dataflow.Config{
		Parallelism:       2,
		CheckpointStorage: storage,
		RestoreFrom:       storage, // starts fresh while it holds no checkpoint
		Checkpoint:        checkpoint.Config{Interval: 20 * time.Millisecond},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&jc)
	}
	job := dataflow.NewJob("disk-full", jc)
	var gate <-chan struct{}
	if disk == nil {
		disk = &fillingDisk{freed: true} // never armed: the runs of a job must have the same operators
	} else {
		gate = disk.filling
	}
	events := dataflow.AddSource(job, "events", func() dataflow.Source[crashEvent] { return &gatedSource{gate: gate} })
	dataflow.AddSink(events, "arm", func() dataflow.Operator[crashEvent] { return &diskArmer{d: disk} }, dataflow.Parallelism(1))
	file.Sink(events, "files", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return job.Run(ctx)
}

// readVisibleStrict reads every visible file under dir as a reader would,
// failing on anything partial: JSON Lines and CSV must be whole lines (and a
// whole gzip stream), Parquet must have its footer.
func readVisibleStrict(dir string) ([]crashEvent, error) {
	var out []crashEvent
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") {
			return nil
		}
		es, err := readEventsFile(p)
		if err != nil {
			return fmt.Errorf("visible file %s: %w", p, err)
		}
		out = append(out, es...)
		return nil
	})
	return out, err
}

// requireWholeCheckpoints checks visible records: none twice, and for each
// generator subtask (the sink subtask it is chained to) a prefix of its
// sequence, as whole checkpoints give.
func requireWholeCheckpoints(t *testing.T, got []crashEvent) {
	t.Helper()
	bySub := [2][]int64{}
	for _, e := range got {
		require.Equal(t, genCrashEvent(e.Seq), e)
		bySub[e.Seq%2] = append(bySub[e.Seq%2], e.Seq)
	}
	for sub, seqs := range bySub {
		slices.Sort(seqs)
		for i, s := range seqs {
			require.Equal(t, int64(sub+2*i), s, "subtask %d's records are a prefix of its sequence, each once", sub)
		}
	}
}
