package suite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/load"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
)

// InvokeResult is what `handoff bench invoke` measures.
type InvokeResult struct {
	Started time.Time         `json:"started"`
	Host    map[string]string `json:"host"`
	// Latency of a 64-byte invocation, sequential, warm.
	Direct  bench.Point `json:"direct"`  // plain HTTP straight to the instance
	Gateway bench.Point `json:"gateway"` // through the gateway and the node agent
	// Raw limits of this machine, same run: 64-byte round trips.
	RawHTTP bench.Point `json:"raw_http"`
	RawTCP  bench.Point `json:"raw_tcp"`
	RawUnix bench.Point `json:"raw_unix"`
	// Warm throughput, requests per second, closed loop.
	Concurrency    int         `json:"concurrency"`
	DirectRPS      float64     `json:"direct_rps"`
	GatewayRPS     float64     `json:"gateway_rps"`
	GatewayErrors  int         `json:"gateway_errors"`
	GatewayLoadP50 int64       `json:"gateway_load_p50_ns"`
	GatewayLoadP99 int64       `json:"gateway_load_p99_ns"`
	ColdStart      bench.Point `json:"cold_start"`       // platform: first request to a function with no instance, never run before (fork and exec)
	ColdStartSpawn bench.Point `json:"cold_start_spawn"` // node agent: spawn to ready, as reported by the supervisor
	// The same, scaling from zero a function that ran on the node before:
	// its node agent started the instance from a parked process.
	// ParkedActivated counts the starts that really came from one (the
	// instance's pid was the parked process's).
	ParkedStart           bench.Point `json:"parked_start"`
	ParkedStartActivation bench.Point `json:"parked_start_activation"` // node agent: activation to ready
	ParkedActivated       int         `json:"parked_activated"`
	// Leases and direct calls of the same function, and their baselines.
	Leases DirectResult `json:"leases"`
	// Bars are issue 6's bars, judged on this run's figures.
	Bars []report.Bar `json:"bars"`
}

// Invoke measures the gateway path against plain HTTP straight to the
// instance, in the same run: latency p50/p99, warm throughput, and cold
// starts; then leased executors of the same function called directly
// (hot, auto and warm over a shared-memory ring, and over TCP) against a
// raw ring ping-pong and raw TCP round trips.
func Invoke(ctx context.Context, e Env) (InvokeResult, error) {
	res := InvokeResult{Started: time.Now().UTC(), Host: bench.HostInfo(), Concurrency: 32}
	n, dur, colds := 5000, 5*time.Second, 15
	if e.Quick {
		n, dur, colds = 200, 500*time.Millisecond, 2
	}
	p, stop, err := e.startPlatform(ctx)
	if err != nil {
		return res, err
	}
	defer stop()
	if err := e.deploy(ctx, p.Client, "echo", "examples/echo", func(f *spec.Function) {
		f.Scale.Min, f.Scale.Max, f.Concurrency, f.Memory = 1, 1, 1000, 0
	}); err != nil {
		return res, err
	}
	addr, err := instanceAddr(ctx, p.Client, "echo")
	if err != nil {
		return res, err
	}
	payload := bytes.Repeat([]byte("x"), 64)
	direct := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(payload))
		return r
	}
	gateway := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, p.URL+"/fn/echo", bytes.NewReader(payload))
		return r
	}

	// Interleave blocks of both so that machine noise hits them alike.
	fmt.Fprintf(e.Log, "latency: %d sequential 64-byte invocations each, direct and through the gateway\n", n)
	dc, gc := load.NewClient(1), load.NewClient(1)
	var dLat, gLat []time.Duration
	for block := 0; block < 10; block++ {
		d, err := load.Latency(ctx, dc, direct, n/10)
		if err != nil {
			return res, fmt.Errorf("direct: %w", err)
		}
		g, err := load.Latency(ctx, gc, gateway, n/10)
		if err != nil {
			return res, fmt.Errorf("gateway: %w", err)
		}
		dLat, gLat = append(dLat, d...), append(gLat, g...)
	}
	res.Direct = bench.Summarize("direct", 64, dLat)
	res.Gateway = bench.Summarize("gateway", 64, gLat)
	if res.RawHTTP, err = raw.HTTPEcho(ctx, 64, n/5); err != nil {
		return res, err
	}
	if res.RawTCP, err = raw.RoundTrip(ctx, "tcp", 64, n/5); err != nil {
		return res, err
	}
	if res.RawUnix, err = raw.RoundTrip(ctx, "unix", 64, n/5); err != nil {
		return res, err
	}

	// HANDOFF_BENCH_INVOKE=leases measures the latencies and the leases
	// only (the leases' bars need the gateway's latency of this run).
	if os.Getenv("HANDOFF_BENCH_INVOKE") == "leases" {
		fmt.Fprintf(e.Log, "HANDOFF_BENCH_INVOKE=leases: no throughput or cold starts\n")
	} else if err := throughputAndColdStarts(ctx, e, p, direct, gateway, dur, colds, &res); err != nil {
		return res, err
	}
	if err := directCalls(ctx, e, p, "echo", &res); err != nil {
		return res, fmt.Errorf("direct calls: %w", err)
	}
	res.Bars = directBars(res)
	return res, e.writeInvoke(res)
}

// throughputAndColdStarts measures warm throughput, direct and through
// the gateway, and cold starts: fork and exec, and from parked processes.
func throughputAndColdStarts(ctx context.Context, e Env, p *platform.Platform, direct, gateway func() *http.Request,
	dur time.Duration, colds int, res *InvokeResult) error {
	var err error
	fmt.Fprintf(e.Log, "throughput: %d concurrent clients for %s, direct and through the gateway\n", res.Concurrency, dur)
	res.DirectRPS, _, _, err = load.Throughput(ctx, nil, direct, res.Concurrency, dur)
	if err != nil {
		return fmt.Errorf("direct throughput: %w", err)
	}
	var lat []time.Duration
	res.GatewayRPS, lat, res.GatewayErrors, err = load.Throughput(ctx, nil, gateway, res.Concurrency, dur)
	if err != nil {
		return fmt.Errorf("gateway throughput: %w", err)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.GatewayLoadP50 = int64(bench.Percentile(lat, 50))
		res.GatewayLoadP99 = int64(bench.Percentile(lat, 99))
	}

	fmt.Fprintf(e.Log, "cold starts: %d functions invoked for the first time\n", colds)
	if err := coldStarts(ctx, e, p.Client, colds, res); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "cold starts from parked processes: %d functions scaled to zero and invoked again\n", colds)
	if err := parkedStarts(ctx, e, p, colds, res); err != nil {
		return err
	}
	return nil
}

// coldStarts deploys copies of echo that run the already-built binary (so no
// build is timed) with no instance, and times each one's first invocation.
func coldStarts(ctx context.Context, e Env, cl *api.Client, n int, res *InvokeResult) error {
	bin := filepath.Join(e.Out, "echo-cold")
	if err := os.MkdirAll(e.Out, 0o755); err != nil {
		return err
	}
	if err := goBuild(ctx, e.Repo, bin, "./examples/echo"); err != nil {
		return err
	}
	var first, spawn []time.Duration
	for i := range n {
		name := fmt.Sprintf("cold-%d", i)
		f := spec.Function{Name: name, Run: spec.Run{Command: bin, Dir: e.Repo}}
		f.ApplyDefaults()
		if _, err := cl.Deploy(ctx, f); err != nil {
			return err
		}
		start := time.Now()
		if _, err := cl.Invoke(ctx, name, []byte("hi")); err != nil {
			return err
		}
		first = append(first, time.Since(start))
		// The node agent reports the instance with its next heartbeat.
		d, err := spawnTime(ctx, cl, name)
		if err != nil {
			return err
		}
		spawn = append(spawn, d)
		if err := cl.Remove(ctx, name); err != nil {
			return err
		}
	}
	res.ColdStart = bench.Summarize("cold-start", 0, first)
	res.ColdStartSpawn = bench.Summarize("spawn-to-ready", 0, spawn)
	return nil
}

// parkedStarts deploys copies of echo that scale to zero a second after
// their last request, invokes each once (its node agent then parks a
// process of it), waits until none has an instance, and times each one's
// next first invocation: the start of an instance from a parked process.
// Batches of four keep within the node agents' park budget.
func parkedStarts(ctx context.Context, e Env, p *platform.Platform, n int, res *InvokeResult) error {
	cl := p.Client
	bin := filepath.Join(e.Out, "echo-cold")
	tok, err := os.ReadFile(filepath.Join(p.Dir, "cluster.token"))
	if err != nil {
		return fmt.Errorf("cluster token: %w", err)
	}
	var first, spawn []time.Duration
	for done := 0; done < n; {
		k := min(4, n-done)
		names := make([]string, k)
		for j := range names {
			names[j] = fmt.Sprintf("parked-%d", done+j)
			f := spec.Function{Name: names[j], Run: spec.Run{Command: bin, Dir: e.Repo}}
			f.Scale.StableWindow = spec.Duration(time.Second)
			f.Scale.PanicWindow = spec.Duration(time.Second)
			f.Scale.ScaleToZeroGrace = spec.Duration(time.Second)
			f.ApplyDefaults()
			if _, err := cl.Deploy(ctx, f); err != nil {
				return err
			}
			if _, err := cl.Invoke(ctx, names[j], []byte("hi")); err != nil {
				return err
			}
		}
		parked := map[string]int{}
		deadline := time.Now().Add(30 * time.Second)
		for len(parked) < k || !allIdle(ctx, cl, names) {
			if time.Now().After(deadline) {
				return fmt.Errorf("functions %v did not scale to zero with a parked process each within 30s (parked: %v)", names, parked)
			}
			time.Sleep(50 * time.Millisecond)
			if parked, err = parkedPIDs(ctx, cl, string(bytes.TrimSpace(tok))); err != nil {
				return err
			}
		}
		for _, name := range names {
			start := time.Now()
			if _, err := cl.Invoke(ctx, name, []byte("hi")); err != nil {
				return err
			}
			first = append(first, time.Since(start))
			d, pid, err := spawnInfo(ctx, cl, name)
			if err != nil {
				return err
			}
			spawn = append(spawn, d)
			if pid == parked[name] {
				res.ParkedActivated++
			} else {
				fmt.Fprintf(e.Log, "  %s started afresh (pid %d), not from its parked process %d\n", name, pid, parked[name])
			}
			if err := cl.Remove(ctx, name); err != nil {
				return err
			}
		}
		done += k
	}
	res.ParkedStart = bench.Summarize("parked-start", 0, first)
	res.ParkedStartActivation = bench.Summarize("activation-to-ready", 0, spawn)
	return nil
}

// allIdle reports whether none of fns has an instance, in the router's
// view and in the node agents' last heartbeats (so the next instance
// reported is the new one).
func allIdle(ctx context.Context, cl *api.Client, fns []string) bool {
	for _, name := range fns {
		f, err := cl.Function(ctx, name)
		if err != nil || f.Ready+f.Starting+f.Draining > 0 {
			return false
		}
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return false
	}
	for _, nd := range st.Nodes {
		for _, in := range nd.Instances {
			if slices.Contains(fns, in.Function) {
				return false
			}
		}
	}
	return true
}

// parkedPIDs asks every node agent (with the cluster token) for its parked
// processes: function → pid, those that wait for their activation.
func parkedPIDs(ctx context.Context, cl *api.Client, token string) (map[string]int, error) {
	ps, err := parkSlots(ctx, cl, token)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range ps {
		if p.Parked {
			out[p.Function] = p.PID
		}
	}
	return out, nil
}

func (e Env) writeInvoke(r InvokeResult) error {
	if err := e.writeJSON("invoke.json", r); err != nil {
		return err
	}
	md, err := e.create("invoke.md")
	if err != nil {
		return err
	}
	defer md.Close()
	w := io.MultiWriter(md, e.Log)
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(w, "\n| 64-byte invocation, warm, sequential | p50 | p99 |\n|---|---|---|\n")
	fmt.Fprintf(w, "| raw TCP round trip (this machine) | %s | %s |\n", us(r.RawTCP.P50), us(r.RawTCP.P99))
	fmt.Fprintf(w, "| raw Unix socket round trip | %s | %s |\n", us(r.RawUnix.P50), us(r.RawUnix.P99))
	fmt.Fprintf(w, "| raw net/http echo | %s | %s |\n", us(r.RawHTTP.P50), us(r.RawHTTP.P99))
	fmt.Fprintf(w, "| direct HTTP to the instance | %s | %s |\n", us(r.Direct.P50), us(r.Direct.P99))
	fmt.Fprintf(w, "| through the gateway | %s | %s |\n", us(r.Gateway.P50), us(r.Gateway.P99))
	fmt.Fprintf(w, "| **gateway overhead** | **%s** | %s |\n", us(r.Gateway.P50-r.Direct.P50), us(r.Gateway.P99-r.Direct.P99))
	fmt.Fprintf(w, "\n| warm throughput, %d clients | requests/s |\n|---|---|\n", r.Concurrency)
	fmt.Fprintf(w, "| direct HTTP to the instance | %.0f |\n", r.DirectRPS)
	fmt.Fprintf(w, "| through the gateway | %.0f (p50 %s, p99 %s under load; %d errors) |\n", r.GatewayRPS,
		us(time.Duration(r.GatewayLoadP50)), us(time.Duration(r.GatewayLoadP99)), r.GatewayErrors)
	fmt.Fprintf(w, "| gateway / direct | %.2f |\n", r.GatewayRPS/r.DirectRPS)
	fmt.Fprintf(w, "\n| cold start (n=%d each) | p50 | p99 |\n|---|---|---|\n", r.ColdStart.N)
	fmt.Fprintf(w, "| **scale from zero, from a parked process: first request (gateway)** | **%s** | %s |\n", ms(r.ParkedStart.P50), ms(r.ParkedStart.P99))
	fmt.Fprintf(w, "| scale from zero, from a parked process: activation to ready (node agent) | %s | %s |\n", ms(r.ParkedStartActivation.P50), ms(r.ParkedStartActivation.P99))
	fmt.Fprintf(w, "| first start ever, fork and exec: first request (gateway) | %s | %s |\n", ms(r.ColdStart.P50), ms(r.ColdStart.P99))
	fmt.Fprintf(w, "| first start ever, fork and exec: spawn to ready (node agent) | %s | %s |\n", ms(r.ColdStartSpawn.P50), ms(r.ColdStartSpawn.P99))
	fmt.Fprintf(w, "\n%d of %d parked-series starts came from a parked process. The cold-start bar (p50 ≤ 20 ms, spawn to first response) is judged on the parked series' first request: scaling from zero and scaling up are the cold starts a deployed function meets; the first start after a deploy on a node is the fork-and-exec row.\n",
		r.ParkedActivated, r.ParkedStart.N)
	if err := writeDirect(w, r); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "\nreports: %s.{json,md}\n", filepath.Join(e.Out, "invoke"))
	return nil
}

// spawnTime waits for a node agent to report fn's instance and returns its
// spawn-to-ready time.
func spawnTime(ctx context.Context, cl *api.Client, fn string) (time.Duration, error) {
	d, _, err := spawnInfo(ctx, cl, fn)
	return d, err
}

// spawnInfo is spawnTime with the instance's pid.
func spawnInfo(ctx context.Context, cl *api.Client, fn string) (time.Duration, int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := cl.Status(ctx)
		if err != nil {
			return 0, 0, err
		}
		for _, nd := range st.Nodes {
			for _, in := range nd.Instances {
				if in.Function == fn && in.ColdStart > 0 {
					return in.ColdStart, in.PID, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("no node agent reported an instance of %s within 10s", fn)
}
