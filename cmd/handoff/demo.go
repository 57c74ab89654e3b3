package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/demo"
	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/xfer"
)

func cmdDemo(args []string) error {
	fs := newFlags("demo", "demo [--size 1Gi] [--chunk 4Mi] [--parallel 8] [--no-baseline]")
	size := fs.String("size", "1Gi", "corpus size")
	chunk := fs.String("chunk", "4Mi", "bytes per wc-gen invocation (at most the inline limit)")
	parallel := fs.Int("parallel", 8, "chunks in flight")
	nodes := fs.Int("nodes", 2, "node agents")
	examples := fs.String("examples", "examples", "the repository's examples directory")
	binDir := fs.String("bin-dir", "bin", "where the MinIO binary is cached")
	noBaseline := fs.Bool("no-baseline", false, "skip the MinIO (S3) baseline")
	keep := fs.Bool("keep", false, "keep the demo's state directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	corpus, err := spec.ParseBytes(*size)
	if err != nil || corpus <= 0 {
		return fmt.Errorf("--size %q: give a size such as 1Gi", *size)
	}
	chunkB, err := spec.ParseBytes(*chunk)
	if err != nil || chunkB <= 0 || chunkB > wc.MaxChunk {
		return fmt.Errorf("--chunk %q: give a size from 1 to 512Mi, such as 4Mi", *chunk)
	}
	specs := []string{"wordcount/gen/wc-gen.yaml", "wordcount/count/wc-count.yaml", "wordcount/merge/wc-merge.yaml",
		"wordcount/stream/gen/wcs-gen.yaml", "wordcount/stream/map/wcs-map.yaml", "wordcount/stream/reduce/wcs-reduce.yaml", "wordcount/stream/top/wcs-top.yaml"}
	streamSpec, err := os.ReadFile(filepath.Join(*examples, "wordcount/stream/wordcount.yaml"))
	if err != nil {
		return fmt.Errorf("cannot find the streaming word count: run the demo from the repository root (`make demo`) or give --examples: %w", err)
	}
	for _, s := range specs {
		if _, err := os.Stat(filepath.Join(*examples, s)); err != nil {
			return fmt.Errorf("cannot find %s: run the demo from the repository root (`make demo`) or give --examples", filepath.Join(*examples, s))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Printf("Handoff demo: word count over a generated %s corpus, %d node agents, %s per chunk\n\n", xfer.Human(int64(corpus)), *nodes, xfer.Human(int64(chunkB)))
	var minioBin string
	if !*noBaseline {
		fmt.Println("• baseline: MinIO (S3) on loopback")
		minioBin, err = baseline.EnsureMinIO(ctx, *binDir, os.Stdout)
		if err != nil {
			return fmt.Errorf("the MinIO baseline is not available: %w (or run with --no-baseline)", err)
		}
	}

	dir, err := os.MkdirTemp("", "handoff-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("• starting the platform: control plane + %d node agents (state in %s)\n", *nodes, dir)
	p, err := platform.Start(ctx, platform.Options{Binary: self, Dir: dir, Nodes: *nodes})
	if err != nil {
		return err
	}
	defer p.Stop()
	fmt.Printf("  gateway %s\n", p.URL)
	for _, s := range specs {
		f, err := spec.ParseFile(filepath.Join(*examples, s))
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := p.Client.Deploy(ctx, f); err != nil {
			return fmt.Errorf("deploy %s: %w", f.Name, err)
		}
		fmt.Printf("• deployed %s (built in %s)\n", f.Name, time.Since(start).Round(time.Millisecond))
	}

	var s3 *wc.S3
	if !*noBaseline {
		shm, err := os.MkdirTemp("/dev/shm", "handoff-demo-minio-")
		if err != nil {
			shm = filepath.Join(dir, "minio")
		}
		defer os.RemoveAll(shm)
		m, err := baseline.StartMinIO(ctx, minioBin, shm)
		if err != nil {
			return err
		}
		defer m.Close()
		s3 = &wc.S3{Endpoint: m.Endpoint(), AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), Bucket: m.Bucket()}
		fmt.Printf("• MinIO serving at %s, data on %s\n", m.Endpoint(), shm)
	}

	// Warm every function once so that neither run pays the cold starts.
	fmt.Println("• warming up the functions (scale from zero)")
	warm := demo.Job{Client: p.Client, Via: wc.ViaHandoff, ID: "warm", Size: int64(*parallel) << 16, Chunk: 1 << 16, Parallel: *parallel, Seed: 7}
	if _, err := warm.Run(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	job := demo.Job{Client: p.Client, Size: int64(corpus), Chunk: int(chunkB), Parallel: *parallel, Seed: 1, Progress: os.Stdout}
	var results []demo.Result

	// The workflow: the corpus streams from the generators through the
	// mappers as it is made, the counts are shuffled to the reducers.
	fmt.Printf("\n• running the word count as a workflow, data via %s\n", label(demo.ViaStream))
	sr, err := demo.StreamJob{Client: p.Client, Spec: streamSpec, Size: int64(corpus), Progress: os.Stdout}.Run(ctx)
	if err != nil {
		return fmt.Errorf("word count via streams: %w", err)
	}
	printDone(sr)
	results = append(results, sr)

	runs := []string{wc.ViaHandoff}
	if s3 != nil {
		runs = append(runs, wc.ViaS3)
	}
	for _, via := range runs {
		j := job
		j.Via, j.ID = via, "run-"+via
		if via == wc.ViaS3 {
			j.S3 = s3
		}
		fmt.Printf("\n• running the word count, data via %s\n", label(via))
		r, err := j.Run(ctx)
		if err != nil {
			return fmt.Errorf("word count via %s: %w", via, err)
		}
		printDone(r)
		results = append(results, r)
	}

	fmt.Println("\nSummary")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "data via\twall time\tcorpus\tstreamed\tinline (gateway)\tthrough S3\tthroughput\twords\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.0f MiB/s\t%d\t\n", label(r.Via), r.Wall.Round(time.Millisecond), xfer.Human(r.Corpus),
			xfer.Human(r.StreamBytes), xfer.Human(r.InlineBytes), xfer.Human(r.S3Bytes), r.Throughput()/(1<<20), r.Words)
	}
	tw.Flush()
	// Every run counts the same corpus; the streaming generator cuts it in
	// 4 MiB chunks, so it matches the others when --chunk is 4Mi.
	calls := results[1:]
	for _, r := range calls[1:] {
		if !reflect.DeepEqual(calls[0].Summary, r.Summary) {
			return fmt.Errorf("the runs via %s and %s disagree on the word counts: data was corrupted on one path", label(calls[0].Via), label(r.Via))
		}
	}
	if chunkB == 4<<20 && !reflect.DeepEqual(results[0].Summary, calls[0].Summary) {
		return fmt.Errorf("the runs via %s and %s disagree on the word counts: data was corrupted on one path", label(results[0].Via), label(calls[0].Via))
	}
	fastest := results[0]
	for _, r := range results[1:] {
		if r.Wall < fastest.Wall {
			fastest = r
		}
	}
	fmt.Printf("\nEvery run agrees word for word. Fastest: %s.", label(fastest.Via))
	for _, r := range results {
		if r.Via == wc.ViaS3 {
			fmt.Printf(" It finished %.2fx faster than staging the data in S3.", r.Wall.Seconds()/fastest.Wall.Seconds())
		}
	}
	fmt.Println()
	return nil
}

func printDone(r demo.Result) {
	fmt.Printf("  done in %s: %d words, %d distinct; top: %s (%d), %s (%d)\n", r.Wall.Round(time.Millisecond), r.Summary.Words, r.Summary.Distinct,
		r.Summary.Top[0].Word, r.Summary.Top[0].Count, r.Summary.Top[1].Word, r.Summary.Top[1].Count)
}

func label(via string) string {
	switch via {
	case wc.ViaS3:
		return "S3 (MinIO)"
	case demo.ViaStream:
		return "Handoff workflow (streams)"
	}
	return "Handoff calls (inline)"
}
