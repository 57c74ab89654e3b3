package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/spec"
)

// stagefnSpec is internal/stagefn deployed under name.
func stagefnSpec(t *testing.T, name string) spec.Function {
	t.Helper()
	wd, _ := os.Getwd()
	f := spec.Function{Name: name, Run: spec.Run{Go: filepath.Join(wd, "..", "..", "internal", "stagefn")}}
	f.Timeout = spec.Duration(time.Minute)
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

// runWorkflow stores yaml, runs it and waits for its end.
func runWorkflow(t *testing.T, c *api.Client, yaml string) api.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := strings.TrimSpace(strings.TrimPrefix(strings.Split(yaml, "\n")[0], "name:"))
	if err := c.PutWorkflow(ctx, name, []byte(yaml)); err != nil {
		t.Fatalf("put workflow: %v", err)
	}
	run, err := c.StartRun(ctx, name, nil)
	if err != nil {
		t.Fatalf("start run: %v", err)
	}
	for !run.Done() {
		time.Sleep(50 * time.Millisecond)
		if run, err = c.Run(ctx, name, run.ID); err != nil {
			t.Fatalf("run status: %v", err)
		}
	}
	return run
}

type sumResult struct {
	Bytes int64   `json:"bytes"`
	Lines int64   `json:"lines"`
	Parts []int64 `json:"parts"`
}

func results(t *testing.T, r api.Run) map[string]sumResult {
	t.Helper()
	out := map[string]sumResult{}
	for _, res := range r.Results {
		var s sumResult
		if err := json.Unmarshal(res.Output, &s); err != nil {
			t.Fatalf("result of %s: %q: %v", res.Task, res.Output, err)
		}
		out[res.Task] = s
	}
	return out
}

func TestWorkflowPipeline(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, stagefnSpec(t, "stagefn"))
	r := runWorkflow(t, p.Client, `name: pipe3
stages:
  - {name: gen, function: stagefn, parallelism: 2, params: {role: gen, bytes: "10000000"}}
  - {name: pass, function: stagefn, parallelism: 2, params: {role: pass}}
  - {name: sum, function: stagefn, parallelism: 2, params: {role: sum}}
edges:
  - {from: gen, to: pass, pattern: pipe}
  - {from: pass, to: sum, pattern: pipe}
`)
	if r.State != "succeeded" {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	res := results(t, r)
	for _, task := range []string{"sum-0", "sum-1"} {
		if got := res[task].Bytes; got < 10000000-200 || got > 10000000 {
			t.Errorf("%s summed %d bytes, want the ~10000000 gen wrote", task, got)
		}
	}
	for _, e := range r.Edges {
		if e.Mode != "stream" {
			t.Errorf("edge %s→%s ran in mode %s, want stream", e.From, e.To, e.Mode)
		}
	}
	t.Logf("%+v", r)
}
