package dataflow

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Plan is the compiled form of a job: its operators, how they are chained into
// tasks, and the exchanges between tasks.
type Plan struct {
	Job            string         `json:"job"`
	MaxParallelism int            `json:"maxParallelism"`
	Operators      []PlanOperator `json:"operators"`
	Chains         []PlanChain    `json:"chains"`
	Edges          []PlanEdge     `json:"edges"`
}

// PlanOperator is one operator in a Plan.
type PlanOperator struct {
	ID          int      `json:"id"`
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Parallelism int      `json:"parallelism"`
	Keyed       bool     `json:"keyed,omitempty"`
	Input       string   `json:"input,omitempty"`
	Output      string   `json:"output,omitempty"`
	SideOutputs []string `json:"sideOutputs,omitempty"`
	Chain       int      `json:"chain"`
}

// PlanChain is a task: operators run in one goroutine per subtask.
type PlanChain struct {
	ID          int      `json:"id"`
	Operators   []string `json:"operators"`
	Parallelism int      `json:"parallelism"`
}

// PlanEdge connects two operators. Chained edges are direct calls; the others
// are exchanges of the given kind.
type PlanEdge struct {
	From       string `json:"from"`
	SideOutput string `json:"sideOutput,omitempty"`
	To         string `json:"to"`
	Exchange   string `json:"exchange"`
	Chained    bool   `json:"chained"`
}

// Plan validates and compiles the job and describes the result.
func (j *Job) Plan() (*Plan, error) {
	c, err := j.compile()
	if err != nil {
		return nil, err
	}
	p := &Plan{Job: j.name, MaxParallelism: j.cfg.MaxParallelism}
	for _, n := range c.order {
		op := PlanOperator{ID: n.id, Name: n.name, Kind: n.kind.String(), Parallelism: c.par[n], Keyed: n.keyed, Chain: c.chainOf[n].id}
		if n.in != nil {
			op.Input = n.in.name()
		}
		for _, pt := range n.ports {
			if pt.tag == "" {
				op.Output = pt.typ.name()
			} else {
				op.SideOutputs = append(op.SideOutputs, pt.tag+":"+pt.typ.name())
			}
		}
		p.Operators = append(p.Operators, op)
		for _, e := range n.inputs {
			p.Edges = append(p.Edges, PlanEdge{From: e.from.name, SideOutput: e.port.tag, To: n.name, Exchange: c.part[e].String(), Chained: c.chained[e]})
		}
	}
	for _, ch := range c.chains {
		pc := PlanChain{ID: ch.id, Parallelism: ch.par}
		for _, n := range ch.nodes {
			pc.Operators = append(pc.Operators, n.name)
		}
		p.Chains = append(p.Chains, pc)
	}
	return p, nil
}

// String renders the plan as text, one task per paragraph.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %q (max parallelism %d)\n", p.Job, p.MaxParallelism)
	ops := map[string]PlanOperator{}
	for _, o := range p.Operators {
		ops[o.Name] = o
	}
	for _, c := range p.Chains {
		fmt.Fprintf(&b, "task %d x%d: %s\n", c.ID, c.Parallelism, strings.Join(c.Operators, " -> "))
		for _, name := range c.Operators {
			o := ops[name]
			fmt.Fprintf(&b, "  %s %q", o.Kind, o.Name)
			if o.Input != "" {
				fmt.Fprintf(&b, " in=%s", o.Input)
			}
			if o.Output != "" {
				fmt.Fprintf(&b, " out=%s", o.Output)
			}
			if o.Keyed {
				b.WriteString(" keyed")
			}
			for _, s := range o.SideOutputs {
				fmt.Fprintf(&b, " side=%s", s)
			}
			b.WriteByte('\n')
		}
	}
	for _, e := range p.Edges {
		if e.Chained {
			continue
		}
		from := e.From
		if e.SideOutput != "" {
			from += "[" + e.SideOutput + "]"
		}
		fmt.Fprintf(&b, "exchange %s: %s => %s\n", e.Exchange, from, e.To)
	}
	return b.String()
}

// DOT renders the plan for Graphviz: one cluster per task, exchanges as labelled edges.
func (p *Plan) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box];\n", p.Job)
	ids := map[string]int{}
	for _, o := range p.Operators {
		ids[o.Name] = o.ID
	}
	for _, c := range p.Chains {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%q;\n", c.ID, fmt.Sprintf("task %d x%d", c.ID, c.Parallelism))
		for _, name := range c.Operators {
			fmt.Fprintf(&b, "    n%d [label=%q];\n", ids[name], name)
		}
		b.WriteString("  }\n")
	}
	for _, e := range p.Edges {
		label := e.Exchange
		if e.Chained {
			label = "chained"
		}
		if e.SideOutput != "" {
			label += " [" + e.SideOutput + "]"
		}
		style := ""
		if e.Chained {
			style = ", style=dashed"
		}
		fmt.Fprintf(&b, "  n%d -> n%d [label=%q%s];\n", ids[e.From], ids[e.To], label, style)
	}
	b.WriteString("}\n")
	return b.String()
}

// JSON renders the plan as indented JSON.
func (p *Plan) JSON() ([]byte, error) { return json.MarshalIndent(p, "", "  ") }
