package dataflow

import (
	"errors"
	"fmt"
	"strings"
)

// chain is a run of operators executed in one goroutine per subtask.
type chain struct {
	id    int
	nodes []*node // head first, in topological order
	par   int
}

func (c *chain) head() *node { return c.nodes[0] }

func (c *chain) name() string {
	names := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		names[i] = n.name
	}
	return strings.Join(names, " -> ")
}

// compiled is the result of compile. The graph itself is never changed by
// compiling, so Plan may run while the job runs.
type compiled struct {
	order   []*node
	chains  []*chain
	chainOf map[*node]*chain
	par     map[*node]int
	part    map[*edge]partitioning // resolved partitioning (never partDefault)
	chained map[*edge]bool
}

// Validate checks the whole job and returns every problem found, each naming
// its operator. A valid job can be planned and run.
func (j *Job) Validate() error {
	_, err := j.compile()
	return err
}

func (j *Job) compile() (*compiled, error) {
	errs := append([]error(nil), j.errs...)
	if err := j.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	var sources, sinks int
	for _, n := range j.nodes {
		switch n.kind {
		case kindSource:
			sources++
		case kindSink:
			sinks++
		}
		for _, p := range n.ports {
			if len(p.consumers) > 0 {
				continue
			}
			if p.tag == "" {
				errs = append(errs, fmt.Errorf("%w: output of %s %q is not used; end it with a sink", ErrNoConsumer, n.kind, n.name))
			} else {
				errs = append(errs, fmt.Errorf("%w: side output %q of %q is not used", ErrNoConsumer, p.tag, n.name))
			}
		}
	}
	if len(j.nodes) > 0 && sources == 0 {
		errs = append(errs, ErrNoSource)
	}
	if sinks == 0 {
		errs = append(errs, fmt.Errorf("%w: job %q", ErrNoSink, j.name))
	}
	order, err := topoSort(j.nodes)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	c := &compiled{order: order, chainOf: map[*node]*chain{}, par: map[*node]int{},
		part: map[*edge]partitioning{}, chained: map[*edge]bool{}}
	for _, n := range order {
		c.par[n] = j.par(n)
	}
	for _, n := range order {
		for _, e := range n.inputs {
			same := c.par[e.from] == c.par[n]
			part := e.part
			switch part {
			case partDefault:
				if same {
					part = partForward
				} else {
					part = partRebalance
				}
			case partForward:
				if !same {
					errs = append(errs, fmt.Errorf("%w: %q (parallelism %d) to %q (parallelism %d)", ErrForward, e.from.name, c.par[e.from], n.name, c.par[n]))
				}
			}
			// Between two single subtasks every exchange degenerates to forward,
			// so a keyed or rebalanced edge at parallelism 1 is chained too: a
			// goroutine hand-off would only add cost.
			oneToOne := part == partForward || c.par[n] == 1 && c.par[e.from] == 1
			c.part[e] = part
			c.chained[e] = oneToOne && same && len(n.inputs) == 1 && !n.noChain && !e.from.noChain
		}
		if len(n.inputs) == 1 && c.chained[n.inputs[0]] {
			ch := c.chainOf[n.inputs[0].from]
			ch.nodes = append(ch.nodes, n)
			c.chainOf[n] = ch
			continue
		}
		ch := &chain{id: len(c.chains), nodes: []*node{n}, par: c.par[n]}
		c.chains = append(c.chains, ch)
		c.chainOf[n] = ch
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// topoSort orders nodes so every edge goes forward, or reports a cycle.
func topoSort(nodes []*node) ([]*node, error) {
	indeg := make(map[*node]int, len(nodes))
	for _, n := range nodes {
		indeg[n] = len(n.inputs)
	}
	var queue, order []*node
	for _, n := range nodes {
		if indeg[n] == 0 {
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		order = append(order, n)
		for _, p := range n.ports {
			for _, e := range p.consumers {
				indeg[e.to]--
				if indeg[e.to] == 0 {
					queue = append(queue, e.to)
				}
			}
		}
	}
	if len(order) < len(nodes) {
		var stuck []string
		for _, n := range nodes {
			if indeg[n] > 0 {
				stuck = append(stuck, fmt.Sprintf("%q", n.name))
			}
		}
		return nil, fmt.Errorf("%w: through operators %s", ErrCycle, strings.Join(stuck, ", "))
	}
	return order, nil
}
