// Package examples holds the example functions; this test checks their specs.
package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/workflow"
)

// TestSpecs parses every example spec as `handoff deploy` does and checks
// that run.go points at the main package beside the spec.
func TestSpecs(t *testing.T) {
	want := map[string]struct {
		concurrency, max int
		memory           spec.Bytes
		timeout          time.Duration
	}{
		"echo":     {100, 4, 64 << 20, 30 * time.Second},
		"wc-gen":   {4, 4, 1 << 30, 5 * time.Minute},
		"wc-count": {4, 4, 1 << 30, 5 * time.Minute},
		"wc-merge": {4, 4, 1 << 30, 5 * time.Minute},

		"wcs-gen":      {1, 8, 1 << 30, 30 * time.Minute},
		"wcs-map":      {1, 8, 1 << 30, 30 * time.Minute},
		"wcs-reduce":   {1, 8, 1 << 30, 30 * time.Minute},
		"wcs-top":      {1, 8, 1 << 30, 30 * time.Minute},
		"pl-gen":       {1, 8, 512 << 20, 30 * time.Minute},
		"pl-transform": {1, 8, 512 << 20, 30 * time.Minute},
		"pl-aggregate": {1, 8, 512 << 20, 30 * time.Minute},
	}
	var workflows []string
	files, err := filepath.Glob("*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"*/*/*.yaml", "*/*/*/*.yaml"} {
		more, _ := filepath.Glob(pattern)
		files = append(files, more...)
	}
	seen := map[string]bool{}
	for _, file := range files {
		if b, _ := os.ReadFile(file); bytes.Contains(b, []byte("\nstages:")) {
			workflows = append(workflows, file)
			continue
		}
		f, err := spec.ParseFile(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		seen[f.Name] = true
		dir, _ := filepath.Abs(filepath.Dir(file))
		if f.Run.Go != dir {
			t.Errorf("%s: run.go resolves to %q, want the spec's directory %q", file, f.Run.Go, dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		w, ok := want[f.Name]
		if !ok {
			t.Errorf("%s: unexpected function %q", file, f.Name)
			continue
		}
		if f.Concurrency != w.concurrency || f.Scale.Max != w.max || f.Scale.Min != 0 || f.Memory != w.memory || time.Duration(f.Timeout) != w.timeout {
			t.Errorf("%s: got concurrency %d, scale max %d min %d, memory %d, timeout %v; want %+v",
				file, f.Concurrency, f.Scale.Max, f.Scale.Min, f.Memory, time.Duration(f.Timeout), w)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no spec for %s", name)
		}
	}
	if len(workflows) < 2 {
		t.Errorf("found workflows %v; want the pipeline and the streaming word count", workflows)
	}
	for _, file := range workflows {
		b, _ := os.ReadFile(file)
		wf, err := workflow.Parse(b)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		for _, st := range wf.Stages {
			if !seen[st.Function] {
				t.Errorf("%s: stage %s runs %s, which has no spec among the examples", file, st.Name, st.Function)
			}
		}
	}
}
