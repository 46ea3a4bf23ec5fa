package checkpoint_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicedata/sluice/checkpoint"
)

// BenchmarkWrite100MB writes a 100 MB file through LocalStorage (buffered,
// CRC32C, fsync on Commit) and, in the same iteration, through a plain
// os.File with a 256 KiB bufio.Writer and an fsync: the baseline. It reports
// both rates and their ratio (storage rate / baseline rate), with and without
// the final fsync.
func BenchmarkWrite100MB(b *testing.B) {
	const size = 100 << 20
	ctx := context.Background()
	dir := b.TempDir()
	st, err := checkpoint.NewLocalStorage(filepath.Join(dir, "storage"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	// local and plain are the whole times; localW and plainW those of the
	// Write calls alone (page cache, before Commit's or the baseline's fsync).
	var local, plain, localW, plainW time.Duration
	var id int64
	writeLocal := func() {
		start := time.Now()
		w, err := st.Create(ctx, id, "state")
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		localW += time.Since(start)
		if _, err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		local += time.Since(start)
	}
	p := filepath.Join(dir, "plain")
	writePlain := func() {
		start := time.Now()
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		bw := bufio.NewWriterSize(f, 256<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := bw.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		plainW += time.Since(start)
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
	}
	for b.Loop() {
		id++
		// Alternate the order: the disk is still busy after an fsync.
		if id%2 == 0 {
			writeLocal()
			writePlain()
		} else {
			writePlain()
			writeLocal()
		}
		b.StopTimer()
		if err := st.Discard(ctx, id); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N) * size / 1e6
	b.ReportMetric(n/local.Seconds(), "MB/s-storage")
	b.ReportMetric(n/plain.Seconds(), "MB/s-baseline")
	b.ReportMetric(plain.Seconds()/local.Seconds(), "ratio")
	b.ReportMetric(n/localW.Seconds(), "MB/s-storage-nosync")
	b.ReportMetric(n/plainW.Seconds(), "MB/s-baseline-nosync")
	b.ReportMetric(plainW.Seconds()/localW.Seconds(), "ratio-nosync")
}

// BenchmarkCommitManifest commits the manifest of a job with 8 operators of
// 16 subtasks, each with a keyed file and an operator file (256 files):
// validation, a size check of every file, JSON, write, fsync, rename and
// directory fsync.
func BenchmarkCommitManifest(b *testing.B) {
	for _, ops := range []int{1, 8} {
		b.Run(fmt.Sprintf("files=%d", ops*16*2), func(b *testing.B) {
			ctx := context.Background()
			st, err := checkpoint.NewLocalStorage(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			m := &checkpoint.Manifest{Version: checkpoint.FormatVersion, Kind: checkpoint.KindCheckpoint, Job: "bench", MaxParallelism: 128}
			for o := range ops {
				op := checkpoint.OperatorState{Name: fmt.Sprintf("op-%02d", o), Parallelism: 16, Subtasks: make([]checkpoint.SubtaskState, 16)}
				for s := range 16 {
					k := writeFile(b, st, 1, fmt.Sprintf("op-%02d/%d/keyed", o, s), []byte("keyed state"))
					v := writeFile(b, st, 1, fmt.Sprintf("op-%02d/%d/operator", o, s), []byte("operator state"))
					op.Subtasks[s] = checkpoint.SubtaskState{Keyed: []checkpoint.FileRef{k}, Operator: &v}
				}
				m.Operators = append(m.Operators, op)
			}
			id := int64(1)
			for b.Loop() {
				m.ID = id
				m.Created = time.Now().UTC()
				if err := st.Commit(ctx, m); err != nil {
					b.Fatal(err)
				}
				id++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/commit")
		})
	}
}
