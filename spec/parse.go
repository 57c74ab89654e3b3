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
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/handoff-dev/handoff/internal/yamlstrict"
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
	var errs []*FieldError
	report := func(line int, field, msg string) {
		errs = append(errs, &FieldError{Line: line, Field: field, Msg: msg})
	}
	root := yamlstrict.Document(data, "the spec is empty; it must start with name:",
		"a second YAML document; put one function in each file", report)
	if root == nil {
		return f, errs
	}
	if root.Kind != yaml.MappingNode || len(root.Content) == 0 {
		return f, []*FieldError{{Line: root.Line, Msg: "a spec is a YAML mapping that starts with name:, such as \"name: echo\""}}
	}
	if k := root.Content[0]; k.Kind != yaml.ScalarNode || k.Value != "name" {
		return f, []*FieldError{{Line: k.Line, Msg: fmt.Sprintf("the first key is %s; a spec must start with name:", yamlstrict.Describe(k))}}
	}

	// The walk reports malformed fields and blanks them out, so that the rest
	// can still be decoded and validated and the user sees every problem.
	fields := yamlstrict.Walk(root, reflect.TypeFor[Function](), report)
	if err := root.Decode(&f); err != nil { // unexpected: the walk has checked every field
		yamlstrict.ReportError(err, report)
		return Function{}, errs
	}
	f.ApplyDefaults()
	for _, e := range f.validate() {
		if !fields.IsBad(e.Field) {
			if e.Line == 0 {
				e.Line = fields.Lines[e.Field]
			}
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { // in file order; defaulted fields last
		return cmp.Compare(uint(a.Line-1), uint(b.Line-1))
	})
	return f, errs
}
