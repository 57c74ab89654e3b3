package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/workflow"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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
	wf, err := workflow.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	name := wf.Name
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

// TestWorkflowEdgePatterns runs every edge pattern, on two node agents with
// three task slots each, so that some channels cross between the agents.
func TestWorkflowEdgePatterns(t *testing.T) {
	p := startPlatform(t, t.TempDir(), "--run-slots", "3")
	deploy(t, p.Client, stagefnSpec(t, "stagefn"))
	const size = 3000000
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, r api.Run, res map[string]sumResult)
	}{
		{"broadcast", `name: wf-broadcast
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "3000000"}}
  - {name: sum, function: stagefn, parallelism: 3, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: broadcast}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			for i := 0; i < 3; i++ {
				if got := res[fmt.Sprintf("sum-%d", i)].Bytes; got != res["sum-0"].Bytes || got < size-200 {
					t.Errorf("sum-%d got %d bytes; every consumer of a broadcast gets all of it", i, got)
				}
			}
		}},
		{"partition", `name: wf-partition
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "3000000"}}
  - {name: sum, function: stagefn, parallelism: 3, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: partition, key: hash}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			var total int64
			for i := 0; i < 3; i++ {
				got := res[fmt.Sprintf("sum-%d", i)].Bytes
				if got == 0 || got > size/2 {
					t.Errorf("sum-%d got %d of ~%d bytes; a hash partition spreads them", i, got, size)
				}
				total += got
			}
			if total < size-200 || total > size {
				t.Errorf("partitions hold %d bytes in all, want ~%d", total, size)
			}
		}},
		{"merge", `name: wf-merge
stages:
  - {name: gen, function: stagefn, parallelism: 3, params: {role: gen, bytes: "3000000"}}
  - {name: sum, function: stagefn, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: merge}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			s := res["sum-0"]
			if len(s.Parts) != 3 || s.Bytes < 3*(size-200) {
				t.Errorf("merge: %+v; want 3 parts of ~%d bytes", s, size)
			}
		}},
		{"shuffle", `name: wf-shuffle
stages:
  - {name: gen, function: stagefn, parallelism: 2, params: {role: gen, bytes: "3000000"}}
  - {name: sum, function: stagefn, parallelism: 3, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: shuffle, key: roundrobin}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			var total int64
			for i := 0; i < 3; i++ {
				s := res[fmt.Sprintf("sum-%d", i)]
				if len(s.Parts) != 2 || s.Parts[0] == 0 || s.Parts[1] == 0 {
					t.Errorf("sum-%d: %+v; a shuffle feeds every consumer from every producer", i, s)
				}
				total += s.Bytes
			}
			if total < 2*(size-200) || total > 2*size {
				t.Errorf("shuffle delivered %d bytes in all, want ~%d", total, 2*size)
			}
		}},
		{"http stage and pinned modes", `name: wf-modes
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "3000000"}}
  - {name: upper, function: stagefn, interface: http}
  - {name: pass, function: stagefn, params: {role: pass}}
  - {name: sum, function: stagefn, params: {role: sum}}
edges:
  - {from: gen, to: upper, mode: ref}
  - {from: upper, to: pass, mode: inline}
  - {from: pass, to: sum, mode: stream}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			if got := res["sum-0"].Bytes; got < size-200 || got > size {
				t.Errorf("sum got %d bytes through ref, an http stage and inline; want ~%d", got, size)
			}
			want := []string{"ref", "inline", "stream"}
			for i, e := range r.Edges {
				if e.Mode != want[i] || e.Reason != "pinned" {
					t.Errorf("edge %d ran %s (%s), want %s pinned", i, e.Mode, e.Reason, want[i])
				}
			}
		}},
		{"store mode", `name: wf-store
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "3000000"}}
  - {name: sum, function: stagefn, parallelism: 3, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: broadcast, mode: store}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			// Four tasks on two nodes of three slots: some consumer reads
			// the store from the other node.
			for _, task := range []string{"sum-0", "sum-1", "sum-2"} {
				if got := res[task].Bytes; got < size-200 || got > size {
					t.Errorf("%s got %d bytes through the store, want ~%d", task, got, size)
				}
			}
			if e := r.Edges[0]; e.Mode != "store" || e.Bytes < 3*(size-200) || e.CrossNode == 0 {
				t.Errorf("edge ran %s carrying %d bytes, %d channels across nodes; want store, 3 × ~%d, some across", e.Mode, e.Bytes, e.CrossNode, size)
			}
			// The run's objects went with it.
			n := storeObjects(t, p, "handoff-runs")
			if n != 0 {
				t.Errorf("%d objects of the ended run are left in the store", n)
			}
		}},
		{"gather through the store", `name: wf-gather
stages:
  - {name: gen, function: stagefn, parallelism: 5, params: {role: gen, bytes: "20000"}}
  - {name: sum, function: stagefn, params: {role: sum}}
edges:
  - {from: gen, to: sum, pattern: merge, mode: store}
`, func(t *testing.T, r api.Run, res map[string]sumResult) {
			// Many small outputs, each an object in the run's bucket,
			// gathered by one consumer.
			s := res["sum-0"]
			if len(s.Parts) != 5 || s.Bytes < 5*(20000-200) || s.Bytes > 5*20000 {
				t.Errorf("gather: %+v; want 5 parts of ~20000 bytes", s)
			}
			if e := r.Edges[0]; e.Mode != "store" {
				t.Errorf("edge ran %s, want store", e.Mode)
			}
			if n := storeObjects(t, p, "handoff-runs"); n != 0 {
				t.Errorf("%d objects of the ended run are left in the store", n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWorkflow(t, p.Client, tc.yaml)
			if r.State != "succeeded" {
				t.Fatalf("run %s: %s", r.State, r.Error)
			}
			tc.check(t, r, results(t, r))
			cross := 0
			for _, e := range r.Edges {
				cross += e.CrossNode
			}
			t.Logf("%s: %v, %d cross-node channels", tc.name, r.Elapsed, cross)
		})
	}
}

// TestWorkflowFailuresNameTheStage breaks runs in each way a stage can
// break: the run fails, names where it started, and takes no partial data
// as complete.
func TestWorkflowFailuresNameTheStage(t *testing.T) {
	p := startPlatform(t, t.TempDir(), "--run-slots", "2")
	deploy(t, p.Client, stagefnSpec(t, "stagefn"))
	for _, tc := range []struct {
		name, gen, sum string
		stage          string   // the stage the failure is pinned on
		says           []string // words the error must contain
	}{
		{"producer crash", `crash_after: "2000000"`, ``, "gen", []string{"instance died", "exit status 3", "gen.out→pass.in"}},
		{"consumer crash", ``, `crash_after: "1000000"`, "sum", []string{"instance died", "exit status 3"}},
		{"producer error", `fail_after: "2000000"`, ``, "gen", []string{"failing after"}},
		{"trailer mismatch", `corrupt: "1"`, ``, "pass", []string{"CRC-32C", "corrupted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen := `{role: gen, bytes: "20000000"` + strings.TrimSuffix(", "+tc.gen, ", ") + `}`
			sum := `{role: sum` + strings.TrimSuffix(", "+tc.sum, ", ") + `}`
			r := runWorkflow(t, p.Client, `name: wf-fail
stages:
  - {name: gen, function: stagefn, params: `+gen+`}
  - {name: pass, function: stagefn, params: {role: pass}}
  - {name: sum, function: stagefn, params: `+sum+`}
edges:
  - {from: gen, to: pass}
  - {from: pass, to: sum}
`)
			if r.State != "failed" {
				t.Fatalf("run %s, want failed (results %+v)", r.State, r.Results)
			}
			if len(r.Results) != 0 {
				t.Errorf("a failed run reported results: %+v", r.Results)
			}
			if r.FailedStage != tc.stage {
				t.Errorf("failure pinned on stage %q, want %q: %s", r.FailedStage, tc.stage, r.Error)
			}
			for _, w := range tc.says {
				if !strings.Contains(r.Error, w) {
					t.Errorf("error does not say %q: %s", w, r.Error)
				}
			}
		})
	}
}

// TestWorkflowRetry: a failed run, once its cause is fixed (here, the
// workflow stored again without the failing param), runs again with the
// same input and succeeds.
func TestWorkflowRetry(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, stagefnSpec(t, "stagefn"))
	ctx := context.Background()
	failing := `name: wf-retry
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "4000000", fail_after: "1000000"}}
  - {name: sum, function: stagefn, params: {role: sum}}
edges:
  - {from: gen, to: sum}
`
	r := runWorkflow(t, p.Client, failing)
	if r.State != "failed" || r.FailedStage != "gen" {
		t.Fatalf("run %s (stage %q): %s", r.State, r.FailedStage, r.Error)
	}
	fixed := strings.Replace(failing, `, fail_after: "1000000"`, "", 1)
	if err := p.Client.PutWorkflow(ctx, "wf-retry", []byte(fixed)); err != nil {
		t.Fatal(err)
	}
	again, err := p.Client.RetryRun(ctx, "wf-retry", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, time.Minute, func() error {
		if again, err = p.Client.Run(ctx, "wf-retry", again.ID); err != nil {
			return err
		}
		if !again.Done() {
			return fmt.Errorf("retry still %s", again.State)
		}
		return nil
	})
	if again.State != "succeeded" || again.ID == r.ID {
		t.Fatalf("retry %s ended %s: %s", again.ID, again.State, again.Error)
	}
}

// TestWorkflowBackpressureAndCancel: a slow consumer holds its producer
// back (the channel's fixed buffers fill, then the producer's writes wait);
// canceling the run stops every task and frees the instances.
func TestWorkflowBackpressureAndCancel(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, stagefnSpec(t, "stagefn"))
	ctx := context.Background()
	yaml := `name: wf-slow
stages:
  - {name: gen, function: stagefn, params: {role: gen, bytes: "200000000"}}
  - {name: sum, function: stagefn, params: {role: sum, slow: 20ms}}
edges:
  - {from: gen, to: sum, buffers: {count: 4, size: 64KiB}}
`
	if err := p.Client.PutWorkflow(ctx, "wf-slow", []byte(yaml)); err != nil {
		t.Fatal(err)
	}
	run, err := p.Client.StartRun(ctx, "wf-slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	// sum reads 64 KiB every 20 ms (~3 MiB/s): after two seconds gen, which
	// could write 200 MB in well under that, must still be held back to
	// what sum took plus the channel's buffers (and the pipe's rounding).
	deadline := time.Now().Add(2 * time.Second)
	var samples int
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		r, err := p.Client.Run(ctx, "wf-slow", run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != "running" {
			continue
		}
		gen, sum := r.Stages[0], r.Stages[1]
		if gen.Done != 0 {
			t.Fatalf("the producer finished while its consumer crawled: no backpressure (%+v)", r.Stages)
		}
		if ahead := gen.BytesOut - sum.BytesIn; ahead > 4<<20 {
			t.Fatalf("the producer is %d bytes ahead of its consumer; the channel holds 256 KiB", ahead)
		}
		samples++
	}
	if samples == 0 {
		t.Fatal("the run never reported running")
	}
	if err := p.Client.CancelRun(ctx, "wf-slow", run.ID); err != nil {
		t.Fatal(err)
	}
	var r api.Run
	checkFor(t, 20*time.Second, func() error {
		var err error
		if r, err = p.Client.Run(ctx, "wf-slow", run.ID); err != nil {
			return err
		}
		if !r.Done() {
			return fmt.Errorf("run still %s", r.State)
		}
		return nil
	})
	if r.State != "canceled" {
		t.Fatalf("canceled run ended %s: %s", r.State, r.Error)
	}
	checkFor(t, 20*time.Second, func() error {
		st, err := p.Client.Status(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				if in.Function == "stagefn" {
					return fmt.Errorf("instance %s of the canceled run still %s", in.ID, in.State)
				}
			}
		}
		return nil
	})
}

// TestExampleWorkflows runs the two example workflows, smaller, and checks
// their answers: the streaming word count against a count made here.
func TestExampleWorkflows(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	for _, file := range []string{
		"wordcount/stream/gen/wcs-gen.yaml", "wordcount/stream/map/wcs-map.yaml",
		"wordcount/stream/reduce/wcs-reduce.yaml", "wordcount/stream/top/wcs-top.yaml",
		"pipeline/gen/pl-gen.yaml", "pipeline/transform/pl-transform.yaml", "pipeline/aggregate/pl-aggregate.yaml",
	} {
		f, err := spec.ParseFile(filepath.Join("..", "..", "examples", file))
		if err != nil {
			t.Fatal(err)
		}
		deploy(t, p.Client, f)
	}
	example := func(file string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(string(b), "bytes: 1Gi", "bytes: 24Mi")
	}

	r := runWorkflow(t, p.Client, example("wordcount/stream/wordcount.yaml"))
	if r.State != "succeeded" || len(r.Results) != 1 {
		t.Fatalf("word count: %s: %s", r.State, r.Error)
	}
	var got wc.Summary
	if err := json.Unmarshal(r.Results[0].Output, &got); err != nil {
		t.Fatal(err)
	}
	var c wc.Counter
	for i := 0; i < 6; i++ { // 24 MiB in 4 MiB chunks, seed 1
		b, _ := wc.GenerateChunk(1, i, 4<<20)
		c.Add(b)
	}
	want := wc.Summarize(c.Counts(), 10)
	if got.Words != want.Words || got.Distinct != want.Distinct || fmt.Sprint(got.Top) != fmt.Sprint(want.Top) {
		t.Errorf("streaming word count says %+v\nwant %+v", got, want)
	}

	r = runWorkflow(t, p.Client, example("pipeline/pipeline.yaml"))
	if r.State != "succeeded" || len(r.Results) != 1 {
		t.Fatalf("pipeline: %s: %s", r.State, r.Error)
	}
	var res struct {
		Readings int64
		Sensors  []struct{ Count int64 }
	}
	if err := json.Unmarshal(r.Results[0].Output, &res); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range res.Sensors {
		n += s.Count
	}
	if len(res.Sensors) != 64 || n != res.Readings || res.Readings < 500000 {
		t.Errorf("pipeline aggregated %d readings over %d sensors (sum %d); want ~24 MiB of readings over 64", res.Readings, len(res.Sensors), n)
	}
	for _, e := range r.Edges {
		if e.Mode != "stream" {
			t.Errorf("pipeline edge %s→%s ran %s, want stream", e.From, e.To, e.Mode)
		}
	}
}

// storeObjects counts the objects in a bucket of the platform's store
// (0 when the bucket does not exist), through the first node's S3 API.
func storeObjects(t *testing.T, p *platform.Platform, bucket string) int {
	t.Helper()
	ctx := context.Background()
	st, err := p.Client.Status(ctx)
	if err != nil || len(st.Nodes) == 0 {
		t.Fatalf("status: %v", err)
	}
	token, err := os.ReadFile(filepath.Join(p.Dir, "cluster.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(st.Nodes[0].S3, &minio.Options{Creds: credentials.NewStaticV4(node.S3AccessKey, node.S3Secret(strings.TrimSpace(string(token))), "")})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			if minio.ToErrorResponse(o.Err).Code == "NoSuchBucket" {
				return 0
			}
			t.Fatal(o.Err)
		}
		n++
	}
	return n
}
