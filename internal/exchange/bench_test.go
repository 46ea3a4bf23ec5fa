package exchange

import (
	"context"
	"testing"
)

// BenchmarkLocalWrite is the in-process hot path: a round-robin writer over
// two channels of one gate, with the consumer recycling batches.
func BenchmarkLocalWrite(b *testing.B) {
	g := NewGate[int](2, 8, 256, nil)
	ctx := context.Background()
	w, _ := NewWriter([]Target[int]{{Gate: g, Channel: 0}, {Gate: g, Channel: 1}}, RoundRobin, 0, 128, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = w.Write(ctx, i)
		if i%256 == 0 {
			for {
				ch, m, ok := g.Poll()
				if !ok {
					break
				}
				g.Recycle(ch, m.Batch)
			}
		}
	}
}

// BenchmarkLocalKeyed partitions batches of 256 keyed records over two channels.
func BenchmarkLocalKeyed(b *testing.B) {
	g := NewGate[int](2, 8, 256, nil)
	ctx := context.Background()
	w, _ := NewWriter([]Target[int]{{Gate: g, Channel: 0}, {Gate: g, Channel: 1}}, Keyed, 0, 128, 256)
	es := make([]int, 256)
	kgs := make([]uint16, 256)
	for i := range kgs {
		kgs[i] = uint16(i % 128)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = w.WriteKeyed(ctx, es, kgs)
		for {
			ch, m, ok := g.Poll()
			if !ok {
				break
			}
			g.Recycle(ch, m.Batch)
		}
	}
}
