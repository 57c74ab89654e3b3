package suite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/spec"
)

// Transfer measures one payload handed from a producer to a consumer at sizes
// from 1 KiB to 1 GiB: through Handoff (function to function, inline or by
// reference; explicit references on one node and across two; a client round
// trip through the gateway), through Redis and MinIO, and the machine's raw
// limits, all in the same run. It then measures 8-way scatter, broadcast and
// gather through references and through S3, and judges the results against
// the bars of reference passing (see transferBars).
func Transfer(ctx context.Context, e Env) (bench.Result, error) {
	opts := bench.Options{Name: "transfer", Progress: e.Log, Budget: 2 * time.Second, MinIters: 3, MaxIters: 200}
	patternSizes := []int64{16 * bench.MiB, 64 * bench.MiB}
	if e.Quick {
		opts.Sizes = []int64{bench.KiB, bench.MiB}
		opts.Budget, opts.MaxIters = 100*time.Millisecond, 5
		patternSizes = []int64{64 * bench.KiB}
	}
	sub, err := subsetFromEnv()
	if err != nil {
		return bench.Result{}, err
	}
	if sub.sizes != nil {
		opts.Sizes, patternSizes = sub.sizes, sub.sizes
	}
	if sub.minIters > 0 {
		opts.MinIters = sub.minIters
	}
	sizes := opts.Sizes
	if len(sizes) == 0 {
		sizes = bench.DefaultSizes()
	}
	if sub.series != nil {
		fmt.Fprintf(e.Log, "measuring a subset: series %s\n", strings.Join(sub.series, ", "))
	}

	// The baselines first: the functions' S3 series need MinIO's address
	// in their spec.
	dir, err := os.MkdirTemp("", "handoff-bench-baselines-")
	if err != nil {
		return bench.Result{}, err
	}
	defer os.RemoveAll(dir)
	var rd *baseline.Redis
	if sub.wants("redis") {
		redisBin, err := baseline.EnsureRedis(ctx, e.Log)
		if err != nil {
			return bench.Result{}, err
		}
		if rd, err = baseline.StartRedis(ctx, redisBin, dir); err != nil {
			return bench.Result{}, err
		}
		defer rd.Close()
	}
	var mn *baseline.MinIO
	s3env := map[string]string{}
	if sub.wantsS3() {
		minioBin, err := baseline.EnsureMinIO(ctx, e.BinDir, e.Log)
		if err != nil {
			return bench.Result{}, err
		}
		shm, err := os.MkdirTemp("/dev/shm", "handoff-bench-minio-")
		if err != nil {
			shm = filepath.Join(dir, "minio")
		}
		defer os.RemoveAll(shm)
		if mn, err = baseline.StartMinIO(ctx, minioBin, shm); err != nil {
			return bench.Result{}, err
		}
		defer mn.Close()
		s3env = map[string]string{
			"BENCH_S3_ENDPOINT":   mn.Endpoint(),
			"BENCH_S3_ACCESS_KEY": mn.AccessKey(),
			"BENCH_S3_SECRET_KEY": mn.SecretKey(),
			"BENCH_S3_BUCKET":     mn.Bucket(),
		}
	}

	// The default inline limit (6 MiB): larger bodies between functions go
	// by reference, as they do for users.
	p, stop, err := e.startPlatform(ctx)
	if err != nil {
		return bench.Result{}, err
	}
	defer stop()
	for _, fn := range []struct {
		name, pkg string
		env       map[string]string
	}{
		{"echo", "examples/echo", nil},
		{"bench-producer", "internal/benchfn", s3env},
		{"bench-consumer", "internal/benchfn", s3env},
		{"bench-self", "internal/benchfn", nil},
	} {
		// One instance each: the scheduler spreads producer and consumer
		// over the two node agents, and bench-self, calling itself, is
		// served by the one instance it runs in.
		tweak := func(f *spec.Function) { f.Scale.Min, f.Scale.Max, f.Memory, f.Env = 1, 1, 0, fn.env }
		if err := e.deploy(ctx, p.Client, fn.name, fn.pkg, tweak); err != nil {
			return bench.Result{}, err
		}
	}
	where, err := crossNode(ctx, p.Client, "bench-producer", "bench-consumer")
	if err != nil {
		return bench.Result{}, err
	}
	fmt.Fprintf(e.Log, "placement: %s\n", where)

	ts, err := raw.Transfers()
	if err != nil {
		return bench.Result{}, err
	}
	if rd != nil {
		ts = append(ts, rd.NewTransfer())
	}
	if mn != nil {
		mt, err := mn.NewTransfer()
		if err != nil {
			return bench.Result{}, err
		}
		ts = append(ts, mt)
	}
	ts = append(ts, &gatewayEcho{c: p.Client})
	closeAll := func() {
		for _, t := range ts {
			t.Close()
		}
		ts = nil
	}
	defer closeAll()
	ts = slices.DeleteFunc(ts, func(t bench.Transfer) bool {
		if sub.wants(t.Name()) {
			return false
		}
		t.Close()
		return true
	})
	res := bench.NewResult(opts.Name)
	if len(ts) > 0 {
		fmt.Fprintln(e.Log, "measuring transfers (raw limits, Redis, MinIO on /dev/shm, Handoff through the gateway)")
		if res, err = bench.RunTransfers(ctx, opts, ts); err != nil {
			return res, err
		}
	}
	// The raw transfers hold a buffer of the largest size each: let go of
	// them before the functions need the memory.
	closeAll()

	// Two functions on one node, by construction: a platform with one
	// node agent, run beside the first for this series alone.
	stop1 := func() {}
	var c1 *api.Client
	if sub.wants(seriesRefNode) {
		p1, stop, err := e.startOneNode(ctx)
		if err != nil {
			return res, err
		}
		stop1, c1 = stop, p1.Client
		defer stop1()
		for _, name := range []string{"bench-sender", "bench-receiver"} {
			tweak := func(f *spec.Function) { f.Scale.Min, f.Scale.Max, f.Memory = 1, 1, 0 }
			if err := e.deploy(ctx, p1.Client, name, "internal/benchfn", tweak); err != nil {
				return res, err
			}
		}
		if _, err := placement(ctx, p1.Client, "bench-sender", "bench-receiver"); err != nil {
			return res, err
		}
	}

	fmt.Fprintln(e.Log, "measuring function to function (inline and by reference, across nodes and on one; through MinIO)")
	fns := []fnSeries{
		{name: seriesF2F, c: p.Client, fn: "bench-producer", cmd: func(n int64) string { return fmt.Sprintf("produce %d bench-consumer", n) }},
		// The cross-node bar's series: at least 5 samples, 3 leave the
		// median to one slow pull.
		{name: seriesRefPull, c: p.Client, fn: "bench-producer", cmd: func(n int64) string { return fmt.Sprintf("pull %d bench-consumer", n) }, minIters: 5},
		{name: seriesS3F2F, c: p.Client, fn: "bench-producer", cmd: func(n int64) string { return fmt.Sprintf("s3 %d bench-consumer", n) }},
		// The same-node bar's series: more samples, they are cheap.
		{name: seriesRefSame, c: p.Client, fn: "bench-self", cmd: func(n int64) string { return fmt.Sprintf("share %d bench-self", n) }, minIters: 10},
		{name: seriesRefNode, c: c1, fn: "bench-sender", cmd: func(n int64) string { return fmt.Sprintf("pull %d bench-receiver", n) }, minIters: 10},
	}
	fns = slices.DeleteFunc(fns, func(s fnSeries) bool { return !sub.wants(s.name) })
	pts, err := runFunctions(ctx, opts, sizes, fns, e.Log)
	res.Points = append(res.Points, pts...)
	if err != nil {
		return res, err
	}
	stop1()

	fmt.Fprintf(e.Log, "measuring %d-way patterns through references and through MinIO\n", fanWidth)
	var pats []fnSeries
	for _, name := range patternNames {
		fn, peer := "bench-producer", "bench-consumer"
		if name == "gather" { // the consumer drives a gather
			fn, peer = peer, fn
		}
		for _, via := range []string{"ref", "s3"} {
			cmd := name
			if via == "s3" {
				cmd += "-s3"
			}
			if !sub.wants(name + "-" + via) {
				continue
			}
			pats = append(pats, fnSeries{name: name + "-" + via, c: p.Client, fn: fn, items: fanWidth,
				cmd: func(n int64) string { return fmt.Sprintf("%s %d %d %s", cmd, fanWidth, n, peer) }})
		}
	}
	pts, err = runFunctions(ctx, opts, patternSizes, pats, e.Log)
	res.Points = append(res.Points, pts...)
	if err != nil {
		return res, err
	}
	if err := complete(res, sizes, patternSizes, fns, pats); err != nil {
		return res, err
	}

	res.Notes = append(res.Notes,
		"Placement: "+where+"; bench-self on one node, calling itself. The platform runs with the default inline limit (6 MiB).",
		"handoff-f2f: bench-producer hands the payload to bench-consumer with sdk.Invoke (node agent, gateway, node agent): inline up to 6 MiB, by reference above (the sender's node agent buffers the body in a memfd, the receiver's pulls it over peerlink and streams it into the instance). Timed from the call to the consumer handler's start (body in hand); -rt until the producer has the consumer's CRC-32C.",
		"handoff-ref-pull: bench-producer fills an sdk.Buffer (not timed), then Share (passes the memfd over $HANDOFF_FD; the node agent adopts it and seals it once the SDK has unmapped it, in the background), sdk.Invoke(bench-consumer, \"map REF\"); the consumer's sdk.Map has its node agent pull the payload (checksum computed by the holder on this first pull, verified by the puller) into a local memfd, and maps it; timed until its first and last byte are readable. -share is Share alone, -map the consumer's sdk.Map alone (the pull included), -touch reading one byte of every page afterwards (the page faults a reader of all the data pays), -rt until the producer has the consumer's CRC-32C, -sharemap Share and Map of each call added up (the hand-over itself, without the invocation that carries the reference).",
		"handoff-ref-node: the same as handoff-ref-pull between bench-sender and bench-receiver, two functions on the one node agent of a second platform (so on one node by construction, in two processes): Map gets the very memfd the sender filled, nothing is copied. The same-node bar is judged on its -sharemap (Share + Map, the two descriptor exchanges) and on the series itself (with the invocation through both node agents and the gateway).",
		"handoff-ref-same: bench-self (one instance) fills an sdk.Buffer (not timed), then Share and sdk.Invoke(bench-self, \"keep REF\") through its node agent, the gateway and the same node agent back into the same instance, whose sdk.Map gets the memfd over $HANDOFF_FD and mmaps it; timed until its first and last byte are readable. Sender and receiver are one process here, so the receiver's mmap waits for the sender's background unmap of the buffer (one memory map, one lock): handoff-ref-node is the two-process case. -share, -map, -touch and -rt as for handoff-ref-pull; the producer checks the CRC-32C of the mapping afterwards.",
		"minio-f2f: the same hand-over between the same two functions through MinIO: PutObject (UNSIGNED-PAYLOAD), sdk.Invoke(bench-consumer, key), GetObject into a buffer; timed until the consumer has read it all.",
		"handoff-gw: a client POSTs the payload to echo through the gateway and reads it back (in and out, as SET+GET and PUT+GET).",
		"redis: SET then GET with go-redis; minio-shm: PutObject then GetObject with minio-go (signed payload), data on /dev/shm; both from the harness, with no function in between.",
		"memcpy, tcp, unix: this machine's limits, one-way, measured in the same run.",
		fmt.Sprintf("Patterns, %d items of the size over the total: scatter = %d buffers, each shared and handed to its own consumer invocation, all at once; broadcast = one buffer shared with %d reads and %d consumer invocations mapping it (each pulls it to the consumer's node); gather = bench-consumer asks bench-producer for %d references at once (each Share on request, the buffers filled beforehand, not timed) and maps each as it comes. -s3: the same with PutObject/GetObject. Timed from the first hand-over until the last consumer had its item; all %d consumer invocations run in one instance on the other node. The SDK runs up to 8 descriptor exchanges at once per process (one connection each), so the %d Maps of a consumer (each a whole pull, the first of a broadcast; the others taken from this node's copy) and the %d Shares of a producer run in parallel, as the S3 GETs and PUTs do.", fanWidth, fanWidth, fanWidth, fanWidth, fanWidth, fanWidth, fanWidth, fanWidth),
	)
	bars := transferBars(res)
	for _, b := range bars {
		res.Notes = append(res.Notes, fmt.Sprintf("Bar %q, %s against %s: %s; %s.", b.Bar, b.Series, b.Baseline, b.Measured, strings.ReplaceAll(b.Verdict(), "**", "")))
	}
	return res, e.writeTransferReports(res, bars)
}

// fanWidth is how many consumers (producers, for gather) a pattern has.
const fanWidth = 8

// complete fails when a series measured inside the functions has no point
// at a size it was run at: the figures would silently lack it.
func complete(r bench.Result, sizes, patternSizes []int64, fns, pats []fnSeries) error {
	var missing []string
	check := func(ss []fnSeries, sizes []int64) {
		for _, s := range ss {
			for _, size := range sizes {
				if p, ok := r.Lookup(s.name, size*max(s.items, 1)); !ok || p.N == 0 || p.P50 <= 0 {
					missing = append(missing, s.name+" at "+bench.FormatSize(size))
				}
			}
		}
	}
	check(fns, sizes)
	check(pats, patternSizes)
	if len(missing) > 0 {
		return fmt.Errorf("bench: no measurement of %s", strings.Join(missing, ", "))
	}
	return nil
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

// mainSeries are the columns of the transfer table and the lines of its
// plot; the parts of the hand-overs and the patterns have tables of their
// own.
var mainSeries = []string{"memcpy", "tcp", "unix", "redis", "minio-shm", seriesS3F2F, "handoff-gw", seriesF2F, seriesRefPull, seriesRefNode, seriesRefSame}

// only returns r with the points of series alone.
func only(r bench.Result, series ...string) bench.Result {
	out := r
	out.Points = nil
	for _, p := range r.Points {
		if slices.Contains(series, p.Series) {
			out.Points = append(out.Points, p)
		}
	}
	return out
}

// writeTransferReports writes transfer.json (every point, the bars among
// the notes), transfer.md (also printed on e.Log) and transfer.png (the
// main series).
func (e Env) writeTransferReports(res bench.Result, bars []report.Bar) error {
	f, err := e.create("transfer.json")
	if err != nil {
		return err
	}
	if err := report.WriteJSON(f, res); err != nil {
		f.Close()
		return err
	}
	f.Close()
	md, err := e.create("transfer.md")
	if err != nil {
		return err
	}
	defer md.Close()
	w := io.MultiWriter(md, e.Log)
	view := only(res, mainSeries...)
	// The bars have a table of their own below.
	view.Notes = slices.DeleteFunc(slices.Clone(res.Notes), func(n string) bool { return strings.HasPrefix(n, "Bar ") })
	if err := report.WriteMarkdown(w, view); err != nil {
		return err
	}
	var parts []string
	for _, s := range res.Series() {
		if !slices.Contains(mainSeries, s) && !strings.HasPrefix(s, "scatter") && !strings.HasPrefix(s, "broadcast") && !strings.HasPrefix(s, "gather") {
			parts = append(parts, s)
		}
	}
	fmt.Fprintf(w, "\nParts of the function-to-function series (-rt: round trip; -share: Share alone; -map: the consumer's sdk.Map alone; -touch: faulting in every page of the mapping):\n\n")
	if err := report.WriteTable(w, res, parts...); err != nil {
		return err
	}
	var pats []string
	for _, name := range patternNames {
		pats = append(pats, name+"-ref", name+"-s3", name+"-ref-rt", name+"-s3-rt")
	}
	fmt.Fprintf(w, "\nPatterns, %d items (size is the total of the %d):\n\n", fanWidth, fanWidth)
	if err := report.WriteTable(w, res, pats...); err != nil {
		return err
	}
	for _, base := range []string{"redis", "minio-shm", seriesS3F2F} {
		if _, ok := res.Lookup(base, res.Sizes()[0]); ok {
			fmt.Fprintln(w)
			if err := report.WriteRatios(w, view, base, seriesF2F, seriesRefPull, seriesRefNode, seriesRefSame, "handoff-gw"); err != nil {
				return err
			}
		}
	}
	if _, ok := res.Lookup("tcp", res.Sizes()[0]); ok {
		fmt.Fprintln(w)
		if err := report.WriteRatios(w, view, "tcp", seriesF2F, seriesRefPull, seriesRefNode, seriesRefSame); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nThe bars of reference passing, each against a baseline of this run:\n\n")
	if err := report.WriteBars(w, bars); err != nil {
		return err
	}
	png := filepath.Join(e.Out, "transfer.png")
	if err := report.WritePNG(png, view, "Payload hand-over latency (p50) against size"); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "\nreports: %s.{json,md,png}\n", filepath.Join(e.Out, "transfer"))
	return nil
}
