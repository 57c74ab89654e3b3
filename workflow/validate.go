package workflow

import (
	"container/heap"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/xfer"
)

// Validate checks w, with defaults applied, against the rules in the package
// documentation. It returns every problem, as *FieldError values joined with
// errors.Join, each wrapping ErrInvalid; nil when w is valid.
//
// Validate does not check that the modes pinned on edges are running: that
// is xfer.Policy's call, made by Build.
func (w *Workflow) Validate() error {
	return join(w.validate())
}

// checker collects the problems of one workflow.
type checker struct {
	w    *Workflow
	errs []*FieldError
}

func (c *checker) add(subject, path, field, format string, args ...any) {
	if field != "" {
		path += "." + field
	}
	c.errs = append(c.errs, &FieldError{Subject: subject, Field: field, Msg: fmt.Sprintf(format, args...), path: strings.TrimPrefix(path, ".")})
}

func (c *checker) stage(i int, field, format string, args ...any) {
	subject := fmt.Sprintf("stages[%d]", i)
	if n := c.w.Stages[i].Name; n != "" {
		subject = fmt.Sprintf("stage %q", n)
	}
	c.add(subject, fmt.Sprintf("stages[%d]", i), field, format, args...)
}

func (c *checker) edge(i int, field, format string, args ...any) {
	c.add(edgeName(c.w, i), fmt.Sprintf("edges[%d]", i), field, format, args...)
}

// edgeName names edge i in messages: "edge gen.out→count.in".
func edgeName(w *Workflow, i int) string {
	e := w.Edges[i]
	if e.From.Stage == "" || e.To.Stage == "" {
		return fmt.Sprintf("edges[%d]", i)
	}
	return fmt.Sprintf("edge %s→%s", e.From, e.To)
}

const dnsRule = "use 1–63 lowercase letters, digits and '-', starting with a letter and not ending with '-'"

func validName(s string) bool { return spec.CheckName(s) == nil }

func (w *Workflow) validate() []*FieldError {
	c := &checker{w: w}
	switch {
	case w.Name == "":
		c.add("", "", "name", `missing; set a DNS label such as "wordcount"`)
	case !validName(w.Name):
		c.add("", "", "name", "%q is not a DNS label; %s", w.Name, dnsRule)
	}
	if len(w.Stages) == 0 {
		c.add("", "", "stages", "no stages; list at least one, each with a name and a function")
	}

	names := map[string]int{}
	tasks := 0
	for i, s := range w.Stages {
		switch {
		case s.Name == "":
			c.stage(i, "name", `missing; name the stage with a DNS label such as "count"`)
		case !validName(s.Name):
			c.stage(i, "name", "%q is not a DNS label; %s", s.Name, dnsRule)
		default:
			if first, dup := names[s.Name]; dup {
				c.stage(i, "name", "also the name of stages[%d]; give each stage its own name", first)
			} else {
				names[s.Name] = i
			}
		}
		switch {
		case s.Function == "":
			c.stage(i, "function", "missing; set the deployed function the stage runs")
		case !validName(s.Function):
			c.stage(i, "function", "%q is not a function name; %s", s.Function, dnsRule)
		}
		if s.Parallelism < 1 || s.Parallelism > MaxParallelism {
			c.stage(i, "parallelism", "%d is out of range; set 1 to %d tasks", s.Parallelism, MaxParallelism)
		} else {
			tasks += s.Parallelism
		}
		if s.Interface != InterfaceStream && s.Interface != InterfaceHTTP {
			c.stage(i, "interface", "unknown interface %q; use stream (an SDK stage handler, the default) or http (any HTTP function)", s.Interface)
		}
		for _, k := range slices.Sorted(maps.Keys(s.Params)) {
			switch {
			case k == "":
				c.stage(i, "params", "a parameter has an empty name; name it")
			case strings.ContainsRune(k, 0) || strings.ContainsRune(s.Params[k], 0):
				c.stage(i, fmt.Sprintf("params[%q]", k), "contains a NUL byte; remove it")
			}
		}
	}
	if tasks > MaxTasks {
		c.add("", "", "stages", "the stages add up to %d tasks, more than the %d a run holds; lower their parallelism", tasks, MaxTasks)
	}

	// known reports whether stage name exists with a valid parallelism, and
	// returns it.
	known := func(name string) (Stage, bool) {
		i, ok := names[name]
		if !ok {
			return Stage{}, false
		}
		s := w.Stages[i]
		return s, s.Parallelism >= 1 && s.Parallelism <= MaxParallelism
	}
	outputs := map[PortRef]int{} // port → the first edge that uses it
	inputs := map[PortRef]int{}
	ins := map[string][]string{} // stage → its input ports
	outs := map[string][]string{}
	channels := 0
	for i, e := range w.Edges {
		fromOK := c.port(i, "from", e.From, "producer", names)
		toOK := c.port(i, "to", e.To, "consumer", names)
		if fromOK {
			if first, dup := outputs[e.From]; dup {
				c.edge(i, "from", "port %s already feeds %s; each port belongs to one edge: give this edge its own port, such as %s.%s2", e.From, edgeName(w, first), e.From.Stage, e.From.Port)
			} else {
				outputs[e.From] = i
				outs[e.From.Stage] = append(outs[e.From.Stage], e.From.Port)
			}
		}
		if toOK {
			if first, dup := inputs[e.To]; dup {
				c.edge(i, "to", "port %s is already fed by %s; each port belongs to one edge: give this edge its own port, such as %s.%s2, or merge the producers into one stage", e.To, edgeName(w, first), e.To.Stage, e.To.Port)
			} else {
				inputs[e.To] = i
				ins[e.To.Stage] = append(ins[e.To.Stage], e.To.Port)
			}
		}

		patternOK := slices.Contains(Patterns, e.Pattern)
		if !patternOK {
			c.edge(i, "pattern", "unknown pattern %q; use pipe, broadcast, partition, merge or shuffle", e.Pattern)
		}
		if e.Mode != "" && !slices.Contains(xfer.Modes, e.Mode) {
			c.edge(i, "mode", "unknown mode %q; use auto (the default), inline, ref, stream or store", e.Mode)
		}
		keyed := e.Pattern == Partition || e.Pattern == Shuffle
		switch {
		case !patternOK:
		case keyed && e.Key != KeyHash && e.Key != KeyRoundRobin:
			c.edge(i, "key", "unknown key %q; use hash (the default) or roundrobin", e.Key)
		case !keyed && e.Key != "":
			c.edge(i, "key", "set on a %s edge; a key spreads records on partition and shuffle edges only: remove it", e.Pattern)
		}
		if n := e.Buffers.Count; n < MinBufferCount || n > MaxBufferCount {
			c.edge(i, "buffers.count", "%d is out of range; set %d to %d buffers per channel", n, MinBufferCount, MaxBufferCount)
		}
		if n := e.Buffers.Size; n < MinBufferSize || n > MaxBufferSize {
			c.edge(i, "buffers.size", "%s is out of range; set %s to %s per buffer", human(n), xfer.Human(MinBufferSize), xfer.Human(MaxBufferSize))
		}
		if e.SizeHint < 0 {
			c.edge(i, "size", "%d is negative; set the bytes one channel carries, or leave size out when not known", e.SizeHint)
		}

		from, fromOK := known(e.From.Stage)
		to, toOK := known(e.To.Stage)
		if !patternOK || !fromOK || !toOK {
			continue
		}
		n, m := from.Parallelism, to.Parallelism
		switch {
		case e.Pattern == Pipe && n != m:
			c.edge(i, "pattern", "pipe connects task i to task i and needs equal parallelism, but %s has %d and %s has %d; set both to the same, or use shuffle (all to all)", from.Name, n, to.Name, m)
		case (e.Pattern == Broadcast || e.Pattern == Partition) && n != 1:
			c.edge(i, "pattern", "%s fans one producer out to every consumer task and needs %s at parallelism 1, but it has %d; set it to 1, or use shuffle", e.Pattern, from.Name, n)
		case e.Pattern == Merge && m != 1:
			c.edge(i, "pattern", "merge gathers every producer task into one consumer and needs %s at parallelism 1, but it has %d; set it to 1, or use shuffle", to.Name, m)
		default:
			channels += n * producerParts(e.Pattern, m)
		}
	}
	if channels > MaxChannels {
		c.add("", "", "edges", "the edges expand to %d channels, more than the %d a run holds; lower the parallelism on the shuffle edges", channels, MaxChannels)
	}

	for i, s := range w.Stages {
		if s.Interface != InterfaceHTTP || names[s.Name] != i {
			continue
		}
		if p := ins[s.Name]; len(p) > 1 {
			c.stage(i, "interface", "an http stage has one input, its request body, but edges feed it on ports %s; feed it through one edge, or make it a stream stage with the SDK", strings.Join(p, ", "))
		}
		if p := outs[s.Name]; len(p) > 1 {
			c.stage(i, "interface", "an http stage has one output, its response body, but edges leave it from ports %s; use one edge from it, or make it a stream stage with the SDK", strings.Join(p, ", "))
		}
	}

	if _, cycle := w.order(); cycle != nil {
		path := make([]string, len(cycle))
		for i, s := range cycle {
			path[i] = w.Stages[s].Name
		}
		c.add("", "", "edges", "edges form a cycle %s; a workflow is a DAG: remove or reverse one of these edges", strings.Join(path, " → "))
	}
	return c.errs
}

// port checks the producer or consumer end (field "from" or "to") of edge i.
func (c *checker) port(i int, field string, r PortRef, role string, names map[string]int) bool {
	switch {
	case r.Stage == "":
		c.edge(i, field, "missing; set the %s as stage or stage.port", role)
	case !validName(r.Stage):
		c.edge(i, field, "%q is not a stage name; %s", r.Stage, dnsRule)
	case !hasKey(names, r.Stage):
		c.edge(i, field, "no stage is named %q; connect stages listed under stages:%s", r.Stage, stageList(c.w))
	case !validName(r.Port):
		c.edge(i, field, "%q is not a port name; %s", r.Port, dnsRule)
	default:
		return true
	}
	return false
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// stageList lists the stages' names for a message, when they are few.
func stageList(w *Workflow) string {
	if len(w.Stages) == 0 || len(w.Stages) > 8 {
		return ""
	}
	var names []string
	for _, s := range w.Stages {
		if s.Name != "" && !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	return " " + strings.Join(names, ", ")
}

// human formats a byte count that may be negative.
func human(n int64) string {
	if n < 0 {
		return fmt.Sprintf("%d B", n)
	}
	return xfer.Human(n)
}

// order returns the stages' indexes in topological order, the lowest index
// first among the stages that are ready, and nil; or, when the edges form a
// cycle, nil and the stages of one cycle, the first repeated at the end.
// Edges naming unknown stages are left out.
func (w *Workflow) order() (order, cycle []int) {
	index := map[string]int{}
	for i, s := range w.Stages {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
	}
	succ := make([][]int, len(w.Stages))
	pred := make([][]int, len(w.Stages))
	indeg := make([]int, len(w.Stages))
	for _, e := range w.Edges {
		from, ok1 := index[e.From.Stage]
		to, ok2 := index[e.To.Stage]
		if ok1 && ok2 {
			succ[from] = append(succ[from], to)
			pred[to] = append(pred[to], from)
			indeg[to]++
		}
	}
	ready := &intHeap{}
	for i, d := range indeg {
		if d == 0 {
			heap.Push(ready, i)
		}
	}
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		order = append(order, i)
		for _, j := range succ[i] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(order) == len(w.Stages) {
		return order, nil
	}
	// Every stage left has a predecessor that is left too: walking back
	// from one must come round to a stage already seen.
	start := slices.IndexFunc(indeg, func(d int) bool { return d > 0 })
	seen := map[int]int{} // stage → position in walk
	var walk []int
	for i := start; ; {
		if at, ok := seen[i]; ok {
			cycle = slices.Clone(walk[at:])
			slices.Reverse(cycle)
			// Start at the stage declared first, as users read it.
			first := slices.Index(cycle, slices.Min(cycle))
			cycle = slices.Concat(cycle[first:], cycle[:first])
			return nil, append(cycle, cycle[0])
		}
		seen[i] = len(walk)
		walk = append(walk, i)
		for _, p := range pred[i] {
			if indeg[p] > 0 {
				i = p
				break
			}
		}
	}
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
