package yamlstrict

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// doc has a field of every kind Walk handles.
type (
	doc struct {
		Name   string            `yaml:"name"`
		Count  int               `yaml:"count"`
		Big    int64             `yaml:"big"`
		Ratio  float64           `yaml:"ratio"`
		On     *bool             `yaml:"on"`
		Tags   []string          `yaml:"tags"`
		Env    map[string]string `yaml:"env"`
		Inner  inner             `yaml:"inner"`
		Ptr    *inner            `yaml:"ptr"`
		Items  []inner           `yaml:"items"`
		Size   size              `yaml:"size"`
		Hidden string            // no yaml tag: not a field Walk knows
	}
	inner struct {
		Min  int    `yaml:"min"`
		Max  int    `yaml:"max"`
		Mode string `yaml:"mode"`
	}
)

// size has its own UnmarshalYAML, as spec.Bytes does.
type size int64

func (s *size) UnmarshalYAML(n *yaml.Node) error {
	if n.Value != "big" {
		return fmt.Errorf("%q is not a size", n.Value)
	}
	*s = 1 << 20
	return nil
}

// walk parses in, walks it as a doc and returns the reports as
// "line: path: msg", the fields, and the doc decoded after the walk.
func walk(t *testing.T, in string) ([]string, *Fields, doc) {
	t.Helper()
	var got []string
	report := func(line int, path, msg string) { got = append(got, fmt.Sprintf("%d: %s: %s", line, path, msg)) }
	root := Document([]byte(in), "empty", "second", report)
	if root == nil {
		t.Fatalf("Document(%q): %q", in, got)
	}
	fields := Walk(root, reflect.TypeFor[doc](), report)
	var d doc
	if err := root.Decode(&d); err != nil {
		t.Errorf("Decode(%q) after Walk: %v", in, err)
	}
	return got, fields, d
}

func TestWalkReports(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"name: a\ncount: 1\nbig: 9000000000\nratio: 0.5\non: false\ntags: [x, y]\nenv: {A: b}\ninner: {min: 1}\nptr: {max: 2}\nitems: [{mode: m}]\nsize: big\n", nil},
		{"name: ~\ninner:\nitems: null\n", nil},

		// Unknown and repeated keys.
		{"nme: a\n", []string{`1: : unknown field "nme" (did you mean "name"?)`}},
		{"NAME: a\n", []string{`1: : unknown field "NAME" (did you mean "name"?)`}},
		{"nmae: a\n", []string{`1: : unknown field "nmae"`}},
		{"colour: red\n", []string{`1: : unknown field "colour"`}},
		{"Hidden: x\n", []string{`1: : unknown field "Hidden"`}},
		{"inner: {mn: 1, mode: a}\n", []string{`1: inner: unknown field "mn" (did you mean "min"?)`}},
		{"name: a\nname: b\n", []string{`2: : "name" is set twice (first on line 1); keep one`}},
		{"? [a]\n: 1\n", []string{`1: : a list is not a valid key; keys are plain names`}},

		// Values of the wrong kind.
		{"count: ten\n", []string{`1: count: "ten" is not an integer`}},
		{"big: x\n", []string{`1: big: "x" is not an integer`}},
		{"ratio: half\n", []string{`1: ratio: "half" is not a number`}},
		{"on: maybe\n", []string{`1: on: "maybe" is not true or false`}},
		{"name: [a]\n", []string{`1: name: a list is not a string`}},
		{"tags: {a: b}\n", []string{`1: tags: a mapping is not a list of strings`}},
		{"tags: x\n", []string{`1: tags: "x" is not a list of strings`}},
		{"env: [A]\n", []string{`1: env: a list is not a mapping of names to strings`}},
		{"env: {A: [x]}\n", []string{`1: env: a mapping is not a mapping of names to strings`}},
		{"env: {A: x, A: y}\n", []string{`1: env: "A" is set twice (first on line 1); keep one`}},
		{"inner: 3\n", []string{`1: inner: "3" is not a mapping of fields`}},
		{"ptr: [1]\n", []string{`1: ptr: a list is not a mapping of fields`}},
		{"items: {a: b}\n", []string{`1: items: a mapping is not a list`}},
		{"items:\n  - {min: 1}\n  - 3\n  - {max: x}\n", []string{
			`3: items[1]: "3" is not a mapping of fields`, `4: items[2].max: "x" is not an integer`}},
		{"size: small\n", []string{`1: size: "small" is not a size`}},
		{"name: " + strings.Repeat("x", 50) + "\ncount: " + strings.Repeat("y", 50) + "\n", []string{
			`2: count: "` + strings.Repeat("y", 40) + `..." is not an integer`}},

		// Several problems, in the order met.
		{"count: x\ninner: {min: y, max: z}\nfoo: 1\n", []string{
			`1: count: "x" is not an integer`, `2: inner.min: "y" is not an integer`,
			`2: inner.max: "z" is not an integer`, `3: : unknown field "foo"`}},

		// Aliases and merges.
		{"inner: &i {min: 1}\nptr: *i\nitems: [*i, *i]\n", nil},
		{"inner: &i {min: x}\nptr: *i\n", []string{`1: inner.min: "x" is not an integer`}},
		{"inner: &i {min: 1, mode: m}\nitems: [{<<: *i, max: 2}]\n", nil},
		{"inner: {<<: [{min: 1}, {max: 2}]}\n", nil},
		{"inner: {<<: {colour: 1}}\n", []string{`1: inner: unknown field "colour"`}},
		{"inner: {<<: 3, min: 1}\n", []string{`1: inner: "3" is not a mapping of fields`}},
		{"inner: {<<: [{min: 1}, x]}\n", []string{`1: inner: "x" is not a mapping of fields`}},
		{"inner: {<<: {min: 1}, <<: {max: 2}}\n", []string{`1: inner: "<<" is set twice (first on line 1); keep one`}},
		{"inner: {<<: {min: 1}, \"<<\": 2}\n", []string{`1: inner: "<<" is set twice (first on line 1); keep one`}},
		{"inner: &i {min: 1}\nname: *i\n", []string{`2: name: a mapping is not a string`}},
		{"tags: &t [a]\nitems: *t\n", []string{`1: items[0]: "a" is not a mapping of fields`}},
	} {
		got, _, _ := walk(t, tt.in)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Walk(%q)\ngot  %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestWalkKeepsGoodValues(t *testing.T) {
	_, _, d := walk(t, "name: a\ncount: x\ncount: 2\ninner: {<<: {min: 1}, max: 2, mode: [m]}\nitems: [3, {min: 4}]\nenv: {A: b}\n")
	want := doc{Name: "a", Inner: inner{Min: 1, Max: 2}, Items: []inner{{Min: 4}}, Env: map[string]string{"A": "b"}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", d, want)
	}
}

func TestWalkFields(t *testing.T) {
	_, f, _ := walk(t, "name: a\ninner:\n  min: x\n  max: 2\nitems:\n  - {min: 1}\n  -\n    mode: y\nenv:\n  A: b\ntags: q\n")
	for path, want := range map[string]int{
		"name": 1, "inner": 2, "inner.min": 3, "inner.max": 4, "items": 5, "items[0]": 6, "items[0].min": 6,
		"items[1]": 8, "items[1].mode": 8, "env": 9, `env["A"]`: 10, "tags": 11,
	} {
		if got := f.Lines[path]; got != want {
			t.Errorf("Lines[%q] = %d, want %d", path, got, want)
		}
	}
	for path, want := range map[string]int{"inner.nothing": 2, "items[1].max": 8, "items[7].mode": 5, "ratio": 0, "": 0} {
		if got := f.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
	for path, want := range map[string]bool{"inner.min": true, "inner.min.x": true, "tags": true, "tags[0]": true, "inner": false, "inner.max": false, "name": false, "": false} {
		if got := f.IsBad(path); got != want {
			t.Errorf("IsBad(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestDocument(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // the root's kind, or the reports
	}{
		{"a: 1\n", "mapping"},
		{"%YAML 1.1\n---\n- a\n", "sequence"},
		{"--- x\n", "scalar"},
		{"---\n", "scalar"},
		{"", `[0: : empty]`},
		{"# only a comment\n", `[0: : empty]`},
		{"a: 1\n---\nb: 2\n", `[2: : second]`},
		{"a: [1\n", `[1: : did not find expected ',' or ']']`},
		{"a: 1\n---\nb: [\n", `[3: : did not find expected node content]`},
		{"a: *nope\n", `[0: : unknown anchor 'nope' referenced]`},
	} {
		var got []string
		root := Document([]byte(tt.in), "empty", "second", func(line int, path, msg string) {
			got = append(got, fmt.Sprintf("%d: %s: %s", line, path, msg))
		})
		s := fmt.Sprint(got)
		if root != nil {
			s = map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "sequence", yaml.ScalarNode: "scalar"}[root.Kind]
		}
		if s != tt.want {
			t.Errorf("Document(%q): %s, want %s", tt.in, s, tt.want)
		}
	}
}

func TestReportError(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("a: x\nb: [1]\n"), &n); err != nil {
		t.Fatal(err)
	}
	var v struct {
		A int `yaml:"a"`
		B int `yaml:"b"`
	}
	err := n.Decode(&v)
	var got []string
	ReportError(err, func(line int, path, msg string) { got = append(got, fmt.Sprintf("%d: %s", line, msg)) })
	want := []string{"1: cannot unmarshal !!str `x` into int", "2: cannot unmarshal !!seq into int"}
	if !slices.Equal(got, want) {
		t.Errorf("ReportError(%v) = %q, want %q", err, got, want)
	}
}

func TestSuggest(t *testing.T) {
	typ := reflect.TypeFor[doc]()
	for key, want := range map[string]string{
		"nam": "name", "NAME": "name", "cuont": "", "coutn": "", "count": "count", "conut": "", "ration": "ratio",
		"iner": "inner", "itmes": "", "x": "", strings.Repeat("a", 100): "",
	} {
		if got := suggest(key, typ); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"name", "nmae", 2}, {strings.Repeat("a", 65), "a", 65}} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, d, tt.d)
		}
	}
}

// FuzzWalk checks that Document and Walk never panic, that every problem
// they find has a line, and that after the walk the document decodes.
func FuzzWalk(f *testing.F) {
	f.Add([]byte("name: a\ncount: 1\nbig: 9000000000\nratio: 0.5\non: false\ntags: [x, y]\nenv: {A: b}\ninner: {min: 1}\nptr: {max: 2}\nitems: [{mode: m}]\nsize: big\n"))
	f.Add([]byte("nmae: a\nname: b\nname: c\ncount: x\nenv: {A: x, A: y, [b]: c}\nitems: [3, {max: [1]}]\nsize: small\n"))
	f.Add([]byte("inner: &i {min: 1, mode: m}\nptr: *i\nitems: [{<<: *i, max: 2}, {<<: [*i, {colour: 1}]}]\ntags: *i\n"))
	f.Add([]byte("a: 1\n---\nb: 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		report := func(line int, path, msg string) {
			if msg == "" {
				t.Fatalf("an empty message at line %d, path %q", line, path)
			}
		}
		root := Document(data, "empty", "second", report)
		if root == nil || root.Kind != yaml.MappingNode {
			return
		}
		Walk(root, reflect.TypeFor[doc](), func(line int, path, msg string) {
			if line < 1 || msg == "" {
				t.Fatalf("report(%d, %q, %q): want a line and a message", line, path, msg)
			}
		})
		var d doc
		if err := root.Decode(&d); err != nil {
			t.Fatalf("Decode after Walk: %v", err)
		}
	})
}
