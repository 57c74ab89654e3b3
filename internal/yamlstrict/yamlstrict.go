// Package yamlstrict reads YAML strictly for the spec and workflow parsers,
// reporting every problem in a file with its line instead of stopping at
// the first.
//
// Document reads the one YAML document in a file. Walk then checks it
// against a Go struct type before it is decoded: unknown fields (with a
// "did you mean" suggestion), repeated keys, bad merge keys ("<<") and
// values of the wrong kind. It blanks each bad value, so that decoding the
// rest succeeds and validation can still find the problems Walk cannot, and
// it remembers the line of every field so that those later problems can be
// placed too.
//
// Problems go to a Report as a line (0 when unknown), the path of the field
// they are in, such as "scale.max", `env["A"]` or "edges[1].buffers.size"
// ("" for the document as a whole), and a message. Each caller wraps them
// in its own error type.
//
// # Types
//
// Walk knows struct fields by the name in their yaml tag; fields without
// one, and inline or embedded structs, are not supported. Structs,
// pointers to structs and slices of structs are walked field by field and
// item by item (a struct with its own UnmarshalYAML would be walked too:
// give it a non-struct type). Every other field (numbers, strings, *bool,
// slices of strings, maps of names to strings, sizes and durations with
// their own UnmarshalYAML) is decoded on its own, and a value that does not
// decode is reported and blanked.
//
// A list item Walk blanks is dropped when decoding, so the items after it
// move up one; a caller that names items by index should know it.
package yamlstrict

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A Report receives each problem found: its line (0 when unknown), the path
// of the field it is in ("" for the document) and a message.
type Report func(line int, path, msg string)

// Document returns the root node of the one YAML document in data. When
// there is none it reports why and returns nil: a YAML syntax error with
// its line, or in the caller's words that data is empty or (at its line)
// that a second document follows.
func Document(data []byte, empty, second string, report Report) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		report(0, "", empty)
		return nil
	} else if err != nil {
		ReportError(err, report)
		return nil
	}
	if err := dec.Decode(&next); err == nil {
		report(next.Line, "", second)
		return nil
	} else if err != io.EOF {
		ReportError(err, report)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return deref(root)
}

var yamlLine = regexp.MustCompile(`(?s)^(?:yaml: )?line (\d+): (.*)$`)

// ReportError reports err, an error from the yaml package, as problems with
// lines: one for each message of a *yaml.TypeError.
func ReportError(err error, report Report) {
	msgs := []string{err.Error()}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	}
	for _, m := range msgs {
		line, msg := 0, strings.TrimPrefix(m, "yaml: ")
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			line, _ = strconv.Atoi(sub[1])
			msg = sub[2]
		}
		report(line, "", msg)
	}
}

// Fields is what Walk learned about the fields of a document.
type Fields struct {
	// Lines holds the line of each field's key or list item, by path.
	Lines map[string]int
	// Bad holds the paths whose values Walk reported and blanked. A caller
	// may add to it, to keep later checks from reporting a field twice.
	Bad map[string]bool
}

// Line returns the line of path, or of the nearest field containing it; 0
// when there is none.
func (f *Fields) Line(path string) int {
	for {
		if l, ok := f.Lines[path]; ok {
			return l
		}
		if path = parent(path); path == "" {
			return 0
		}
	}
}

// IsBad reports whether path or a field containing it is in Bad.
func (f *Fields) IsBad(path string) bool {
	for ; path != ""; path = parent(path) {
		if f.Bad[path] {
			return true
		}
	}
	return false
}

// parent returns the path of the field containing path: "a.b" for
// "a.b.c" and "a.b[2]", "" for "a".
func parent(path string) string {
	return path[:max(0, strings.LastIndexAny(path, ".["))]
}

// Walk checks root, which should be a mapping, against struct type t and
// reports each problem. It changes root so that decoding it into a t then
// succeeds: it drops repeated keys and bad merges, and replaces bad values
// with null.
func Walk(root *yaml.Node, t reflect.Type, report Report) *Fields {
	w := walker{report: report, Fields: Fields{Lines: map[string]int{}, Bad: map[string]bool{}}, seen: map[visit]bool{}}
	w.mapping(root, t, "")
	return &w.Fields
}

type visit struct {
	n *yaml.Node
	t reflect.Type
}

type walker struct {
	Fields
	report Report
	seen   map[visit]bool // guards against walking aliased nodes twice
}

func (w *walker) add(line int, path, format string, args ...any) {
	w.report(line, path, fmt.Sprintf(format, args...))
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// mapping walks n, which should be a mapping for struct type t. It drops
// repeated keys and bad merges from n, and reports false if n is not a
// mapping.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		w.add(n.Line, path, "%s is not a mapping of fields", Describe(n))
		return false
	}
	if w.seen[visit{n, t}] {
		return true
	}
	w.seen[visit{n, t}] = true
	keys := map[string]int{}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			if w.key(k, keys, path) && w.merge(v, t, path) {
				kept = append(kept, k, v)
			}
			continue
		}
		if !w.key(k, keys, path) {
			continue
		}
		kept = append(kept, k, v)
		sf, ok := fieldByKey(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, t); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.add(k.Line, path, "%s", msg)
			continue
		}
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		w.Lines[sub] = k.Line
		w.value(v, sf.Type, sub)
	}
	n.Content = kept
	return true
}

// key checks that k is a scalar key not seen before in its mapping.
func (w *walker) key(k *yaml.Node, keys map[string]int, path string) bool {
	if k.Kind != yaml.ScalarNode {
		w.add(k.Line, path, "%s is not a valid key; keys are plain names", Describe(k))
		return false
	}
	if first, dup := keys[k.Value]; dup {
		w.add(k.Line, path, "%q is set twice (first on line %d); keep one", k.Value, first)
		return false
	}
	keys[k.Value] = k.Line
	return true
}

// merge walks the value of a YAML merge key ("<<: *base") and reports
// whether it can be kept.
func (w *walker) merge(v *yaml.Node, t reflect.Type, path string) bool {
	if d := deref(v); d.Kind == yaml.SequenceNode {
		ok := true
		for _, m := range d.Content {
			ok = w.mapping(m, t, path) && ok
		}
		return ok
	}
	return w.mapping(v, t, path)
}

// value checks the value of field path, of Go type t. A bad value is
// reported and replaced by null.
func (w *walker) value(v *yaml.Node, t reflect.Type, path string) {
	d := deref(v)
	if d.ShortTag() == "!!null" {
		return
	}
	blank := func() {
		w.Bad[path] = true
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: v.Line, Column: v.Column}
	}
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		if !w.mapping(d, t, path) {
			blank()
		}
		return
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if d.Kind != yaml.SequenceNode {
			w.add(v.Line, path, "%s is not a list", Describe(d))
			blank()
			return
		}
		if w.seen[visit{d, t}] {
			return
		}
		w.seen[visit{d, t}] = true
		for i, item := range d.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			w.Lines[sub] = item.Line
			w.value(item, t.Elem(), sub)
		}
		return
	case t.Kind() == reflect.Map && d.Kind == yaml.MappingNode:
		keys := map[string]int{}
		for i := 0; i+1 < len(d.Content); i += 2 {
			k := d.Content[i]
			if !w.key(k, keys, path) {
				blank()
				return
			}
			w.Lines[fmt.Sprintf("%s[%q]", path, k.Value)] = k.Line
		}
	}
	if err := v.Decode(reflect.New(t).Interface()); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if _, ok := err.(*yaml.TypeError); ok {
			msg = fmt.Sprintf("%s is not %s", Describe(d), kindName(t))
		}
		w.add(v.Line, path, "%s", msg)
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

// Describe shows a YAML node in a message: "a mapping", "a list", "empty",
// or a scalar's value quoted and cut to 40 characters.
func Describe(n *yaml.Node) string {
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

// kindName names what a value of type t must be, after "is not".
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return kindName(t.Elem())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			return "a mapping of names to strings"
		}
		return "a mapping"
	}
	return "a " + t.String()
}
