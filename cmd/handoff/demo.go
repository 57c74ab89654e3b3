package main

import (
	"context"
	"errors"
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
	specs := []string{"wordcount/gen/wc-gen.yaml", "wordcount/count/wc-count.yaml", "wordcount/merge/wc-merge.yaml"}
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
		fmt.Printf("  done in %s: %d words, %d distinct; top: %s (%d), %s (%d)\n", r.Wall.Round(time.Millisecond), r.Summary.Words, r.Summary.Distinct,
			r.Summary.Top[0].Word, r.Summary.Top[0].Count, r.Summary.Top[1].Word, r.Summary.Top[1].Count)
		results = append(results, r)
	}

	fmt.Println("\nSummary")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "data via\twall time\tcorpus\tinline (gateway)\tthrough S3\tthroughput\twords\tresult\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f MiB/s\t%d\t%s\t\n", label(r.Via), r.Wall.Round(time.Millisecond), xfer.Human(r.Corpus),
			xfer.Human(r.InlineBytes), xfer.Human(r.S3Bytes), r.Throughput()/(1<<20), r.Words, "verified")
	}
	tw.Flush()
	if len(results) == 2 {
		if !reflect.DeepEqual(results[0].Summary, results[1].Summary) {
			return errors.New("the two runs disagree on the word counts: data was corrupted on one path")
		}
		fmt.Printf("\nBoth runs agree word for word. Handoff finished %.2fx faster than staging the data in S3.\n", results[1].Wall.Seconds()/results[0].Wall.Seconds())
	}
	return nil
}

func label(via string) string {
	if via == wc.ViaS3 {
		return "S3 (MinIO)"
	}
	return "Handoff (inline)"
}
