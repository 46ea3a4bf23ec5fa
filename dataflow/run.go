package dataflow

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluicedata/sluice/internal/keygroup"
)

// Run validates the job, starts every subtask and waits until the input ends
// and everything downstream has finished (bounded sources), the job fails, or
// ctx is cancelled.
//
// On failure Run returns the first error, an *OperatorError naming the operator
// and subtask; the other subtasks are cancelled. When ctx is cancelled Run
// returns ctx's error. In every case all goroutines the job started have
// returned and every opened operator has been closed before Run returns.
func (j *Job) Run(ctx context.Context) error {
	if !j.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %q", ErrAlreadyRunning, j.name)
	}
	defer j.running.Store(false)
	c, err := j.compile()
	if err != nil {
		return err
	}
	tasks, err := j.instantiate(c)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, t := range tasks {
		t.ctx = runCtx
		wg.Go(func() {
			if err := t.run(); err != nil {
				cancel(err) // only the first cause is kept
			}
		})
	}
	wg.Wait()
	return context.Cause(runCtx)
}

type buildCtx struct {
	t    *task
	idx  int
	outs []any // per port: the typed Output (fan-out over its consumers)
	oc   *OperatorContext
}

func (b *buildCtx) watermarkers() []watermarker {
	ws := make([]watermarker, len(b.outs))
	for i, o := range b.outs {
		ws[i] = o.(watermarker)
	}
	return ws
}

// instantiate makes every subtask of every chain and wires the exchanges.
func (j *Job) instantiate(c *compiled) (tasks []*task, err error) {
	cfg := j.cfg
	// Channel layout of each chain head's gate: one channel per producer
	// subtask of each input edge (one for forward edges).
	type gateInfo struct {
		gates  []any // per subtask
		notify []chan struct{}
		chans  int
	}
	base := map[*edge]int{}
	heads := map[*chain]*gateInfo{}
	for _, ch := range c.chains {
		h := ch.head()
		if h.kind == kindSource {
			continue
		}
		gi := &gateInfo{}
		for _, e := range h.inputs {
			base[e] = gi.chans
			if c.part[e] == partForward {
				gi.chans++
			} else {
				gi.chans += c.par[e.from]
			}
		}
		for s := 0; s < ch.par; s++ {
			n := make(chan struct{}, 1)
			gi.notify = append(gi.notify, n)
			gi.gates = append(gi.gates, h.in.newGate(gi.chans, cfg.QueueBatches, cfg.BatchSize, n))
		}
		heads[ch] = gi
	}

	for _, ch := range c.chains {
		for s := 0; s < ch.par; s++ {
			t := &task{name: ch.name(), subtask: s, par: ch.par, linger: cfg.Linger, clock: cfg.Clock, ops: make([]opSlot, len(ch.nodes))}
			inputs := map[*node]any{}
			for i := len(ch.nodes) - 1; i >= 0; i-- {
				n := ch.nodes[i]
				b := &buildCtx{t: t, idx: i, oc: &OperatorContext{
					Job: j.name, Operator: n.name, Subtask: s, Parallelism: ch.par,
					MaxParallelism: cfg.MaxParallelism, KeyGroups: keygroup.RangeFor(s, ch.par, cfg.MaxParallelism),
					side: map[string]any{},
				}}
				for _, p := range n.ports {
					var outs []any
					for _, e := range p.consumers {
						if c.chained[e] {
							outs = append(outs, inputs[e.to])
							continue
						}
						gi := heads[c.chainOf[e.to]]
						var targets []target
						if c.part[e] == partForward {
							targets = []target{{gi.gates[s], base[e]}}
						} else {
							for k := 0; k < c.par[e.to]; k++ {
								targets = append(targets, target{gi.gates[k], base[e] + s})
							}
						}
						out, w := p.typ.newWriter(targets, c.part[e], e.hash, cfg.MaxParallelism, cfg.BatchSize, t)
						t.writers = append(t.writers, w)
						outs = append(outs, out)
					}
					f := p.typ.fanout(outs)
					b.outs = append(b.outs, f)
					if p.tag != "" {
						b.oc.side[p.tag] = f
					}
				}
				in, life, err := buildNode(n, b)
				if err != nil {
					return nil, fmt.Errorf("dataflow: %s %q (subtask %d): %w", n.kind, n.name, s, err)
				}
				inputs[n] = in
				t.ops[i] = opSlot{name: n.name, oc: b.oc, life: life}
				if n.kind == kindSource {
					t.src = life.(sourceRunner)
				}
			}
			if gi := heads[ch]; gi != nil {
				h := ch.head()
				t.inputs = []input{h.in.newInput(gi.gates[s], 0, inputs[h])}
				t.head = inputs[h].(watermarker)
				t.notify = gi.notify[s]
				t.chWm = make([]Timestamp, gi.chans)
				for i := range t.chWm {
					t.chWm[i] = MinWatermark
				}
				t.ended = make([]bool, gi.chans)
				t.idle = make([]bool, gi.chans)
			}
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

// buildNode runs the node's factory, which is user code and may panic.
func buildNode(n *node, b *buildCtx) (in any, life lifecycle, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in factory: %v", r)
		}
	}()
	return n.build(b)
}
