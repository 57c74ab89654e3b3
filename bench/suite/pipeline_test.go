package suite

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/workflow"
)

// TestPipelineQuick runs `handoff bench pipeline --quick`: two platforms,
// MinIO, every series on small sizes and the reports. A smoke test of the
// harness, not a measurement.
func TestPipelineQuick(t *testing.T) {
	if _, err := baseline.LookMinIO(env(t).BinDir); err != nil {
		t.Skip("MinIO is not built: run `make deps-bench`")
	}
	e := env(t)
	res, err := Pipeline(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Streams {
		if len(s.Elapsed) == 0 || s.Throughput <= 0 {
			t.Errorf("stream series %s has no measurement: %+v", s.Name, s)
		}
	}
	if len(res.Streams) != 4 {
		t.Errorf("%d stream series, want 4", len(res.Streams))
	}
	st := res.Staged
	if len(st.Handoff) == 0 || len(st.MinIO) == 0 || st.Speedup <= 0 {
		t.Errorf("staged comparison incomplete: %+v", st)
	}
	if st.MinIODisk <= 0 {
		t.Errorf("MinIO's run wrote no bytes to disk by the sampler's count: %+v", st.MinIODiskBy)
	}
	if len(res.Memory.Agents) != 3 {
		t.Errorf("memory run sampled %d node agents, want 3", len(res.Memory.Agents))
	}
	for _, a := range res.Memory.Agents {
		if a.Sampled <= 0 || a.Ends == 0 {
			t.Errorf("node agent %s: %+v", a.Node, a)
		}
	}
	if len(res.Bars) != 4+len(res.Memory.Agents) {
		t.Errorf("%d bars, want %d", len(res.Bars), 4+len(res.Memory.Agents))
	}
	var back PipelineResult
	b, err := os.ReadFile(filepath.Join(e.Out, "pipeline.json"))
	if err != nil || json.Unmarshal(b, &back) != nil || len(back.Streams) != len(res.Streams) {
		t.Fatalf("pipeline.json does not hold the result: %v", err)
	}
	for _, f := range []string{"pipeline.md", "pipeline.png"} {
		if st, err := os.Stat(filepath.Join(e.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("report %s missing or empty", f)
		}
	}
}

// TestPipelineWorkflows checks that every workflow the benchmark runs
// parses, examples/pipeline's among them (a quick run leaves it out).
func TestPipelineWorkflows(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	ex, err := exampleYAML(repo, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, y := range []string{ex, streamYAML(1 << 20), stagedYAML(1 << 20), memoryYAML(1 << 20)} {
		wf, err := workflow.Parse([]byte(y))
		if err != nil {
			t.Fatalf("%v\n%s", err, y)
		}
		if wf.Stages[0].Params["bytes"] != "1048576" {
			t.Errorf("workflow %s: first stage params %v, want bytes 1048576", wf.Name, wf.Stages[0].Params)
		}
	}
}
