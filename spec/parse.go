package spec

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes a YAML spec, applies defaults and validates it. The input must
// be at most MaxSize bytes, hold exactly one YAML document, and start with the
// key name:. Unknown fields are errors. Every problem found is reported (as
// *FieldError values joined with errors.Join, all wrapping ErrInvalid).
//
// Parse leaves paths in Run as written; ParseFile resolves them.
func Parse(data []byte) (Function, error) {
	f, errs := parse(data)
	if len(errs) > 0 {
		return Function{}, join(errs)
	}
	return f, nil
}

// ParseFile reads and parses the spec at path (see Parse), then makes the
// paths in Run absolute, relative to the spec's directory: Command when it
// contains a slash, Go when it is "." or ".." or starts with "./" or "../",
// and Dir, which defaults to the spec's directory.
func ParseFile(path string) (Function, error) {
	fh, err := os.Open(path)
	if err != nil {
		return Function{}, fmt.Errorf("spec: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxSize+1))
	if err != nil {
		return Function{}, fmt.Errorf("spec: %w", err)
	}
	f, errs := parse(data)
	if len(errs) > 0 {
		for _, e := range errs {
			e.File = path
		}
		return Function{}, join(errs)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Function{}, fmt.Errorf("spec: %w", err)
	}
	f.Run.resolve(filepath.Dir(abs))
	return f, nil
}

// resolve makes r's relative paths absolute against dir.
func (r *Run) resolve(dir string) {
	if strings.Contains(r.Command, "/") && !filepath.IsAbs(r.Command) {
		r.Command = filepath.Join(dir, r.Command)
	}
	if r.Go == "." || r.Go == ".." || strings.HasPrefix(r.Go, "./") || strings.HasPrefix(r.Go, "../") {
		r.Go = filepath.Join(dir, r.Go)
	}
	if !filepath.IsAbs(r.Dir) {
		r.Dir = filepath.Join(dir, r.Dir)
	}
}

// ParseJSON decodes the JSON form of a Function (as the control plane
// receives it on deploy), rejecting unknown fields, then applies defaults and
// validates it. Paths in Run are taken as they are.
func ParseJSON(data []byte) (Function, error) {
	var f Function
	if len(data) > MaxSize {
		return f, join([]*FieldError{tooLarge()})
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Function{}, join([]*FieldError{{Msg: strings.TrimPrefix(err.Error(), "json: ")}})
	}
	if dec.More() {
		return Function{}, join([]*FieldError{{Msg: "more than one JSON value; send one function"}})
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		return Function{}, err
	}
	return f, nil
}

// LooksLikeSpec reports whether data looks like a spec: its first line that
// is not blank, a comment, a directive or "---" starts with "name:".
func LooksLikeSpec(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "\uFEFF")
		switch t := strings.TrimSpace(line); {
		case t == "", t == "---", t[0] == '#', t[0] == '%':
			continue
		}
		return strings.HasPrefix(line, "name:")
	}
	return false
}

func join(errs []*FieldError) error {
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

func tooLarge() *FieldError {
	return &FieldError{Msg: "larger than the 1 MiB limit; a function spec is a short YAML file, check the path"}
}

func parse(data []byte) (Function, []*FieldError) {
	var f Function
	if len(data) > MaxSize {
		return f, []*FieldError{tooLarge()}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return f, []*FieldError{{Msg: "the spec is empty; it must start with name:"}}
	} else if err != nil {
		return f, yamlErrors(err)
	}
	if err := dec.Decode(&next); err == nil {
		return f, []*FieldError{{Line: next.Line, Msg: "a second YAML document; put one function in each file"}}
	} else if err != io.EOF {
		return f, yamlErrors(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode || len(root.Content) == 0 {
		return f, []*FieldError{{Line: root.Line, Msg: "a spec is a YAML mapping that starts with name:, such as \"name: echo\""}}
	}
	if k := root.Content[0]; k.Kind != yaml.ScalarNode || k.Value != "name" {
		return f, []*FieldError{{Line: k.Line, Msg: fmt.Sprintf("the first key is %s; a spec must start with name:", describe(k))}}
	}

	// The walk reports malformed fields and blanks them out, so that the rest
	// can still be decoded and validated and the user sees every problem.
	w := walker{lines: map[string]int{}, bad: map[string]bool{}, seen: map[visit]bool{}}
	w.mapping(root, reflect.TypeFor[Function](), "")
	errs := w.errs
	if err := root.Decode(&f); err != nil { // unexpected: the walk has checked every field
		return Function{}, append(errs, yamlErrors(err)...)
	}
	f.ApplyDefaults()
	for _, e := range f.validate() {
		if !w.isBad(e.Field) {
			if e.Line == 0 {
				e.Line = w.lines[e.Field]
			}
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { // in file order; defaulted fields last
		return cmp.Compare(uint(a.Line-1), uint(b.Line-1))
	})
	return f, errs
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

// walker checks a YAML tree against the Go types before decoding: unknown
// and repeated keys, and values of the wrong kind, each with its line and
// field path. It records each field's line so validation errors can point
// at it.
type walker struct {
	errs  []*FieldError
	lines map[string]int  // field path -> line of its key
	bad   map[string]bool // field paths already reported
	seen  map[visit]bool  // guards against walking aliased nodes twice
}

func (w *walker) add(line int, field, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// isBad reports whether field or a field containing it has been reported.
func (w *walker) isBad(field string) bool {
	for {
		if w.bad[field] {
			return true
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			return false
		}
		field = field[:i]
	}
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
		w.add(n.Line, path, "%s is not a mapping of fields", describe(n))
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
			if w.merge(v, t, path) {
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
		w.lines[sub] = k.Line
		w.value(v, sf.Type, sub)
	}
	n.Content = kept
	return true
}

// key checks that k is a scalar key not seen before in its mapping.
func (w *walker) key(k *yaml.Node, keys map[string]int, path string) bool {
	if k.Kind != yaml.ScalarNode {
		w.add(k.Line, path, "%s is not a valid key; keys are plain names", describe(k))
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
		w.bad[path] = true
		*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: v.Line, Column: v.Column}
	}
	switch t.Kind() {
	case reflect.Struct:
		if !w.mapping(d, t, path) {
			blank()
		}
		return
	case reflect.Map:
		if d.Kind == yaml.MappingNode {
			keys := map[string]int{}
			for i := 0; i+1 < len(d.Content); i += 2 {
				if k := d.Content[i]; w.key(k, keys, path) {
					w.lines[fmt.Sprintf("%s[%q]", path, k.Value)] = k.Line
				}
			}
		}
	}
	if err := v.Decode(reflect.New(t).Interface()); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if _, ok := err.(*yaml.TypeError); ok {
			msg = fmt.Sprintf("%s is not %s", describe(d), kindName(t))
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
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of strings"
	case reflect.Map:
		return "a mapping of names to strings"
	}
	return "a " + t.String()
}
