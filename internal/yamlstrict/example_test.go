package yamlstrict_test

import (
	"fmt"
	"reflect"

	"github.com/handoff-dev/handoff/internal/yamlstrict"
)

func Example() {
	type scale struct {
		Min int `yaml:"min"`
		Max int `yaml:"max"`
	}
	type config struct {
		Name  string `yaml:"name"`
		Scale scale  `yaml:"scale"`
	}
	data := []byte("name: echo\nscale:\n  min: one\n  mx: 3\n")

	report := func(line int, path, msg string) { fmt.Printf("line %d: %s: %s\n", line, path, msg) }
	root := yamlstrict.Document(data, "empty file", "one config a file", report)
	if root == nil {
		return
	}
	fields := yamlstrict.Walk(root, reflect.TypeFor[config](), report)
	var c config
	if err := root.Decode(&c); err != nil { // succeeds: the walk blanked scale.min
		yamlstrict.ReportError(err, report)
	}
	if c.Scale.Max == 0 && !fields.IsBad("scale.max") {
		report(fields.Line("scale.max"), "scale.max", "missing; set 1 or more")
	}
	// Output:
	// line 3: scale.min: "one" is not an integer
	// line 4: scale: unknown field "mx" (did you mean "max"?)
	// line 2: scale.max: missing; set 1 or more
}
