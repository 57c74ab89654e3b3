package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseFileEcho(t *testing.T) {
	f, err := ParseFile("testdata/echo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := Function{
		Name:        "echo",
		Run:         Run{Go: filepath.Join(dir, "examples/echo"), Dir: dir},
		Concurrency: 100,
		Scale: Scale{Min: 0, Max: 4, Target: 70, StableWindow: DefaultStableWindow,
			PanicWindow: DefaultPanicWindow, ScaleToZeroGrace: DefaultScaleToZeroGrace},
		Memory:  64 << 20,
		Timeout: Duration(30 * time.Second),
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got  %+v\nwant %+v", f, want)
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		in   string
		want Function
	}{
		{"name: a\nrun: {command: app}\n", Function{Name: "a", Run: Run{Command: "app"}, Concurrency: 100,
			Scale: Scale{Max: 10, Target: 70, StableWindow: DefaultStableWindow, PanicWindow: DefaultPanicWindow,
				ScaleToZeroGrace: DefaultScaleToZeroGrace}, Timeout: DefaultTimeout}},
		{"name: a\nrun: {command: app, args: []}\nenv: {}\nconcurrency: 1\nscale: {min: 20}\n", Function{Name: "a",
			Run: Run{Command: "app"}, Concurrency: 1, Scale: Scale{Min: 20, Max: 20, Target: 1,
				StableWindow: DefaultStableWindow, PanicWindow: DefaultPanicWindow,
				ScaleToZeroGrace: DefaultScaleToZeroGrace}, Timeout: DefaultTimeout}},
		{"name: a\nrun: {go: ./x}\nconcurrency: 3\nscale: {panicWindow: 1s, stableWindow: 2s, target: 2.5}\nmemory: 4Mi\n",
			Function{Name: "a", Run: Run{Go: "./x"}, Concurrency: 3, Scale: Scale{Max: 10, Target: 2.5,
				StableWindow: Duration(2 * time.Second), PanicWindow: Duration(time.Second),
				ScaleToZeroGrace: DefaultScaleToZeroGrace}, Memory: 4 << 20, Timeout: DefaultTimeout}},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q)\ngot  %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	const ok = "name: a\nrun: {command: app}\n"
	tests := []struct {
		in   string
		want []string // each must appear in the error
	}{
		{"", []string{"spec: the spec is empty"}},
		{"- a\n", []string{"starts with name:"}},
		{"run: {command: app}\nname: a\n", []string{`line 1: the first key is "run"; a spec must start with name:`}},
		{ok + "---\n" + ok, []string{"line 3: a second YAML document"}},
		{"name: [a\n", []string{"spec: line 1: did not find expected"}},
		{ok + "concurency: 5\n", []string{`spec: line 3: unknown field "concurency" (did you mean "concurrency"?)`}},
		{ok + "scale: {mx: 5}\n", []string{`line 3: scale: unknown field "mx" (did you mean "max"?)`}},
		{ok + "colour: red\n", []string{`unknown field "colour"` + "\n"}},
		{ok + "name: b\n", []string{`line 3: "name" is set twice (first on line 1); keep one`}},
		{ok + "concurrency: ten\n", []string{`line 3: concurrency: "ten" is not an integer`}},
		{ok + "scale: 3\n", []string{`scale: "3" is not a mapping of fields`}},
		{ok + "env: [A]\n", []string{"env: a list is not a mapping of names to strings"}},
		{ok + "memory: 12Q\n", []string{`memory: "12Q" has an unknown unit "Q"`}},
		{ok + "memory: lots\n", []string{`memory: "lots" is not a size`}},
		{ok + "memory: -1\n", []string{"memory: -1 is negative"}},
		{ok + "timeout: 30\n", []string{`timeout: "30" is not a duration`}},
		{"name: Echo_1\nrun: {}\n", []string{`line 1: name: "Echo_1" is not a DNS label`, "run: neither command nor go is set"}},
		{"name: ''\nrun: {command: a, go: b}\n", []string{"name: missing", "line 2: run: both command and go are set; set exactly one"}},
		{"name: a-\nrun: {go: b}\n", []string{"not a DNS label"}},
		{"name: " + strings.Repeat("a", 64) + "\nrun: {go: b}\n", []string{"not a DNS label"}},
		{ok + "concurrency: 10001\n", []string{"concurrency: 10001 is out of range; set 1 to 10000"}},
		{ok + "concurrency: -1\n", []string{"concurrency: -1 is out of range"}},
		{ok + "scale:\n  min: 2\n  max: 1\n", []string{"line 5: scale.max: 1 is below scale.min 2; set max >= min"}},
		{ok + "scale: {min: -1, max: 1001}\n", []string{"scale.min: -1 is negative", "scale.max: 1001 is above 1000"}},
		{ok + "scale: {max: -2}\n", []string{"scale.max: -2 is below 1"}},
		{ok + "scale: {target: -1}\n", []string{"scale.target: -1 is not a positive number"}},
		{ok + "scale: {target: .nan}\n", []string{"scale.target: NaN is not a positive number"}},
		{ok + "concurrency: 10\nscale: {target: 11}\n", []string{"scale.target: 11 is above concurrency 10; set target <= concurrency"}},
		{ok + "scale: {stableWindow: -1s, scaleToZeroGrace: -2s}\n", []string{"scale.stableWindow: -1s is not positive", "scale.scaleToZeroGrace: -2s is not positive"}},
		{ok + "scale: {panicWindow: 2m}\n", []string{"scale.panicWindow: 2m0s is longer than scale.stableWindow 1m0s; set panicWindow <= stableWindow"}},
		{ok + "memory: 1Mi\n", []string{"memory: 1Mi is below the 4Mi minimum; set 0 (no limit) or at least 4Mi"}},
		{ok + "timeout: 61m\n", []string{"timeout: 1h1m0s is above the 1h maximum"}},
		{ok + "timeout: -1s\n", []string{"timeout: -1s is not positive"}},
		{ok + "env:\n  PORT: '1'\n  HANDOFF_X: a\n  1A: b\n  OK_1: c\n", []string{
			`line 4: env["PORT"]: reserved`, `line 5: env["HANDOFF_X"]: names starting with HANDOFF_ are reserved`,
			`line 6: env["1A"]: not a valid variable name`}},
		{ok + "env: {A: \"x\\0y\"}\n", []string{`env["A"]: the value contains a NUL byte`}},
		// Several problems at once, in file order.
		{"name: x\nrun: {go: a}\nconcurency: 1\nmemory: 1k\ntimeout: 2h\n", []string{
			"line 3: unknown field \"concurency\" (did you mean \"concurrency\"?)\nspec: line 4: memory: 1000B is below the 4Mi minimum; set 0 (no limit) or at least 4Mi\nspec: line 5: timeout"}},
		{strings.Repeat("#", MaxSize+1), []string{"spec: larger than the 1 MiB limit"}},
	}
	for _, tt := range tests {
		f, err := Parse([]byte(tt.in))
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", tt.in, f)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q): %v does not wrap ErrInvalid", tt.in, err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("Parse(%q): %v holds no *FieldError", tt.in, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error()+"\n", w) {
				t.Errorf("Parse(%.60q):\n%v\nwant it to contain %q", tt.in, err, w)
			}
		}
	}
}

func TestValidateByHand(t *testing.T) {
	var f Function
	err := f.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate of a zero Function = %v, want ErrInvalid", err)
	}
	f = Function{Name: "a", Run: Run{Command: "x"}}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseFilePaths(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		run  string
		want Run
	}{
		{"{command: app}", Run{Command: "app", Dir: dir}},
		{"{command: ./bin/app}", Run{Command: filepath.Join(dir, "bin/app"), Dir: dir}},
		{"{command: bin/app, dir: work}", Run{Command: filepath.Join(dir, "bin/app"), Dir: filepath.Join(dir, "work")}},
		{"{command: /usr/bin/app, dir: /tmp}", Run{Command: "/usr/bin/app", Dir: "/tmp"}},
		{"{go: ./fn}", Run{Go: filepath.Join(dir, "fn"), Dir: dir}},
		{"{go: ../fn}", Run{Go: filepath.Join(filepath.Dir(dir), "fn"), Dir: dir}},
		{"{go: .}", Run{Go: dir, Dir: dir}},
		{"{go: example.com/fn, dir: ..}", Run{Go: "example.com/fn", Dir: filepath.Dir(dir)}},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "fn.yaml")
		if err := os.WriteFile(path, []byte("name: a\nrun: "+tt.run+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Run, tt.want) {
			t.Errorf("run: %s\ngot  %+v\nwant %+v", tt.run, f.Run, tt.want)
		}
	}

	// A relative spec path resolves against the working directory.
	f, err := ParseFile(filepath.Join(".", "testdata", "echo.yaml"))
	if err != nil || !filepath.IsAbs(f.Run.Go) {
		t.Errorf("relative spec path: %+v, %v", f.Run, err)
	}
}

func TestParseFileErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte("name: a\nrun: {go: x}\ntimeout: 0s\nmemory: 1\n"), 0o644)
	_, err := ParseFile(path)
	if want := "spec: " + path + ":4: memory: 1B is below the 4Mi minimum"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
	_, err = ParseFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, 2*MaxSize), 0o644)
	if _, err := ParseFile(big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1 MiB") {
		t.Errorf("big file: %v", err)
	}
}

func TestAliasesAndMerges(t *testing.T) {
	f, err := Parse([]byte("name: a\nrun: &r {command: app, args: [x]}\nscale:\n  <<: {min: 1}\n  max: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Scale.Min != 1 || f.Scale.Max != 2 || f.Run.Args[0] != "x" {
		t.Errorf("got %+v", f)
	}
	// An alias cannot smuggle a Run field into scale.
	_, err = Parse([]byte("name: a\nrun: &r {command: app}\nscale: *r\n"))
	if err == nil || !strings.Contains(err.Error(), `scale: unknown field "command"`) {
		t.Errorf("got %v", err)
	}
	_, err = Parse([]byte("name: a\nrun: {command: app}\nscale: {<<: {colour: 1}}\n"))
	if err == nil || !strings.Contains(err.Error(), `scale: unknown field "colour"`) {
		t.Errorf("got %v", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	f, err := ParseFile("testdata/echo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.Env = map[string]string{"A": "1"}
	f.Run.Args = []string{"-v"}
	f.Memory = 3 << 29 // 1.5Gi
	f.Scale.Target = 0.1
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"memory":"1.5Gi","timeout":"30s"`) {
		t.Errorf("JSON: %s", data)
	}
	var g Function
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, g) {
		t.Errorf("JSON round trip:\n%+v\n%+v", f, g)
	}
	h, err := ParseJSON(data)
	if err != nil || !reflect.DeepEqual(f, h) {
		t.Errorf("ParseJSON: %+v, %v", h, err)
	}
}

func TestParseJSON(t *testing.T) {
	f, err := ParseJSON([]byte(`{"name":"a","run":{"command":"app"},"memory":67108864}`))
	if err != nil || f.Concurrency != DefaultConcurrency || f.Memory != 64<<20 {
		t.Errorf("got %+v, %v", f, err)
	}
	for in, want := range map[string]string{
		`{"name":"a","run":{"command":"app"},"colour":1}`:  `unknown field "colour"`,
		`{"name":"A","run":{"command":"app"}}`:             "name:",
		`{"name":"a","run":{"command":"app"}} {}`:          "more than one JSON value",
		`{"name":"a","run":{"command":"app"},"timeout":5}`: "duration",
	} {
		if _, err := ParseJSON([]byte(in)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseJSON(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	f, err := Parse([]byte("name: a\nrun: {command: app}\nmemory: 64M\nscale: {target: 33.3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !LooksLikeSpec(data) || !strings.Contains(string(data), "memory: 62500Ki\ntimeout: 5m0s\n") {
		t.Errorf("YAML:\n%s", data)
	}
	g, err := Parse(data)
	if err != nil || !reflect.DeepEqual(f, g) {
		t.Errorf("YAML round trip: %+v, %v", g, err)
	}
}

func TestLooksLikeSpec(t *testing.T) {
	for in, want := range map[string]bool{
		"name: a\n":                       true,
		"\uFEFF# fn\n\n---\nname: a\n":    true,
		"%YAML 1.2\n---\nname: a":         true,
		"run: {}\nname: a\n":              false,
		"  name: a\n":                     false,
		"":                                false,
		"apiVersion: v1\nkind: Service\n": false,
	} {
		if got := LooksLikeSpec([]byte(in)); got != want {
			t.Errorf("LooksLikeSpec(%q) = %v", in, got)
		}
	}
}
