package workflow

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

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
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, []*FieldError{{Msg: "the workflow is empty; write name:, stages: and edges:"}}
	} else if err != nil {
		return nil, yamlErrors(err)
	}
	if err := dec.Decode(&next); err == nil {
		return nil, []*FieldError{{Line: next.Line, Msg: "a second YAML document; put one workflow in each file"}}
	} else if err != io.EOF {
		return nil, yamlErrors(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root = deref(root); root.Kind != yaml.MappingNode {
		return nil, []*FieldError{{Line: root.Line, Msg: fmt.Sprintf("%s is not a workflow; a workflow is a YAML mapping of name:, stages: and edges:", describe(root))}}
	}

	// The walk reports malformed fields and blanks them out, so that the rest
	// can still be decoded and validated and the user sees every problem.
	wk := walker{lines: map[string]int{}, bad: map[string]bool{}, seen: map[visit]bool{}}
	wk.mapping(root, reflect.TypeFor[yamlWorkflow](), "")
	var y yamlWorkflow
	if err := root.Decode(&y); err != nil { // unexpected: the walk has checked every field
		return nil, append(wk.errs, yamlErrors(err)...)
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
			From: wk.portRef(e.From, fmt.Sprintf("edges[%d].from", i)), To: wk.portRef(e.To, fmt.Sprintf("edges[%d].to", i)),
			Pattern: Pattern(e.Pattern), Mode: mode, Key: e.Key,
			Buffers:  Buffers{Count: e.Buffers.Count, Size: int64(e.Buffers.Size)},
			SizeHint: int64(e.Size),
		})
	}
	w.ApplyDefaults()
	errs := wk.errs
	for _, e := range errs {
		e.Subject = subject(w, e.Subject)
	}
	for _, e := range w.validate() {
		if !wk.isBad(e.path) {
			e.Line = wk.line(e.path)
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { // in file order; unknown lines last
		return cmp.Compare(uint(a.Line-1), uint(b.Line-1))
	})
	return w, errs
}

// portRef reads "stage" or "stage.port" at field path.
func (wk *walker) portRef(s, path string) PortRef {
	stage, port, dotted := strings.Cut(s, ".")
	if dotted && port == "" {
		wk.add(wk.lines[path], path, "%q has an empty port; write %s or %s.port", s, stage, stage)
		wk.bad[path] = true
	}
	return PortRef{Stage: stage, Port: port}
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

var yamlLine = regexp.MustCompile(`(?s)^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors turns an error from the YAML package into problems with lines.
func yamlErrors(err error) []*FieldError {
	msgs := []string{err.Error()}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	}
	var errs []*FieldError
	for _, m := range msgs {
		e := &FieldError{Msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			e.Line, _ = strconv.Atoi(sub[1])
			e.Msg = sub[2]
		}
		errs = append(errs, e)
	}
	return errs
}

type visit struct {
	n *yaml.Node
	t reflect.Type
}

// walker checks a YAML tree against the yaml* types before decoding:
// unknown and repeated keys, and values of the wrong kind, each with its
// line and field path ("edges[1].buffers.size"). It records each field's
// line so that validation errors can point at it.
type walker struct {
	errs  []*FieldError
	lines map[string]int  // field path → line of its key or list item
	bad   map[string]bool // field paths already reported
	seen  map[visit]bool  // guards against walking aliased nodes twice
}

// add reports a problem at field path, naming the stage or edge it is in.
func (wk *walker) add(line int, path, format string, args ...any) {
	subject, field := split(path)
	wk.errs = append(wk.errs, &FieldError{Line: line, Subject: subject, Field: field, Msg: fmt.Sprintf(format, args...), path: path})
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

// line returns the line of path, or of the nearest field containing it.
func (wk *walker) line(path string) int {
	for {
		if l, ok := wk.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// isBad reports whether path or a field containing it has been reported.
func (wk *walker) isBad(path string) bool {
	for {
		if wk.bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// mapping walks n, which should be a mapping for struct type t. It drops
// repeated keys from n, and reports false if n is not a mapping.
func (wk *walker) mapping(n *yaml.Node, t reflect.Type, path string) bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		wk.add(n.Line, path, "%s is not a mapping of fields", describe(n))
		return false
	}
	if wk.seen[visit{n, t}] {
		return true
	}
	wk.seen[visit{n, t}] = true
	keys := map[string]int{}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			if wk.merge(v, t, path) {
				kept = append(kept, k, v)
			}
			continue
		}
		if !wk.key(k, keys, path) {
			continue
		}
		kept = append(kept, k, v)
		sf, ok := fieldByKey(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, t); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			wk.add(k.Line, path, "%s", msg)
			continue
		}
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		wk.lines[sub] = k.Line
		wk.value(v, sf.Type, sub)
	}
	n.Content = kept
	return true
}

// key checks that k is a scalar key not seen before in its mapping.
func (wk *walker) key(k *yaml.Node, keys map[string]int, path string) bool {
	if k.Kind != yaml.ScalarNode {
		wk.add(k.Line, path, "%s is not a valid key; keys are plain names", describe(k))
		return false
	}
	if first, dup := keys[k.Value]; dup {
		wk.add(k.Line, path, "%q is set twice (first on line %d); keep one", k.Value, first)
		return false
	}
	keys[k.Value] = k.Line
	return true
}

// merge walks the value of a YAML merge key ("<<: *base").
func (wk *walker) merge(v *yaml.Node, t reflect.Type, path string) bool {
	if d := deref(v); d.Kind == yaml.SequenceNode {
		ok := true
		for _, m := range d.Content {
			ok = wk.mapping(m, t, path) && ok
		}
		return ok
	}
	return wk.mapping(v, t, path)
}

// value checks the value of field path, of Go type t. A bad value is
// reported and replaced by null.
func (wk *walker) value(v *yaml.Node, t reflect.Type, path string) {
	d := deref(v)
	if d.ShortTag() == "!!null" {
		return
	}
	blank := func() {
		wk.bad[path] = true
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: v.Line, Column: v.Column}
	}
	switch t.Kind() {
	case reflect.Struct:
		if !wk.mapping(d, t, path) {
			blank()
		}
		return
	case reflect.Slice: // of stages or edges
		if d.Kind != yaml.SequenceNode {
			wk.add(v.Line, path, "%s is not a list", describe(d))
			blank()
			return
		}
		if wk.seen[visit{d, t}] {
			return
		}
		wk.seen[visit{d, t}] = true
		for i, item := range d.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			wk.lines[sub] = item.Line
			wk.value(item, t.Elem(), sub)
		}
		return
	case reflect.Map:
		if d.Kind == yaml.MappingNode {
			keys := map[string]int{}
			for i := 0; i+1 < len(d.Content); i += 2 {
				if k := d.Content[i]; wk.key(k, keys, path) {
					wk.lines[fmt.Sprintf("%s[%q]", path, k.Value)] = k.Line
				} else {
					blank()
					return
				}
			}
		}
	}
	if err := v.Decode(reflect.New(t).Interface()); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if _, ok := err.(*yaml.TypeError); ok {
			msg = fmt.Sprintf("%s is not %s", describe(d), kindName(t))
		}
		wk.add(v.Line, path, "%s", msg)
		blank()
	}
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ","); name == key {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

// suggest returns the field of t closest to key when it is a likely typo.
func suggest(key string, t reflect.Type) string {
	best, bestDist := "", 0
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		d := editDistance(strings.ToLower(key), strings.ToLower(name))
		if d <= max(1, len(name)/3) && (best == "" || d < bestDist) {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a typo; keep the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe shows a YAML node in a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "empty"
		}
		v := []rune(n.Value)
		if len(v) > 40 {
			return strconv.Quote(string(v[:40]) + "...")
		}
		return strconv.Quote(n.Value)
	}
	return "an alias"
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Pointer: // *bool
		return "true or false"
	case reflect.Map:
		return "a mapping of names to strings"
	}
	return "a " + t.String()
}
