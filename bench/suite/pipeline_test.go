package suite

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

func TestPairedRatios(t *testing.T) {
	ours := []time.Duration{2 * time.Second, time.Second, 4 * time.Second}
	base := []time.Duration{time.Second, time.Second, 3 * time.Second, time.Second}
	got := pairedRatios(ours, base)
	want := []float64{0.5, 1, 0.75}
	if !slices.Equal(got, want) {
		t.Fatalf("pairedRatios = %v, want %v", got, want)
	}
	if m := medianFloat(got); m != 0.75 {
		t.Fatalf("median of %v = %v, want 0.75", got, m)
	}
	if m := medianFloat([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median of four = %v, want 2.5", m)
	}
	r := PipelineResult{Streams: []StreamSeries{
		{Name: seriesRawPipe, Bytes: 1 << 30, Elapsed: base[:3], Throughput: 1},
		{Name: seriesSameNode, Bytes: 1 << 30, Elapsed: ours, Throughput: 0.5},
	}}
	var b strings.Builder
	if err := writePipelineMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| 0.75× (0.50×-1.00×) |") {
		t.Fatalf("the stream table lacks the paired ratios:\n%s", b.String())
	}
}
