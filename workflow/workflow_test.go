package workflow

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/xfer"
)

var running = xfer.Policy{Available: map[xfer.Mode]bool{xfer.Ref: true, xfer.Stream: true}}

func TestParseSample(t *testing.T) {
	b, err := os.ReadFile("testdata/wordcount.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Workflow{
		Name: "wordcount",
		Stages: []Stage{
			{Name: "gen", Function: "wc-gen", Parallelism: 4, Params: map[string]string{"size": "1GiB", "seed": "42"}, Interface: InterfaceStream, Overlap: true},
			{Name: "count", Function: "wc-count", Parallelism: 2, Interface: InterfaceStream, Overlap: true},
			{Name: "sort", Function: "wc-sort", Parallelism: 1, Interface: InterfaceStream, Overlap: false},
			{Name: "format", Function: "wc-format", Parallelism: 1, Interface: InterfaceHTTP, Overlap: true},
		},
		Edges: []Edge{
			{From: PortRef{"gen", "words"}, To: PortRef{"count", "in"}, Pattern: Shuffle, Key: KeyHash, Buffers: Buffers{16, 256 << 10}},
			{From: PortRef{"count", "out"}, To: PortRef{"sort", "in"}, Pattern: Merge, Buffers: Buffers{8, 128 << 10}, SizeHint: 64 << 20},
			{From: PortRef{"sort", "out"}, To: PortRef{"format", "in"}, Pattern: Pipe, Buffers: Buffers{8, 128 << 10}, SizeHint: 8 << 10},
		},
	}
	if !reflect.DeepEqual(w, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", w, want)
	}
	if got := w.Edges[0].Buffers.Bytes(); got != 4<<20 {
		t.Errorf("Buffers.Bytes() = %d; want 4 MiB", got)
	}
}

func TestParseValues(t *testing.T) {
	const head = "name: w\nstages: [{name: a, function: f, params: {n: 4, on: true, s: x}}, {name: b, function: f}]\n"
	for in, want := range map[string]int64{
		"4096": 4096, "128KiB": 128 << 10, "128Ki": 128 << 10, "1.5MiB": 3 << 19, "64M": 64e6, "1GiB": 1 << 30,
	} {
		w, err := Parse([]byte(head + "edges: [{from: a, to: b, size: " + in + "}]\n"))
		if err != nil || w.Edges[0].SizeHint != want {
			t.Errorf("size %s: %v; want %d", in, err, want)
			continue
		}
		if p := w.Stages[0].Params; p["n"] != "4" || p["on"] != "true" || p["s"] != "x" {
			t.Errorf("params = %v; want scalars as strings", p)
		}
	}
	for in, says := range map[string]string{
		"-1": "negative", "1KB": "not a size", "lots": "not a size", "[1]": "want a size",
	} {
		_, err := Parse([]byte(head + "edges: [{from: a, to: b, size: " + in + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("size %s: error %v; want %q on line 3", in, err, says)
		}
	}
	w, err := Parse([]byte(head + "edges: [{from: a, to: b, mode: auto}, {from: a.x, to: b.y, mode: ref}]\n"))
	if err != nil || w.Edges[0].Mode != "" || w.Edges[1].Mode != xfer.Ref {
		t.Errorf("modes: %v, %+v; want auto as \"\" and ref", err, w)
	}
}

func TestParseErrors(t *testing.T) {
	for in, says := range map[string][]string{
		"":                 {"empty"},
		"name: a\n---\nb:": {"line 2", "second YAML document"},
		"- a":              {"line 1", "not a workflow"},
		"name: a\nname: b\nstages: [{name: s, function: f}]":                   {"line 2", `"name" is set twice`},
		"name: a\nstages: [{name: s, function: f, paralellism: 2}]":            {"line 2", `did you mean "parallelism"`},
		"name: a\nstages: [{name: s, function: f, overlap: maybe}]":            {"line 2", "not true or false"},
		"name: a\nstages: [{name: s, function: f}]\nedges: [{from: s, to: s}]": {"line 3", "cycle s → s"},
		strings.Repeat("#", MaxSize+1):                                         {"1 MiB"},
	} {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.40q) = %v; want ErrInvalid", in, err)
			continue
		}
		for _, s := range says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Parse(%.40q) error %q does not say %q", in, err, s)
			}
		}
	}
}

func TestFieldErrors(t *testing.T) {
	_, err := Parse([]byte("name: a\nstages:\n  - {name: s, function: f, parallelism: 0}\n  - {name: t, function: f, parallelism: 2000}\n"))
	var fes []*FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		fes = append(fes, fe)
	}
	// parallelism 0 is the default 1, so only t is out of range.
	if len(fes) != 1 || fes[0].Line != 4 || fes[0].Subject != `stage "t"` || fes[0].Field != "parallelism" {
		t.Fatalf("errors = %v; want one for stage t's parallelism on line 4", err)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	w := &Workflow{
		Name:   "hand",
		Stages: []Stage{{Name: "a", Function: "f", Parallelism: 2}, {Name: "b", Function: "g", Overlap: true}},
		Edges:  []Edge{{From: PortRef{Stage: "a"}, To: PortRef{Stage: "b"}, Pattern: Merge}},
	}
	if err := w.Validate(); err == nil {
		t.Fatal("Validate before ApplyDefaults succeeded; want missing ports and buffers")
	}
	w.ApplyDefaults()
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if e := w.Edges[0]; e.From.Port != "out" || e.To.Port != "in" || e.Buffers != (Buffers{8, 128 << 10}) || e.Key != "" {
		t.Errorf("defaults: %+v", e)
	}
	if err := (&Workflow{}).Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no stages") {
		t.Errorf("zero Workflow: %v", err)
	}
}

func TestValidateMessages(t *testing.T) {
	base := func() *Workflow {
		return &Workflow{
			Name: "w",
			Stages: []Stage{
				{Name: "a", Function: "f", Parallelism: 4, Interface: InterfaceStream},
				{Name: "b", Function: "f", Parallelism: 2, Interface: InterfaceStream},
			},
			Edges: []Edge{{From: PortRef{"a", "out"}, To: PortRef{"b", "in"}, Pattern: Shuffle, Key: KeyHash, Buffers: Buffers{8, 128 << 10}}},
		}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base: %v", err)
	}
	tests := []struct {
		name   string
		change func(w *Workflow)
		says   []string
	}{
		{"pipe", func(w *Workflow) { w.Edges[0].Pattern, w.Edges[0].Key = Pipe, "" }, []string{"edge a.out→b.in", "equal parallelism", "a has 4 and b has 2"}},
		{"broadcast", func(w *Workflow) { w.Edges[0].Pattern, w.Edges[0].Key = Broadcast, "" }, []string{"needs a at parallelism 1"}},
		{"partition", func(w *Workflow) { w.Edges[0].Pattern = Partition }, []string{"needs a at parallelism 1"}},
		{"merge", func(w *Workflow) { w.Edges[0].Pattern, w.Edges[0].Key = Merge, "" }, []string{"needs b at parallelism 1"}},
		{"key on merge", func(w *Workflow) { w.Stages[1].Parallelism, w.Edges[0].Pattern = 1, Merge }, []string{"key: set on a merge edge", "partition and shuffle edges only"}},
		{"unknown key", func(w *Workflow) { w.Edges[0].Key = "random" }, []string{`unknown key "random"`}},
		{"unknown stage", func(w *Workflow) { w.Edges[0].To.Stage = "c" }, []string{`no stage is named "c"`, "a, b"}},
		{"bad port", func(w *Workflow) { w.Edges[0].From.Port = "Out" }, []string{`"Out" is not a port name`}},
		{"duplicate stage", func(w *Workflow) { w.Stages[1].Name = "a" }, []string{`stage "a"`, "also the name of stages[0]"}},
		{"port twice", func(w *Workflow) { w.Edges = append(w.Edges, w.Edges[0]) }, []string{"port a.out already feeds edge a.out→b.in", "port b.in is already fed"}},
		{"cycle", func(w *Workflow) {
			w.Edges = append(w.Edges, Edge{From: PortRef{"b", "back"}, To: PortRef{"a", "back"}, Pattern: Shuffle, Key: KeyHash, Buffers: Buffers{1, 4 << 10}})
		}, []string{"cycle a → b → a"}},
		{"buffers", func(w *Workflow) { w.Edges[0].Buffers = Buffers{1025, 65<<20 + 1} }, []string{"1025 is out of range", "out of range; set 4 KiB to 64 MiB"}},
		{"mode", func(w *Workflow) { w.Edges[0].Mode = "fast" }, []string{`unknown mode "fast"`}},
		{"parallelism", func(w *Workflow) { w.Stages[0].Parallelism = -1 }, []string{"-1 is out of range; set 1 to 1024"}},
		{"interface", func(w *Workflow) { w.Stages[0].Interface = "" }, []string{`unknown interface ""`}},
		{"params", func(w *Workflow) { w.Stages[0].Params = map[string]string{"": "x", "k": "a\x00"} }, []string{"empty name", `params["k"]: contains a NUL byte`}},
		{"tasks", func(w *Workflow) {
			for i := range 17 {
				w.Stages = append(w.Stages, Stage{Name: fmt.Sprintf("s%d", i), Function: "f", Parallelism: 1024, Interface: InterfaceStream})
			}
		}, []string{"17414 tasks, more than the 16384"}},
	}
	for _, tt := range tests {
		w := base()
		tt.change(w)
		err := w.Validate()
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v; want ErrInvalid", tt.name, err)
			continue
		}
		for _, s := range tt.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tt.name, err, s)
			}
		}
	}
	// A pinned store mode is valid here; only a Policy refuses it.
	w := base()
	w.Edges[0].Mode = xfer.Store
	if err := w.Validate(); err != nil {
		t.Errorf("store pinned: %v", err)
	}
	if _, err := Build(w, []Node{{"n", 6}}, running); !errors.Is(err, xfer.ErrNotRunning) {
		t.Errorf("Build with store pinned = %v; want xfer.ErrNotRunning", err)
	}
}

// shape builds a two-stage workflow a → b with one edge of pattern p.
func shape(n, m int, p Pattern) *Workflow {
	w := &Workflow{
		Name:   "shape",
		Stages: []Stage{{Name: "a", Function: "f", Parallelism: n, Overlap: true}, {Name: "b", Function: "g", Parallelism: m, Overlap: true}},
		Edges:  []Edge{{From: PortRef{Stage: "a"}, To: PortRef{Stage: "b"}, Pattern: p}},
	}
	w.ApplyDefaults()
	return w
}

func TestParts(t *testing.T) {
	tests := []struct {
		p               Pattern
		n, m            int
		outParts, inPts int
		channels        []string // "a-i[part]→b-j[part]"
	}{
		{Pipe, 2, 2, 1, 1, []string{"a-0[0]→b-0[0]", "a-1[0]→b-1[0]"}},
		{Broadcast, 1, 3, 3, 1, []string{"a-0[0]→b-0[0]", "a-0[1]→b-1[0]", "a-0[2]→b-2[0]"}},
		{Partition, 1, 2, 2, 1, []string{"a-0[0]→b-0[0]", "a-0[1]→b-1[0]"}},
		{Merge, 3, 1, 1, 3, []string{"a-0[0]→b-0[0]", "a-1[0]→b-0[1]", "a-2[0]→b-0[2]"}},
		{Shuffle, 2, 3, 3, 2, []string{
			"a-0[0]→b-0[0]", "a-0[1]→b-1[0]", "a-0[2]→b-2[0]",
			"a-1[0]→b-0[1]", "a-1[1]→b-1[1]", "a-1[2]→b-2[1]",
		}},
	}
	for _, tt := range tests {
		p, err := Build(shape(tt.n, tt.m, tt.p), []Node{{"n1", 3}, {"n2", 3}}, running)
		if err != nil {
			t.Fatalf("%s: %v", tt.p, err)
		}
		checkPlan(t, p)
		var got []string
		for _, c := range p.Channels {
			got = append(got, fmt.Sprintf("%s[%d]→%s[%d]", c.From.Task, c.From.Part, c.To.Task, c.To.Part))
		}
		if !slices.Equal(got, tt.channels) {
			t.Errorf("%s: channels %v; want %v", tt.p, got, tt.channels)
		}
		for _, task := range p.Tasks {
			ports, want := task.Outputs, tt.outParts
			if task.Stage == "b" {
				ports, want = task.Inputs, tt.inPts
			}
			if len(ports) != 1 || ports[0].Parts != want || ports[0].Edge != 0 {
				t.Errorf("%s: task %s ports %+v; want one of %d parts", tt.p, task.ID, ports, want)
			}
		}
		if src, sink := p.Sources(), p.Sinks(); len(src) != tt.n || len(sink) != tt.m || src[0].ID != "a-0" || sink[0].ID != "b-0" {
			t.Errorf("%s: sources %v, sinks %v", tt.p, src, sink)
		}
	}
}

func TestInputsOutputsOrder(t *testing.T) {
	w := &Workflow{
		Name: "ports",
		Stages: []Stage{
			{Name: "x", Function: "f", Parallelism: 2}, {Name: "y", Function: "f"},
			{Name: "z", Function: "f", Parallelism: 2},
		},
		Edges: []Edge{
			{From: PortRef{"x", "zeta"}, To: PortRef{"z", "b"}, Pattern: Pipe},
			{From: PortRef{"y", "out"}, To: PortRef{"z", "a"}, Pattern: Broadcast},
			{From: PortRef{"x", "alpha"}, To: PortRef{"z", "c"}, Pattern: Shuffle},
		},
	}
	w.ApplyDefaults()
	p, err := Build(w, []Node{{"n", 5}}, running)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p)
	var in []string
	for _, c := range p.Inputs("z-1") {
		in = append(in, fmt.Sprintf("%s[%d]<-%s", c.To.Port, c.To.Part, c.From.Task))
	}
	if want := []string{"a[0]<-y-0", "b[0]<-x-1", "c[0]<-x-0", "c[1]<-x-1"}; !slices.Equal(in, want) {
		t.Errorf("Inputs(z-1) = %v; want %v", in, want)
	}
	var out []string
	for _, c := range p.Outputs("x-0") {
		out = append(out, fmt.Sprintf("%s[%d]->%s", c.From.Port, c.From.Part, c.To.Task))
	}
	if want := []string{"alpha[0]->z-0", "alpha[1]->z-1", "zeta[0]->z-0"}; !slices.Equal(out, want) {
		t.Errorf("Outputs(x-0) = %v; want %v", out, want)
	}
	if x := p.Tasks[0]; x.ID != "x-0" || x.Outputs[0].Name != "alpha" || x.Outputs[1].Name != "zeta" {
		t.Errorf("task x-0 ports not by name: %+v", x.Outputs)
	}
	if len(p.Inputs("nope")) != 0 || len(p.Outputs("z-0")) != 0 {
		t.Error("channels for a task with none")
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	b, _ := os.ReadFile("testdata/wordcount.yaml")
	w, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []Node{{"n1", 3}, {"n2", 3}, {"n3", 3}}
	p1, err1 := Build(w, nodes, running)
	p2, err2 := Build(w, nodes, running)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(p1, p2) {
		t.Fatalf("two builds differ (%v, %v)", err1, err2)
	}
	checkPlan(t, p1)
	p1.Tasks[0].Params["size"] = "changed"
	if w.Stages[0].Params["size"] != "1GiB" {
		t.Error("a task's params share the stage's map")
	}
	if _, err := Build(&Workflow{}, nodes, running); !errors.Is(err, ErrInvalid) {
		t.Errorf("Build of an invalid workflow = %v; want ErrInvalid", err)
	}
	if _, err := Build(w, nodes[:1], running); !errors.Is(err, ErrNoCapacity) || !strings.Contains(err.Error(), "needs 8 slots") || !strings.Contains(err.Error(), "offer 3") {
		t.Errorf("Build on too few slots = %v; want ErrNoCapacity saying 8 and 3", err)
	}
}

// checkPlan checks a plan's invariants: every task placed within the
// nodes' slots, unique channel IDs, and each port's parts joined by exactly
// one channel each, to a task of the edge's other stage.
func checkPlan(t testing.TB, p *Plan) {
	t.Helper()
	ids := map[string]bool{}
	for _, c := range p.Channels {
		if ids[c.ID] {
			t.Fatalf("channel ID %s twice", c.ID)
		}
		ids[c.ID] = true
		if c.Mode == "" || c.Reason == "" || c.Buffers != p.Workflow.Edges[c.Edge].Buffers {
			t.Fatalf("channel %+v lacks its edge's mode or buffers", c)
		}
	}
	type end struct {
		task, port string
		part       int
		out        bool
	}
	used := map[end]int{}
	for _, c := range p.Channels {
		used[end{c.From.Task, c.From.Port, c.From.Part, true}]++
		used[end{c.To.Task, c.To.Port, c.To.Part, false}]++
	}
	ends := 0
	for _, task := range p.Tasks {
		if p.Node[task.ID] == "" {
			t.Fatalf("task %s is not placed", task.ID)
		}
		for _, side := range []struct {
			ports []Port
			out   bool
		}{{task.Inputs, false}, {task.Outputs, true}} {
			for _, port := range side.ports {
				for part := range port.Parts {
					if n := used[end{task.ID, port.Name, part, side.out}]; n != 1 {
						t.Fatalf("task %s port %s part %d has %d channels; want 1", task.ID, port.Name, part, n)
					}
					ends++
				}
			}
		}
	}
	if ends != 2*len(p.Channels) {
		t.Fatalf("%d port parts for %d channels", ends, len(p.Channels))
	}
}
