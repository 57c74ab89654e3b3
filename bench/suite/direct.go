package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/bench/suite/internal/leasecall"
	"github.com/handoff-dev/handoff/internal/platform"
)

// DirectResult is what `handoff bench invoke` measures of leases and
// direct calls (issue 6), with the raw baselines they are judged on, all
// in the run that measured the gateway.
type DirectResult struct {
	// Raw baselines, each between the caller process (leasecaller) and
	// a child (rawecho): a 64-byte ping-pong over a shared-memory ring,
	// both sides polling hot, and a 64-byte TCP round trip. RawTCP is
	// bench/raw's TCP round trip (echo goroutine in the caller), measured
	// beside the TCP lease.
	RawRing     bench.Point `json:"raw_ring"`
	RawRingRate Rate        `json:"raw_ring_pipelined"`
	// RawRingOver20us counts the raw ring's ping-pongs over 20 µs.
	RawRingOver20us int         `json:"raw_ring_over_20us"`
	RawTCP          bench.Point `json:"raw_tcp"`
	RawTCP2Proc     bench.Point `json:"raw_tcp_2proc"`
	// Depth is the calls kept in flight by the pipelined series.
	Depth int `json:"depth"`
	// Leases: one executor of echo each, hot, auto and warm over a ring,
	// and one over TCP, acquired from the first node agent in turn.
	Leases []LeaseSeries `json:"leases"`
	// Pinned says where the raw ring's caller and peer ran (see
	// leasecall.Job.Pin); each series says the same of its own.
	Pinned string `json:"pinned"`
}

// Rate is pipelined throughput with the CPU it took (client and
// executor together).
type Rate = leasecall.Rate

// LeaseSeries is one way of calling a leased executor of echo.
type LeaseSeries struct {
	Series    string        `json:"series"`     // lease-hot, lease-auto, lease-warm, lease-tcp
	Mode      string        `json:"mode"`       // the lease's mode
	Transport string        `json:"transport"`  // ring or tcp
	Acquire   time.Duration `json:"acquire_ns"` // Acquire: grant, executor start, connect
	Latency   bench.Point   `json:"latency"`    // sequential 64-byte Calls
	Over20us  int           `json:"over_20us"`  // of them, calls over 20 µs
	Pipelined Rate          `json:"pipelined"`  // Go/Wait, Depth in flight
	// IdleCPU is the executor's CPU time over Idle with the lease held
	// and no calls: what waiting costs in this mode.
	Idle    time.Duration `json:"idle_ns"`
	IdleCPU time.Duration `json:"idle_cpu_ns"`
	// The node agent's accounting of the lease at release (GET
	// /v1/leases), as the executor reported it (every second).
	Allocated   time.Duration `json:"allocated_ns"`
	Busy        time.Duration `json:"busy_ns"`
	HotPolling  time.Duration `json:"hot_polling_ns"`
	Invocations uint64        `json:"invocations"`
	// Pinned says where the caller and the executor ran.
	Pinned string `json:"pinned"`
}

// directCalls measures leases and direct calls of the deployed function
// fn on platform p, and the raw baselines, into res.Leases. Every series
// is measured from a small client process of its own (leasecaller), as a
// user's client is, pinned to one CPU with its peer (the executor, or
// rawecho for the baselines) on the other unless HANDOFF_BENCH_PIN=0.
func directCalls(ctx context.Context, e Env, p *platform.Platform, fn string, res *InvokeResult) error {
	k := counts{n: 20000, warmUp: 200 * time.Millisecond, pipe: 2 * time.Second, idle: time.Second, report: 1100 * time.Millisecond, depth: 64}
	if e.Quick {
		k = counts{n: 200, pipe: 100 * time.Millisecond, idle: 100 * time.Millisecond, depth: 64}
	}
	d := &res.Leases
	d.Depth = k.depth
	peer := filepath.Join(e.Out, "rawecho")
	if err := goBuild(ctx, e.Repo, peer, "./bench/suite/internal/rawecho"); err != nil {
		return err
	}
	caller := filepath.Join(e.Out, "leasecaller")
	if err := goBuild(ctx, e.Repo, caller, "./bench/suite/internal/leasecaller"); err != nil {
		return err
	}
	st, err := p.Client.Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Nodes) == 0 {
		return errors.New("the platform lists no node agent")
	}
	job := leasecall.Job{Node: "http://" + st.Nodes[0].Addr, Token: p.Token, Function: fn,
		N: k.n, Pipe: k.pipe, Depth: k.depth, WarmUp: k.warmUp, RawEcho: peer, Pin: os.Getenv("HANDOFF_BENCH_PIN") != "0"}

	// One poller pair at a time: on a small machine a hot executor left
	// idle would take a core from whatever runs next.
	fmt.Fprintf(e.Log, "raw ring: %d 64-byte ping-pongs, then %s pipelined (%d in flight)\n", k.n, k.pipe, d.Depth)
	j := job
	j.Kind = "ring"
	r, err := runCaller(ctx, caller, j, nil)
	if err != nil {
		return fmt.Errorf("raw ring: %w", err)
	}
	d.RawRing, d.RawRingRate, d.RawRingOver20us, d.Pinned = r.Latency, r.Pipelined, r.Over20us, r.Pinned
	d.RawRing.Series = "raw-ring"
	for _, mode := range []string{"hot", "auto", "warm"} {
		fmt.Fprintf(e.Log, "lease, %s, ring: %d calls, %s pipelined, %s idle\n", mode, k.n, k.pipe, k.idle)
		s, err := leaseSeries(ctx, caller, job, mode, false, k)
		if err != nil {
			return fmt.Errorf("lease %s: %w", mode, err)
		}
		d.Leases = append(d.Leases, s)
	}
	// TCP, in blocks interleaved with the raw round trips to a child, so
	// that noise hits them alike; then bench/raw's in-process round trip.
	fmt.Fprintf(e.Log, "lease over TCP: %d calls in blocks beside raw TCP round trips to a child, then %d in process\n", k.n, k.n)
	var tcp leasecall.Result
	s, err := leaseSeries(ctx, caller, job, "auto", true, k, func(r leasecall.Result) { tcp = r })
	if err != nil {
		return fmt.Errorf("lease over tcp: %w", err)
	}
	d.Leases = append(d.Leases, s)
	d.RawTCP2Proc, d.RawTCP = tcp.RawTCP2Proc, tcp.RawTCP
	return nil
}

// counts size a run of the lease series.
type counts struct {
	n      int           // sequential calls
	warmUp time.Duration // calls run this long before the measured ones
	pipe   time.Duration // pipelined calls for this long
	idle   time.Duration // the executor's CPU measured idle for this long
	report time.Duration // wait for the executor's accounting report (every second)
	depth  int           // pipelined calls in flight
}

// runCaller runs one job in a leasecaller process and returns its result.
// For a lease job, held runs while the caller still holds the lease; the
// caller releases it and exits once held returns.
func runCaller(ctx context.Context, caller string, j leasecall.Job, held func(leasecall.Result) error) (leasecall.Result, error) {
	var r leasecall.Result
	cmd := exec.CommandContext(ctx, caller)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return r, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer cmd.Wait()
	defer in.Close()
	line, _ := json.Marshal(j)
	if _, err := in.Write(append(line, '\n')); err != nil {
		return r, fmt.Errorf("leasecaller took no job: %w", err)
	}
	if err := json.NewDecoder(out).Decode(&r); err != nil {
		return r, fmt.Errorf("leasecaller gave no result: %w", err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	if held != nil {
		return r, held(r)
	}
	return r, nil
}

// leaseSeries measures one lease of fn in mode through a leasecaller
// (sequential calls, then pipelined ones); while the caller holds the
// lease it measures the executor's CPU idle and reads the node's
// accounting. got, if set, sees the caller's whole result.
func leaseSeries(ctx context.Context, caller string, job leasecall.Job, mode string, tcpOnly bool, k counts,
	got ...func(leasecall.Result)) (LeaseSeries, error) {
	s := LeaseSeries{Series: "lease-" + mode, Mode: mode, Transport: "ring"}
	if tcpOnly {
		s.Series, s.Transport = "lease-tcp", "tcp"
	}
	job.Kind, job.Mode, job.TCP = "lease", mode, tcpOnly
	// A warm executor sleeps between calls: the scheduler wakes it best
	// on whichever CPU is idle, so only polling pairs are pinned.
	job.Pin = job.Pin && mode != "warm"
	r, err := runCaller(ctx, caller, job, func(r leasecall.Result) error {
		pids, err := leasecall.LeasePIDs(ctx, job.Node, job.Token, r.Lease)
		if err != nil {
			return err
		}
		// Idle: an Auto executor polls for its hot-poll time after the
		// last call first; let that pass.
		time.Sleep(leaseSettle)
		cpu0 := leasecall.ProcCPU(pids)
		start := time.Now()
		time.Sleep(k.idle)
		s.Idle, s.IdleCPU = time.Since(start), leasecall.ProcCPU(pids)-cpu0

		time.Sleep(k.report)
		info, err := leasecall.LeaseInfo(ctx, job.Node, job.Token, r.Lease)
		if err != nil {
			return err
		}
		s.Allocated, s.Busy, s.HotPolling, s.Invocations = info.Allocated, info.Busy, info.HotPolling, info.Invocations
		return nil
	})
	if err != nil {
		return s, err
	}
	s.Acquire, s.Latency, s.Over20us, s.Pipelined, s.Pinned = r.Acquire, r.Latency, r.Over20us, r.Pipelined, r.Pinned
	s.Latency.Series = s.Series
	for _, f := range got {
		f(r)
	}
	return s, nil
}

// leaseSettle is longer than lease.DefaultHotPoll (50 ms), an Auto
// executor's polling after a call.
const leaseSettle = 200 * time.Millisecond

// Series finds a lease series by name.
func (d DirectResult) Series(name string) (LeaseSeries, bool) {
	for _, s := range d.Leases {
		if s.Series == name {
			return s, true
		}
	}
	return LeaseSeries{}, false
}

// directBars judges r against the bars of issue 6, each beside a baseline
// of the same run. A series the run did not measure is left out.
func directBars(r InvokeResult) []report.Bar {
	var bars []report.Bar
	d := r.Leases
	us := func(t time.Duration) float64 { return float64(t) / float64(time.Microsecond) }
	if hot, ok := d.Series("lease-hot"); ok && hot.Latency.N > 0 {
		for _, b := range []struct {
			pct       string
			got, base time.Duration
			want      float64
		}{
			{"p50", hot.Latency.P50, d.RawRing.P50, 5},
			{"p99", hot.Latency.P99, d.RawRing.P99, 20},
		} {
			bars = append(bars, report.Bar{
				Bar:    fmt.Sprintf("same node, hot, 64 B: %s ≤ %.0f µs", b.pct, b.want),
				Series: hot.Series, Baseline: "raw-ring",
				Measured: fmt.Sprintf("%s %s; raw ring %s %s (%s of raw)", b.pct, bench.FormatDuration(b.got),
					b.pct, bench.FormatDuration(b.base), report.FormatRatio(float64(b.got)/float64(b.base))),
				Worst: us(b.got), Want: b.want, Met: us(b.got) <= b.want,
			})
		}
	}
	if tcp, ok := d.Series("lease-tcp"); ok && tcp.Latency.N > 0 {
		for _, base := range []struct {
			name string
			p    bench.Point
		}{{"raw-tcp", d.RawTCP}, {"raw-tcp-2proc", d.RawTCP2Proc}} {
			if base.p.N == 0 {
				continue
			}
			x := bench.Ratio(tcp.Latency, base.p)
			bars = append(bars, report.Bar{
				Bar:    "across nodes (TCP), 64 B: p50 ≤ 1.3× the raw TCP round trip",
				Series: tcp.Series, Baseline: base.name,
				Measured: fmt.Sprintf("p50 %s; %s p50 %s (%s)", bench.FormatDuration(tcp.Latency.P50), base.name,
					bench.FormatDuration(base.p.P50), report.FormatRatio(x)),
				Worst: x, Want: 1.3, Met: x <= 1.3,
			})
		}
	}
	if r.Gateway.N > 0 {
		for _, name := range []string{"lease-hot", "lease-tcp"} {
			s, ok := d.Series(name)
			if !ok || s.Latency.N == 0 {
				continue
			}
			x := bench.Speedup(s.Latency, r.Gateway)
			bars = append(bars, report.Bar{
				Bar:    "p50 ≥ 20× lower than through the gateway (same function)",
				Series: name, Baseline: "gateway",
				Measured: fmt.Sprintf("p50 %s; gateway p50 %s (%s lower)", bench.FormatDuration(s.Latency.P50),
					bench.FormatDuration(r.Gateway.P50), report.FormatRatio(x)),
				Worst: x, Want: 20, Met: x >= 20,
			})
		}
	}
	for _, name := range []string{"lease-hot", "lease-auto"} {
		s, ok := d.Series(name)
		if !ok || s.Pipelined.Calls == 0 || s.Pipelined.CPU <= 0 {
			continue
		}
		x := s.Pipelined.PerCore()
		raw := "raw ring not measured"
		if d.RawRingRate.CPU > 0 {
			raw = fmt.Sprintf("raw ring %.0f per core-s (%s of raw)", d.RawRingRate.PerCore(), report.FormatRatio(x/d.RawRingRate.PerCore()))
		}
		bars = append(bars, report.Bar{
			Bar:    fmt.Sprintf("same node, pipelined (%d in flight): ≥ 200,000 calls/s per core", d.Depth),
			Series: name, Baseline: "raw-ring",
			Measured: fmt.Sprintf("%.0f calls/s on %.2f cores (client + executor) = %.0f per core-s; %s",
				s.Pipelined.PerSec(), s.Pipelined.Cores(), x, raw),
			Worst: x, Want: 200000, Met: x >= 200000,
		})
	}
	return bars
}

// writeDirect writes the leases table and the bars.
func writeDirect(w io.Writer, r InvokeResult) error {
	d := r.Leases
	if len(d.Leases) == 0 {
		return nil
	}
	dur := bench.FormatDuration
	rate := func(x Rate) string {
		if x.Calls == 0 {
			return "— | — | —"
		}
		return fmt.Sprintf("%.0f | %.2f | %.0f", x.PerSec(), x.Cores(), x.PerCore())
	}
	fmt.Fprintf(w, "\n| leases and direct calls, 64 B | p50 | p99 | calls over 20 µs | pipelined calls/s (%d in flight) | cores (client + executor) | calls per core-s | idle executor CPU | hot polling / allocated (node accounting) |\n", d.Depth)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| raw ring ping-pong, 2 processes, hot | %s | %s | %s | %s | — | — |\n", dur(d.RawRing.P50), dur(d.RawRing.P99),
		over(d.RawRingOver20us, d.RawRing.N), rate(d.RawRingRate))
	for _, s := range d.Leases {
		acct := "—"
		if s.Allocated > 0 {
			acct = fmt.Sprintf("%s / %s (%.0f %%)", dur(s.HotPolling), dur(s.Allocated), 100*s.HotPolling.Seconds()/s.Allocated.Seconds())
		}
		idle := "—"
		if s.Idle > 0 {
			idle = fmt.Sprintf("%.2f cores", s.IdleCPU.Seconds()/s.Idle.Seconds())
		}
		fmt.Fprintf(w, "| %s (%s, lease %s) | %s | %s | %s | %s | %s | %s |\n", s.Series, s.Transport, s.Mode,
			dur(s.Latency.P50), dur(s.Latency.P99), over(s.Over20us, s.Latency.N), rate(s.Pipelined), idle, acct)
	}
	fmt.Fprintf(w, "| raw TCP round trip, 2 processes | %s | %s | — | — | — | — | — | — |\n", dur(d.RawTCP2Proc.P50), dur(d.RawTCP2Proc.P99))
	fmt.Fprintf(w, "| raw TCP round trip, in process (bench/raw) | %s | %s | — | — | — | — | — | — |\n", dur(d.RawTCP.P50), dur(d.RawTCP.P99))
	fmt.Fprintf(w, "| through the gateway (above) | %s | %s | — | — | — | — | — | — |\n\n", dur(r.Gateway.P50), dur(r.Gateway.P99))
	fmt.Fprintf(w, "Every lease and raw series ran from a client process of its own (leasecaller), not from the harness. Raw ring: %s.", orNone(d.Pinned))
	for _, s := range d.Leases {
		fmt.Fprintf(w, " %s: %s.", s.Series, orNone(s.Pinned))
	}
	fmt.Fprintf(w, "\n\n")
	return report.WriteBars(w, r.Bars)
}

// over is a count of slow calls out of n.
func over(k, n int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%d of %d", k, n)
}

func orNone(s string) string {
	if s == "" {
		return "not said"
	}
	return s
}
