package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
)

// TestWordCountBothWays runs the demo's workflow on a real platform at a
// small size: enough chunks that the merge forms a tree, checked against a
// word count done here from the same generator.
func TestWordCountBothWays(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "handoff")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/handoff").CombinedOutput(); err != nil {
		t.Fatalf("build handoff: %v\n%s", err, out)
	}
	ctx := context.Background()
	p, err := platform.Start(ctx, platform.Options{Binary: bin, Dir: t.TempDir(), Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	for _, s := range []string{"gen/wc-gen.yaml", "count/wc-count.yaml", "merge/wc-merge.yaml",
		"stream/gen/wcs-gen.yaml", "stream/map/wcs-map.yaml", "stream/reduce/wcs-reduce.yaml", "stream/top/wcs-top.yaml"} {
		f, err := spec.ParseFile(filepath.Join("..", "examples", "wordcount", s))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Client.Deploy(ctx, f); err != nil {
			t.Fatal(err)
		}
	}

	const size, chunk, seed = 40 << 16, 1 << 16, 3 // 40 chunks: a merge tree of 3 groups, then the root
	want := wc.Counts{}
	for i := range size / chunk {
		b, _ := wc.GenerateChunk(seed, i, chunk)
		want.Merge(wc.Count(b))
	}
	expect := wc.Summarize(want, wc.TopN)

	job := Job{Client: p.Client, Via: wc.ViaHandoff, ID: "t", Size: size, Chunk: chunk, Parallel: 4, Seed: seed}
	check := func(r Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(r.Summary) != fmt.Sprint(expect) {
			t.Fatalf("via %s: summary %+v; want %+v", r.Via, r.Summary, expect)
		}
		if r.Corpus != size || r.Chunks != size/chunk {
			t.Fatalf("via %s: corpus %d in %d chunks", r.Via, r.Corpus, r.Chunks)
		}
	}
	r, err := job.Run(ctx)
	check(r, err)
	if r.InlineBytes < size {
		t.Errorf("the gateway carried %d bytes inline; the corpus alone is %d", r.InlineBytes, size)
	}

	// The streaming workflow, on its own corpus: 3 chunks of 4 MiB, seed 1.
	wf, err := os.ReadFile(filepath.Join("..", "examples", "wordcount", "stream", "wordcount.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c wc.Counter
	for i := range 3 {
		b, _ := wc.GenerateChunk(1, i, 4<<20)
		c.Add(b)
	}
	sr, err := StreamJob{Client: p.Client, Spec: wf, Size: 3 << 22}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := wc.Summarize(c.Counts(), wc.TopN); fmt.Sprint(sr.Summary) != fmt.Sprint(want) {
		t.Fatalf("via streams: summary %+v; want %+v", sr.Summary, want)
	}
	if sr.Corpus != 3<<22 || sr.StreamBytes < 3<<22 {
		t.Errorf("via streams: corpus %d, streamed %d; want %d at least", sr.Corpus, sr.StreamBytes, 3<<22)
	}

	minio, err := baseline.LookMinIO(filepath.Join("..", "bin"))
	if err != nil {
		t.Skip("the S3 half needs MinIO: run `make deps-bench`")
	}
	m, err := baseline.StartMinIO(ctx, minio, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	job.Via, job.S3 = wc.ViaS3, &wc.S3{Endpoint: m.Endpoint(), AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), Bucket: m.Bucket()}
	r, err = job.Run(ctx)
	check(r, err)
	if r.S3Bytes != 2*size {
		t.Errorf("S3 bytes %d; want %d", r.S3Bytes, 2*size)
	}
}
