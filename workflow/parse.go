package workflow

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/handoff-dev/handoff/internal/yamlstrict"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/xfer"
)

// The YAML form. Parse checks a document against these types (unknown and
// repeated keys, values of the wrong kind), decodes it, then converts it to
// a Workflow.
type (
	yamlWorkflow struct {
		Name   string      `yaml:"name"`
		Stages []yamlStage `yaml:"stages"`
		Edges  []yamlEdge  `yaml:"edges"`
	}
	yamlStage struct {
		Name        string            `yaml:"name"`
		Function    string            `yaml:"function"`
		Parallelism int               `yaml:"parallelism"`
		Params      map[string]string `yaml:"params"`
		Interface   string            `yaml:"interface"`
		Overlap     *bool             `yaml:"overlap"`
	}
	yamlEdge struct {
		From    string      `yaml:"from"`
		To      string      `yaml:"to"`
		Pattern string      `yaml:"pattern"`
		Mode    string      `yaml:"mode"`
		Key     string      `yaml:"key"`
		Buffers yamlBuffers `yaml:"buffers"`
		Size    byteSize    `yaml:"size"`
	}
	yamlBuffers struct {
		Count int      `yaml:"count"`
		Size  byteSize `yaml:"size"`
	}
)

// byteSize reads 4096, "128KiB", "128Ki", "64MiB", "64M" or "1.5GiB".
type byteSize int64

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a size such as 128KiB, 64MiB or 4096")
	}
	s := n.Value
	if strings.HasPrefix(s, "-") {
		return fmt.Errorf("%q is negative; a size is 0 or more bytes", s)
	}
	if base, ok := strings.CutSuffix(s, "iB"); ok { // "128KiB" is spec's "128Ki"
		s = base + "i"
	}
	v, err := spec.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("%q is not a size; write a number of bytes or a number with a unit, such as 4096, 128KiB, 64MiB or 1GiB", n.Value)
	}
	*b = byteSize(v)
	return nil
}

// Parse decodes a YAML workflow, applies defaults and validates it. The
// input must be at most MaxSize bytes and hold one YAML document. Unknown
// fields are errors. Every problem found is reported, as *FieldError values
// with their lines, joined with errors.Join and all wrapping ErrInvalid.
//
// Parse does not check that the functions are deployed nor that pinned modes
// run; the runner and Build do.
func Parse(b []byte) (*Workflow, error) {
	w, errs := parse(b)
	if len(errs) > 0 {
		return nil, join(errs)
	}
	return w, nil
}

func parse(data []byte) (*Workflow, []*FieldError) {
	if len(data) > MaxSize {
		return nil, []*FieldError{{Msg: "larger than the 1 MiB limit; a workflow is a short YAML file, check the path"}}
	}
	var errs []*FieldError
	report := func(line int, path, msg string) {
		subject, field := split(path)
		errs = append(errs, &FieldError{Line: line, Subject: subject, Field: field, Msg: msg, path: path})
	}
	root := yamlstrict.Document(data, "the workflow is empty; write name:, stages: and edges:",
		"a second YAML document; put one workflow in each file", report)
	if root == nil {
		return nil, errs
	}
	if root.Kind != yaml.MappingNode {
		return nil, []*FieldError{{Line: root.Line, Msg: fmt.Sprintf("%s is not a workflow; a workflow is a YAML mapping of name:, stages: and edges:", yamlstrict.Describe(root))}}
	}

	// The walk reports malformed fields and blanks them out, so that the rest
	// can still be decoded and validated and the user sees every problem.
	fields := yamlstrict.Walk(root, reflect.TypeFor[yamlWorkflow](), report)
	var y yamlWorkflow
	if err := root.Decode(&y); err != nil { // unexpected: the walk has checked every field
		yamlstrict.ReportError(err, report)
		return nil, errs
	}
	// portRef reads "stage" or "stage.port" at field path.
	portRef := func(s, path string) PortRef {
		stage, port, dotted := strings.Cut(s, ".")
		if dotted && port == "" {
			report(fields.Lines[path], path, fmt.Sprintf("%q has an empty port; write %s or %s.port", s, stage, stage))
			fields.Bad[path] = true
		}
		return PortRef{Stage: stage, Port: port}
	}
	w := &Workflow{Name: y.Name}
	for _, s := range y.Stages {
		overlap := s.Overlap == nil || *s.Overlap
		w.Stages = append(w.Stages, Stage{Name: s.Name, Function: s.Function, Parallelism: s.Parallelism, Params: s.Params, Interface: s.Interface, Overlap: overlap})
	}
	for i, e := range y.Edges {
		mode := xfer.Mode(e.Mode)
		if mode == "auto" {
			mode = ""
		}
		w.Edges = append(w.Edges, Edge{
			From: portRef(e.From, fmt.Sprintf("edges[%d].from", i)), To: portRef(e.To, fmt.Sprintf("edges[%d].to", i)),
			Pattern: Pattern(e.Pattern), Mode: mode, Key: e.Key,
			Buffers:  Buffers{Count: e.Buffers.Count, Size: int64(e.Buffers.Size)},
			SizeHint: int64(e.Size),
		})
	}
	w.ApplyDefaults()
	for _, e := range errs {
		e.Subject = subject(w, e.Subject)
	}
	for _, e := range w.validate() {
		if !fields.IsBad(e.path) {
			e.Line = fields.Line(e.path)
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { // in file order; unknown lines last
		return cmp.Compare(uint(a.Line-1), uint(b.Line-1))
	})
	return w, errs
}

// subject names the stage or edge "stages[i]" or "edges[i]" as validation
// errors do, when the item has a name.
func subject(w *Workflow, s string) string {
	var i int
	switch {
	case sscan(s, "stages[%d]", &i) && i < len(w.Stages) && w.Stages[i].Name != "":
		return fmt.Sprintf("stage %q", w.Stages[i].Name)
	case sscan(s, "edges[%d]", &i) && i < len(w.Edges):
		return edgeName(w, i)
	}
	return s
}

func sscan(s, format string, i *int) bool {
	n, err := fmt.Sscanf(s, format, i)
	return n == 1 && err == nil
}

// split turns "edges[1].buffers.size" into ("edges[1]", "buffers.size").
// Parse's errors name list items by index: a malformed item may have no
// name yet.
func split(path string) (subject, field string) {
	if i := strings.Index(path, "]"); i >= 0 && (strings.HasPrefix(path, "stages[") || strings.HasPrefix(path, "edges[")) {
		return path[:i+1], strings.TrimPrefix(path[i+1:], ".")
	}
	return "", path
}
