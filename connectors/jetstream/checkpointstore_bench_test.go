package jetstream_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedata/sluice/checkpoint"
	"github.com/sluicedata/sluice/connectors/jetstream"
)

const (
	benchCkptFiles    = 16
	benchCkptFileSize = 4 << 20 // 16 × 4 MiB = 64 MiB per checkpoint
	benchCkptWrite    = 64 << 10
)

// BenchmarkCheckpointStorage writes 64 MiB of checkpoint files through a
// CheckpointStorage (in writes of 64 KiB) and reads them back (Open to EOF,
// size and CRC32C checked), and puts and gets the same bytes with the
// object store's own Put and Get on the same server, alternating which goes
// first. Both use 128 KiB chunks on a file-backed bucket. MB/s is the bytes
// written plus read over the time taken; x-raw is CheckpointStorage's MB/s
// over the object store's.
func BenchmarkCheckpointStorage(b *testing.B) {
	srv := newEmbedded(b)
	ctx := context.Background()
	_, js := connectJS(b, srv.URL())
	st := newCheckpointStorage(b, js, jetstream.CheckpointStorageConfig{})
	rawName := uniqueName(b, "RAW_")
	raw, err := js.CreateObjectStore(ctx, njs.ObjectStoreConfig{Bucket: rawName})
	if err != nil {
		b.Fatal(err)
	}
	deleteBucketAtEnd(b, js, rawName)

	data := make([][]byte, benchCkptFiles)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = make([]byte, benchCkptFileSize)
		for j := range data[i] {
			data[i][j] = byte(rnd.Uint32())
		}
	}
	buf := make([]byte, 256<<10)
	drain := func(r io.ReadCloser, err error) {
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, r, buf)
		if err == nil && n != benchCkptFileSize {
			err = fmt.Errorf("read %d bytes", n)
		}
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	var oursW, oursR, rawT time.Duration

	runOurs := func(id int64) {
		start := time.Now()
		refs := make([]checkpoint.FileRef, 0, len(data))
		for i, d := range data {
			w, err := st.Create(ctx, id, fmt.Sprintf("op/%d/keyed", i))
			if err != nil {
				b.Fatal(err)
			}
			for p := d; len(p) > 0; {
				k := min(len(p), benchCkptWrite)
				if _, err := w.Write(p[:k]); err != nil {
					b.Fatal(err)
				}
				p = p[k:]
			}
			ref, err := w.Commit()
			if err != nil {
				b.Fatal(err)
			}
			refs = append(refs, ref)
		}
		mid := time.Now()
		for _, ref := range refs {
			drain(st.Open(ctx, ref))
		}
		oursW += mid.Sub(start)
		oursR += time.Since(mid)
	}
	runRaw := func(id int64) {
		start := time.Now()
		for i, d := range data {
			if _, err := raw.PutBytes(ctx, fmt.Sprintf("chk-%d/op/%d/keyed", id, i), d); err != nil {
				b.Fatal(err)
			}
		}
		for i := range data {
			res, err := raw.Get(ctx, fmt.Sprintf("chk-%d/op/%d/keyed", id, i))
			drain(res, err)
		}
		rawT += time.Since(start)
	}

	b.ResetTimer()
	for i := range b.N {
		id := int64(i + 1)
		if i%2 == 0 {
			runOurs(id)
			runRaw(id)
		} else {
			runRaw(id)
			runOurs(id)
		}
		b.StopTimer()
		if err := st.Discard(ctx, id); err != nil {
			b.Fatal(err)
		}
		for j := range data {
			if err := raw.Delete(ctx, fmt.Sprintf("chk-%d/op/%d/keyed", id, j)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	mb := float64(b.N) * benchCkptFiles * benchCkptFileSize / 1e6
	ours := oursW + oursR
	b.ReportMetric(2*mb/ours.Seconds(), "MB/s")
	b.ReportMetric(mb/oursW.Seconds(), "write-MB/s")
	b.ReportMetric(mb/oursR.Seconds(), "read-MB/s")
	b.ReportMetric(2*mb/rawT.Seconds(), "raw-MB/s")
	b.ReportMetric(rawT.Seconds()/ours.Seconds(), "x-raw")
}
