package workflow

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/handoff-dev/handoff/xfer"
)

// Task is one instance of a stage in a run: stage index Index of Count.
type Task struct {
	ID        string // "<stage>-<index>", such as "gen-0"
	Stage     string
	Index     int
	Count     int // the stage's parallelism
	Function  string
	Params    map[string]string // a copy of the stage's, for this task alone
	Interface string
	// Inputs and Outputs are the task's ports, ordered by name.
	Inputs, Outputs []Port
}

// Port is one port of a task. A port has one part per task on the other
// side of its edge that it exchanges data with; each part is one channel.
type Port struct {
	Name  string
	Parts int
	Edge  int // index into Workflow.Edges
}

// Channel carries one part of an output port to one part of an input port.
type Channel struct {
	ID       string // "c0", "c1"...: unique in the plan, safe in file names and URLs
	Edge     int    // index into Workflow.Edges
	From, To Endpoint
	Buffers  Buffers
	Mode     xfer.Mode
	Reason   string // why this mode, from xfer.Policy.ChooseEdge
}

// Endpoint is one part of one task's port.
type Endpoint struct {
	Task, Port string
	Part       int
}

// Node is a node that can host tasks of a run.
type Node struct {
	ID    string
	Slots int // tasks the node can host in this run
}

// Plan is a workflow expanded into tasks and channels and placed on nodes.
type Plan struct {
	Workflow *Workflow
	Tasks    []Task            // stages in topological order, indexes ascending
	Channels []Channel         // by edge, then producer index, then part
	Node     map[string]string // task ID → node ID
}

// Build expands w into tasks and channels, chooses each edge's mode with p
// and places the tasks on nodes (see the package documentation). It returns
// w's validation errors (ErrInvalid), an error from p for an edge that
// cannot be carried (wrapping xfer.ErrNotRunning or xfer.ErrTooLarge), or
// ErrNoCapacity. Build does not modify w; the plan refers to it.
func Build(w *Workflow, nodes []Node, p xfer.Policy) (*Plan, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if err := checkNodes(nodes); err != nil {
		return nil, err
	}
	plan := &Plan{Workflow: w}
	order, _ := w.order()
	first := map[string]int{} // stage → index of its task 0 in plan.Tasks
	for _, si := range order {
		s := w.Stages[si]
		first[s.Name] = len(plan.Tasks)
		for i := range s.Parallelism {
			t := Task{ID: taskID(s.Name, i), Stage: s.Name, Index: i, Count: s.Parallelism, Function: s.Function, Params: maps.Clone(s.Params), Interface: s.Interface}
			plan.Tasks = append(plan.Tasks, t)
		}
	}
	stages := map[string]Stage{}
	for _, s := range w.Stages {
		stages[s.Name] = s
	}

	for ei, e := range w.Edges {
		from, to := stages[e.From.Stage], stages[e.To.Stage]
		mode, reason, err := p.ChooseEdge(xfer.EdgeFacts{
			From: e.From.String(), To: e.To.String(), Pattern: string(e.Pattern),
			Overlap: to.Overlap, SizeHint: e.SizeHint, Pinned: e.Mode,
		})
		if err != nil {
			return nil, fmt.Errorf("workflow %s: %w", w.Name, err)
		}
		n, m := from.Parallelism, to.Parallelism
		outParts, inParts := producerParts(e.Pattern, m), consumerParts(e.Pattern, n)
		for i := range n {
			t := &plan.Tasks[first[from.Name]+i]
			t.Outputs = append(t.Outputs, Port{Name: e.From.Port, Parts: outParts, Edge: ei})
		}
		for j := range m {
			t := &plan.Tasks[first[to.Name]+j]
			t.Inputs = append(t.Inputs, Port{Name: e.To.Port, Parts: inParts, Edge: ei})
		}
		for i := range n {
			for part := range outParts {
				// Part i of an output goes to consumer task i and part j of
				// an input comes from producer task j; a pipe has one part
				// on each side and joins tasks of the same index.
				consumer, inPart := part, i
				switch e.Pattern {
				case Pipe:
					consumer, inPart = i, 0
				case Broadcast, Partition:
					inPart = 0
				case Merge:
					consumer = 0
				}
				plan.Channels = append(plan.Channels, Channel{
					ID:      "c" + strconv.Itoa(len(plan.Channels)),
					Edge:    ei,
					From:    Endpoint{Task: taskID(from.Name, i), Port: e.From.Port, Part: part},
					To:      Endpoint{Task: taskID(to.Name, consumer), Port: e.To.Port, Part: inPart},
					Buffers: e.Buffers,
					Mode:    mode,
					Reason:  reason,
				})
			}
		}
	}
	for i := range plan.Tasks {
		t := &plan.Tasks[i]
		byName := func(a, b Port) int { return cmp.Compare(a.Name, b.Name) }
		slices.SortFunc(t.Inputs, byName)
		slices.SortFunc(t.Outputs, byName)
	}

	node, err := place(plan, nodes)
	if err != nil {
		return nil, err
	}
	plan.Node = node
	return plan, nil
}

func taskID(stage string, index int) string { return stage + "-" + strconv.Itoa(index) }

func checkNodes(nodes []Node) error {
	seen := map[string]bool{}
	for i, n := range nodes {
		switch {
		case n.ID == "":
			return fmt.Errorf("workflow: nodes[%d] has no ID", i)
		case seen[n.ID]:
			return fmt.Errorf("workflow: node %q is listed twice", n.ID)
		case n.Slots < 0:
			return fmt.Errorf("workflow: node %q has %d slots; a node has 0 or more", n.ID, n.Slots)
		}
		seen[n.ID] = true
	}
	return nil
}

// place assigns every task a node. Tasks are taken in plan order
// (topological); each goes to the node with a free slot that already holds
// the most of the tasks it exchanges channels with, ties going to the node
// with the most free slots, then to the first in nodes.
func place(plan *Plan, nodes []Node) (map[string]string, error) {
	slots := 0
	for _, n := range nodes {
		slots += n.Slots
	}
	if len(plan.Tasks) > slots {
		return nil, fmt.Errorf("%w: workflow %s needs %d slots, one per task, but the nodes offer %d; lower the parallelism of a stage or add nodes", ErrNoCapacity, plan.Workflow.Name, len(plan.Tasks), slots)
	}
	peers := map[string][]string{} // task → the tasks it has channels with, repeats dropped below
	for _, c := range plan.Channels {
		peers[c.From.Task] = append(peers[c.From.Task], c.To.Task)
		peers[c.To.Task] = append(peers[c.To.Task], c.From.Task)
	}
	free := make([]int, len(nodes))
	for i, n := range nodes {
		free[i] = n.Slots
	}
	at := map[string]int{} // task → index in nodes
	placed := make(map[string]string, len(plan.Tasks))
	score := make([]int, len(nodes))
	for _, t := range plan.Tasks {
		clear(score)
		ps := peers[t.ID]
		slices.Sort(ps)
		for _, p := range slices.Compact(ps) {
			if n, ok := at[p]; ok {
				score[n]++
			}
		}
		best := -1
		for i := range nodes {
			if free[i] == 0 {
				continue
			}
			if best < 0 || score[i] > score[best] || score[i] == score[best] && free[i] > free[best] {
				best = i
			}
		}
		if best < 0 { // cannot happen: the slots were counted above
			return nil, errors.New("workflow: placement ran out of slots")
		}
		free[best]--
		at[t.ID] = best
		placed[t.ID] = nodes[best].ID
	}
	return placed, nil
}

// Sources returns the tasks with no inputs, in plan order: they get the
// run's input as their request body.
func (p *Plan) Sources() []Task {
	return slices.DeleteFunc(slices.Clone(p.Tasks), func(t Task) bool { return len(t.Inputs) > 0 })
}

// Sinks returns the tasks with no outputs, in plan order: their response
// body is the run's result.
func (p *Plan) Sinks() []Task {
	return slices.DeleteFunc(slices.Clone(p.Tasks), func(t Task) bool { return len(t.Outputs) > 0 })
}

// Inputs returns the channels into task, ordered by port then part.
func (p *Plan) Inputs(task string) []Channel {
	var cs []Channel
	for _, c := range p.Channels {
		if c.To.Task == task {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b Channel) int {
		return cmp.Or(cmp.Compare(a.To.Port, b.To.Port), cmp.Compare(a.To.Part, b.To.Part))
	})
	return cs
}

// Outputs returns the channels out of task, ordered by port then part.
func (p *Plan) Outputs(task string) []Channel {
	var cs []Channel
	for _, c := range p.Channels {
		if c.From.Task == task {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b Channel) int {
		return cmp.Or(cmp.Compare(a.From.Port, b.From.Port), cmp.Compare(a.From.Part, b.From.Part))
	})
	return cs
}

// Local reports whether both ends of c are placed on the same node, where
// the channel can be a pipe or shared memory instead of a socket.
func (p *Plan) Local(c Channel) bool {
	return p.Node[c.From.Task] == p.Node[c.To.Task]
}
