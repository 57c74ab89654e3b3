package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/spec"
)

// Transfer measures one payload handed from a producer to a consumer at sizes
// from 1 KiB to 1 GiB: through Handoff (function to function, and a client
// round trip through the gateway), through Redis and MinIO, and the machine's
// raw limits, all in the same run.
func Transfer(ctx context.Context, e Env) (bench.Result, error) {
	opts := bench.Options{Name: "transfer", Progress: e.Log, Budget: 2 * time.Second, MinIters: 3, MaxIters: 200}
	if e.Quick {
		opts.Sizes = []int64{bench.KiB, bench.MiB}
		opts.Budget, opts.MaxIters = 100*time.Millisecond, 5
	}
	sizes := opts.Sizes
	if len(sizes) == 0 {
		sizes = bench.DefaultSizes()
	}
	redisBin, err := baseline.EnsureRedis(ctx, e.Log)
	if err != nil {
		return bench.Result{}, err
	}
	minioBin, err := baseline.EnsureMinIO(ctx, e.BinDir, e.Log)
	if err != nil {
		return bench.Result{}, err
	}

	// The inline limit is raised so that the inline path can be measured at
	// every size; the figures say what carrying a body through the platform
	// costs before reference passing takes over large payloads.
	p, stop, err := e.startPlatform(ctx, "--inline-max", "2Gi")
	if err != nil {
		return bench.Result{}, err
	}
	defer stop()
	one := func(f *spec.Function) { f.Scale.Min, f.Scale.Max, f.Memory = 1, 1, 0 }
	for _, fn := range []struct{ name, pkg string }{
		{"echo", "examples/echo"}, {"bench-producer", "internal/benchfn"}, {"bench-consumer", "internal/benchfn"},
	} {
		if err := e.deploy(ctx, p.Client, fn.name, fn.pkg, one); err != nil {
			return bench.Result{}, err
		}
	}

	dir, err := os.MkdirTemp("", "handoff-bench-baselines-")
	if err != nil {
		return bench.Result{}, err
	}
	defer os.RemoveAll(dir)
	rd, err := baseline.StartRedis(ctx, redisBin, dir)
	if err != nil {
		return bench.Result{}, err
	}
	defer rd.Close()
	shm, err := os.MkdirTemp("/dev/shm", "handoff-bench-minio-")
	if err != nil {
		shm = filepath.Join(dir, "minio")
	}
	defer os.RemoveAll(shm)
	mn, err := baseline.StartMinIO(ctx, minioBin, shm)
	if err != nil {
		return bench.Result{}, err
	}
	defer mn.Close()
	mt, err := mn.NewTransfer()
	if err != nil {
		return bench.Result{}, err
	}
	rawTs, err := raw.Transfers()
	if err != nil {
		return bench.Result{}, err
	}
	ts := append(rawTs, rd.NewTransfer(), mt, &gatewayEcho{c: p.Client})
	defer func() {
		for _, t := range ts {
			t.Close()
		}
	}()
	fmt.Fprintln(e.Log, "measuring transfers (raw limits, Redis, MinIO on /dev/shm, Handoff)")
	res, err := bench.RunTransfers(ctx, opts, ts)
	if err != nil {
		return res, err
	}
	for _, size := range sizes {
		pt, err := functionToFunction(ctx, p.Client, size, opts)
		if err != nil {
			return res, err
		}
		res.Points = append(res.Points, pt)
		fmt.Fprintf(e.Log, "%-8s %-14s n=%-5d p50=%-10s p99=%-10s %s\n", bench.FormatSize(size), pt.Series, pt.N,
			bench.FormatDuration(pt.P50), bench.FormatDuration(pt.P99), bench.FormatThroughput(pt.Throughput))
	}
	res.Notes = append(res.Notes,
		"handoff-f2f: bench-producer hands the payload to bench-consumer with sdk.Invoke (node agent, gateway, node agent), inline; timed inside the producer, CRC-32C checked by the consumer.",
		"handoff-gw: a client POSTs the payload to echo through the gateway and reads it back (in and out, as SET+GET and PUT+GET).",
		"redis: SET then GET with go-redis; minio: PutObject then GetObject with minio-go, data on /dev/shm.",
		"memcpy, tcp, unix: this machine's limits, one-way, measured in the same run.")
	return res, e.writeReports(res, "transfer", "Payload hand-over latency (p50) against size")
}

// gatewayEcho is a client round trip through the gateway to the echo
// function: the payload goes in and comes back.
type gatewayEcho struct{ c *api.Client }

func (g *gatewayEcho) Name() string { return "handoff-gw" }
func (g *gatewayEcho) Transfer(ctx context.Context, payload []byte) ([]byte, error) {
	rc, err := g.c.InvokeStream(ctx, "echo", bytes.NewReader(payload), int64(len(payload)))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := make([]byte, len(payload))
	n, err := io.ReadFull(rc, out)
	if err != nil {
		return nil, fmt.Errorf("echo returned %d of %d bytes: %w", n, len(payload), err)
	}
	return out, nil
}
func (g *gatewayEcho) Close() error { return nil }

// functionToFunction asks bench-producer to hand size bytes to
// bench-consumer, repeatedly, and collects the hand-over times it reports.
func functionToFunction(ctx context.Context, c *api.Client, size int64, opts bench.Options) (bench.Point, error) {
	body := []byte(fmt.Sprintf("produce %d bench-consumer", size))
	once := func() (time.Duration, error) {
		out, err := c.Invoke(ctx, "bench-producer", body)
		if err != nil {
			return 0, fmt.Errorf("handoff-f2f at %s: %w", bench.FormatSize(size), err)
		}
		ns, err := strconv.ParseInt(string(out), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("handoff-f2f at %s: producer answered %q", bench.FormatSize(size), out)
		}
		return time.Duration(ns), nil
	}
	if _, err := once(); err != nil { // warm-up: makes and caches the payload
		return bench.Point{}, err
	}
	budget, minIters, maxIters := opts.Budget, max(opts.MinIters, 1), max(opts.MaxIters, 1)
	var lat []time.Duration
	var spent time.Duration
	for len(lat) < maxIters && (len(lat) < minIters || spent < budget) {
		d, err := once()
		if err != nil {
			return bench.Point{}, err
		}
		lat = append(lat, d)
		spent += d
	}
	if len(lat) == 0 {
		return bench.Point{}, errors.New("handoff-f2f: no iteration ran")
	}
	return bench.Summarize("handoff-f2f", size, lat), nil
}

func (e Env) writeReports(res bench.Result, name, title string) error {
	f, err := e.create(name + ".json")
	if err != nil {
		return err
	}
	if err := report.WriteJSON(f, res); err != nil {
		f.Close()
		return err
	}
	f.Close()
	md, err := e.create(name + ".md")
	if err != nil {
		return err
	}
	defer md.Close()
	w := io.MultiWriter(md, e.Log)
	if err := report.WriteMarkdown(w, res); err != nil {
		return err
	}
	for _, base := range []string{"redis", "minio-shm", "minio-disk"} {
		if _, ok := res.Lookup(base, res.Sizes()[0]); ok {
			fmt.Fprintln(w)
			if err := report.WriteRatios(w, res, base, "handoff-f2f", "handoff-gw"); err != nil {
				return err
			}
		}
	}
	png := filepath.Join(e.Out, name+".png")
	if err := report.WritePNG(png, res, title); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "\nreports: %s.{json,md,png}\n", filepath.Join(e.Out, name))
	return nil
}
