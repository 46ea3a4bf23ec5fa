package file

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicedata/sluice/dataflow"
)

// fullDisk is a file that takes limit bytes and then fails like a full disk.
type fullDisk struct {
	*os.File
	limit int
}

func (f *fullDisk) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, syscall.ENOSPC
	}
	f.limit -= len(p)
	return f.File.Write(p)
}

func TestFullDiskNamesSinkAndPath(t *testing.T) {
	real := createFile
	t.Cleanup(func() { createFile = real })
	createFile = func(name string) (partFile, error) {
		f, err := real(name)
		if err != nil {
			return nil, err
		}
		return &fullDisk{File: f.(*os.File), limit: 1000}, nil
	}
	type rec struct{ ID int }
	for _, tc := range []struct {
		format Format
		comp   Compression
	}{{JSONLines, Uncompressed}, {CSV, Gzip}, {Parquet, Zstd}} {
		t.Run(tc.format.String(), func(t *testing.T) {
			dir := t.TempDir()
			factory, err := NewSink("files", Config[rec]{Dir: dir, Format: tc.format, Compression: tc.comp})
			require.NoError(t, err)
			op := factory()
			require.NoError(t, op.Open(context.Background(), &dataflow.OperatorContext{Subtask: 0, Parallelism: 1, MaxParallelism: 128}))
			// Records fill the buffers; the failure shows when they are
			// written out, at the latest when the part is prepared.
			for i := range 100_000 {
				if err = op.Process(rec{ID: i}, dataflow.NoTimestamp); err != nil {
					break
				}
			}
			if err == nil {
				_, err = op.(dataflow.Snapshotter).SnapshotState(context.Background(), 1)
			}
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.ErrorContains(t, err, `file: sink "files": write `+dir+string(filepath.Separator)+".part-0-")
			require.ErrorContains(t, err, "no space left on device")
			require.NoError(t, op.Close())
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, entries, "the aborted part file is deleted")
		})
	}
}

// TestPartitionCacheMatchesFormat checks the cached partition of random event
// times, near boundaries and far apart, against formatting every time.
func TestPartitionCacheMatchesFormat(t *testing.T) {
	layouts := []string{"dt=2006-01-02/hour=15", "2006/01/02", "year=2006/month=01", "dt=2006-01-02-15-04", "15h04m05s", "Mon-3PM", "2006-002"}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC).UnixNano()
	for _, layout := range layouts {
		p, err := newPartitioner(Config[int]{PartitionPattern: layout})
		require.NoError(t, err, layout)
		ts := base
		for range 20_000 {
			switch rng.IntN(4) {
			case 0: // a small step, often across a second or minute
				ts += rng.Int64N(int64(2 * time.Second))
			case 1: // a step back
				ts -= rng.Int64N(int64(3 * time.Hour))
			case 2: // exactly a boundary or just before
				h := int64(time.Hour)
				ts = ts - mod(ts, h) + h - rng.Int64N(2)
			default: // anywhere, also before 1970
				ts = rng.Int64N(int64(200*365*24*time.Hour)) - int64(100*365*24*time.Hour)
			}
			got, err := p.partition(dataflow.Timestamp(ts))
			require.NoError(t, err)
			require.Equal(t, time.Unix(0, ts).UTC().Format(layout), got, "layout %q at %d", layout, ts)
		}
	}
}

func TestDefaultPartition(t *testing.T) {
	require.Equal(t, "dt="+HiveDefaultPartition+"/hour="+HiveDefaultPartition, defaultPartition("dt=2006-01-02/hour=15"))
	require.Equal(t, NoTimestampPartition, defaultPartition("2006/01"))
	require.Equal(t, NoTimestampPartition, defaultPartition("dt=2006/01"))
}

func TestHiddenPartSubtask(t *testing.T) {
	for name, want := range map[string]int{
		".part-0-0a1b2c3d-000001.jsonl.inprogress":  0,
		".part-12-0a1b2c3d-000001.csv.gz.pending":   12,
		".part-3-0a1b2c3d-000001.parquet.pending":   3,
		"part-0-1-0.jsonl":                          -1,
		".part-x-0a1b2c3d-000001.jsonl.inprogress":  -1,
		".part-1-0a1b2c3d-000001.jsonl":             -1,
		".other-1-0a1b2c3d-000001.jsonl.inprogress": -1,
	} {
		sub, ok := hiddenPartSubtask(name)
		if want < 0 {
			require.False(t, ok, name)
			continue
		}
		require.True(t, ok, name)
		require.Equal(t, want, sub, name)
	}
}
