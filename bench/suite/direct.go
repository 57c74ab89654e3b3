package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/leaseclient"
)

// DirectResult is what `handoff bench invoke` measures of leases and
// direct calls (issue 6), with the raw baselines they are judged on, all
// in the run that measured the gateway.
type DirectResult struct {
	// Raw baselines, each between this process and a child (rawecho):
	// a 64-byte ping-pong over a shared-memory ring, both sides polling
	// hot, and a 64-byte TCP round trip. RawTCP is bench/raw's TCP round
	// trip (echo goroutine in this process), measured beside the TCP
	// lease.
	RawRing     bench.Point `json:"raw_ring"`
	RawRingRate Rate        `json:"raw_ring_pipelined"`
	RawTCP      bench.Point `json:"raw_tcp"`
	RawTCP2Proc bench.Point `json:"raw_tcp_2proc"`
	// Depth is the calls kept in flight by the pipelined series.
	Depth int `json:"depth"`
	// Leases: one executor of echo each, hot, auto and warm over a ring,
	// and one over TCP, acquired from the first node agent in turn.
	Leases []LeaseSeries `json:"leases"`
}

// Rate is pipelined throughput with the CPU it took.
type Rate struct {
	Calls   int           `json:"calls"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// CPU is the CPU time (user and system) of the client (this process)
	// and the executor together over Elapsed.
	CPU time.Duration `json:"cpu_ns"`
}

// PerSec is calls per second of wall time.
func (r Rate) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// PerCore is calls per CPU-second of client and executor together.
func (r Rate) PerCore() float64 {
	if r.CPU <= 0 {
		return 0
	}
	return float64(r.Calls) / r.CPU.Seconds()
}

// Cores is the cores client and executor kept busy.
func (r Rate) Cores() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return r.CPU.Seconds() / r.Elapsed.Seconds()
}

// LeaseSeries is one way of calling a leased executor of echo.
type LeaseSeries struct {
	Series    string        `json:"series"`     // lease-hot, lease-auto, lease-warm, lease-tcp
	Mode      string        `json:"mode"`       // the lease's mode
	Transport string        `json:"transport"`  // ring or tcp
	Acquire   time.Duration `json:"acquire_ns"` // Acquire: grant, executor start, connect
	Latency   bench.Point   `json:"latency"`    // sequential 64-byte Calls
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
}

// directCalls measures leases and direct calls of the deployed function
// fn on platform p, and the raw baselines, into res.Leases.
func directCalls(ctx context.Context, e Env, p *platform.Platform, fn string, res *InvokeResult) error {
	k := counts{n: 20000, pipe: 2 * time.Second, idle: time.Second, report: 1100 * time.Millisecond, depth: 64}
	if e.Quick {
		k = counts{n: 200, pipe: 100 * time.Millisecond, idle: 100 * time.Millisecond, depth: 64}
	}
	n, pipe := k.n, k.pipe
	d := &res.Leases
	d.Depth = k.depth
	peer := filepath.Join(e.Out, "rawecho")
	if err := goBuild(ctx, e.Repo, peer, "./bench/suite/internal/rawecho"); err != nil {
		return err
	}
	st, err := p.Client.Status(ctx)
	if err != nil {
		return err
	}
	if len(st.Nodes) == 0 {
		return errors.New("the platform lists no node agent")
	}
	lc := &leaseclient.Client{Node: "http://" + st.Nodes[0].Addr, Token: p.Token}
	payload := bytes.Repeat([]byte("x"), 64)

	// One poller pair at a time: on a small machine a hot executor left
	// idle would take a core from whatever runs next.
	fmt.Fprintf(e.Log, "raw ring: %d 64-byte ping-pongs, then %s pipelined (%d in flight)\n", n, pipe, d.Depth)
	if d.RawRing, d.RawRingRate, err = rawRing(ctx, peer, n, pipe, d.Depth); err != nil {
		return fmt.Errorf("raw ring: %w", err)
	}
	for _, mode := range []string{"hot", "auto", "warm"} {
		fmt.Fprintf(e.Log, "lease, %s, ring: %d calls, %s pipelined, %s idle\n", mode, n, pipe, k.idle)
		s, err := leaseSeries(ctx, lc, fn, mode, false, payload, k, nil)
		if err != nil {
			return fmt.Errorf("lease %s: %w", mode, err)
		}
		d.Leases = append(d.Leases, s)
	}

	// TCP, in blocks interleaved with the raw round trips, so that noise
	// hits them alike.
	fmt.Fprintf(e.Log, "lease over TCP: %d calls in blocks beside raw TCP round trips to a child, then %d in process\n", n, n)
	tcp2, stop, err := startTCPEcho(ctx, peer)
	if err != nil {
		return fmt.Errorf("raw tcp (2 processes): %w", err)
	}
	defer stop()
	var raw2Lat []time.Duration
	between := func(int) error {
		l, err := tcpRoundTrips(ctx, tcp2, n/10)
		raw2Lat = append(raw2Lat, l...)
		return err
	}
	s, err := leaseSeries(ctx, lc, fn, "auto", true, payload, k, between)
	if err != nil {
		return fmt.Errorf("lease over tcp: %w", err)
	}
	d.Leases = append(d.Leases, s)
	d.RawTCP2Proc = bench.Summarize("raw-tcp-2proc", 64, raw2Lat)
	// bench/raw's round trip (echo goroutine in this process), right after.
	if d.RawTCP, err = raw.RoundTrip(ctx, "tcp", 64, n); err != nil {
		return fmt.Errorf("raw tcp: %w", err)
	}
	d.RawTCP.Series = "raw-tcp"
	return nil
}

// counts size a run of the lease series.
type counts struct {
	n      int           // sequential calls
	pipe   time.Duration // pipelined calls for this long
	idle   time.Duration // the executor's CPU measured idle for this long
	report time.Duration // wait for the executor's accounting report (every second)
	depth  int           // pipelined calls in flight
}

// leaseSeries acquires one executor of fn in mode, measures k.n
// sequential calls (in 10 blocks, calling between after each), pipelined
// calls, the executor's CPU while idle and the node's accounting, then
// releases the lease.
func leaseSeries(ctx context.Context, lc *leaseclient.Client, fn, mode string, tcpOnly bool, payload []byte,
	k counts, between func(block int) error) (LeaseSeries, error) {
	n, depth := k.n, k.depth
	s := LeaseSeries{Series: "lease-" + mode, Mode: mode, Transport: "ring"}
	if tcpOnly {
		s.Series, s.Transport = "lease-tcp", "tcp"
	}
	c := *lc
	c.TCPOnly = tcpOnly
	start := time.Now()
	l, err := c.Acquire(ctx, api.LeaseRequest{Function: fn, Executors: 1, Duration: "10m", Mode: mode})
	if err != nil {
		return s, err
	}
	s.Acquire = time.Since(start)
	defer l.Release(context.Background())
	g := l.Grant()
	pids, err := leasePIDs(ctx, lc, g.ID)
	if err != nil {
		return s, err
	}

	for range min(n, 1000) { // warm up
		if _, err := l.Call(ctx, payload); err != nil {
			return s, err
		}
	}
	lat := make([]time.Duration, 0, n)
	for block := range 10 {
		for range n / 10 {
			t0 := time.Now()
			out, err := l.Call(ctx, payload)
			d := time.Since(t0)
			if err != nil {
				return s, err
			}
			if !bytes.Equal(out, payload) {
				return s, bench.ErrMismatch
			}
			lat = append(lat, d)
		}
		if between != nil {
			if err := between(block); err != nil {
				return s, err
			}
		}
	}
	s.Latency = bench.Summarize(s.Series, int64(len(payload)), lat)

	cpu0 := selfCPU() + procCPU(pids)
	start = time.Now()
	ring := make([]*direct.Future, depth)
	calls := 0
	for ; calls%1024 != 0 || time.Since(start) < k.pipe; calls++ {
		if f := ring[calls%depth]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				return s, err
			}
		}
		if ring[calls%depth], err = l.Go(payload); err != nil {
			return s, err
		}
	}
	for _, f := range ring {
		if f != nil {
			if _, err := f.Wait(ctx); err != nil {
				return s, err
			}
		}
	}
	s.Pipelined = Rate{Calls: calls, Elapsed: time.Since(start), CPU: selfCPU() + procCPU(pids) - cpu0}

	// Idle: an Auto executor polls for its hot-poll time after the last
	// call first; let that pass.
	time.Sleep(leaseSettle)
	cpu0 = procCPU(pids)
	start = time.Now()
	time.Sleep(k.idle)
	s.Idle, s.IdleCPU = time.Since(start), procCPU(pids)-cpu0

	time.Sleep(k.report)
	info, err := leaseInfo(ctx, lc, g.ID)
	if err != nil {
		return s, err
	}
	s.Allocated, s.Busy, s.HotPolling, s.Invocations = info.Allocated, info.Busy, info.HotPolling, info.Invocations
	return s, nil
}

// leaseSettle is longer than lease.DefaultHotPoll (50 ms), an Auto
// executor's polling after a call.
const leaseSettle = 200 * time.Millisecond

// leaseInfo finds lease id in the node agent's listing.
func leaseInfo(ctx context.Context, lc *leaseclient.Client, id string) (api.LeaseInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, lc.Node+"/v1/leases", nil)
	if err != nil {
		return api.LeaseInfo{}, err
	}
	req.Header.Set("Authorization", "Bearer "+lc.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return api.LeaseInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.LeaseInfo{}, fmt.Errorf("GET %s/v1/leases: %s", lc.Node, resp.Status)
	}
	var all []api.LeaseInfo
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		return api.LeaseInfo{}, err
	}
	for _, l := range all {
		if l.ID == id {
			return l, nil
		}
	}
	return api.LeaseInfo{}, fmt.Errorf("node %s does not list lease %s", lc.Node, id)
}

// rawRing measures n ping-pongs of 64 bytes over a ring to a rawecho
// child, both sides polling hot, then keeps depth messages in flight for
// d.
func rawRing(ctx context.Context, peer string, n int, d time.Duration, depth int) (bench.Point, Rate, error) {
	f, err := shm.New(1 << 20) // the executors' default ring
	if err != nil {
		return bench.Point{}, Rate{}, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, peer, "ring")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return bench.Point{}, Rate{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	child, err := shm.WatchProcess(cmd.Process.Pid)
	if err != nil {
		return bench.Point{}, Rate{}, err
	}
	c, err := shm.Open(f, shm.Client, shm.Options{Mode: shm.Hot, Alive: child.Alive})
	if err != nil {
		child.Close()
		return bench.Point{}, Rate{}, err
	}
	defer func() { c.Close(); child.Close() }()

	msg := bytes.Repeat([]byte("x"), 64)
	lat := make([]time.Duration, 0, n)
	for i := range min(n, 1000) + n {
		t0 := time.Now()
		if err := c.Send(msg); err != nil {
			return bench.Point{}, Rate{}, err
		}
		got, err := c.Recv()
		dt := time.Since(t0)
		if err != nil {
			return bench.Point{}, Rate{}, err
		}
		if !bytes.Equal(got, msg) {
			return bench.Point{}, Rate{}, bench.ErrMismatch
		}
		if i >= min(n, 1000) {
			lat = append(lat, dt)
		}
	}
	p := bench.Summarize("raw-ring", 64, lat)

	pids := []int{cmd.Process.Pid}
	cpu0 := selfCPU() + procCPU(pids)
	start := time.Now()
	sent, got := 0, 0
	for ; got%1024 != 0 || time.Since(start) < d; got++ {
		for ; sent-got < depth; sent++ {
			if err := c.Send(msg); err != nil {
				return p, Rate{}, err
			}
		}
		if _, err := c.Recv(); err != nil {
			return p, Rate{}, err
		}
	}
	for ; got < sent; got++ {
		if _, err := c.Recv(); err != nil {
			return p, Rate{}, err
		}
	}
	return p, Rate{Calls: got, Elapsed: time.Since(start), CPU: selfCPU() + procCPU(pids) - cpu0}, nil
}

// startTCPEcho starts a rawecho child echoing on TCP and connects to it.
func startTCPEcho(ctx context.Context, peer string) (net.Conn, func(), error) {
	cmd := exec.CommandContext(ctx, peer, "tcp")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	kill := func() { cmd.Process.Kill(); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		kill()
		return nil, nil, fmt.Errorf("rawecho did not print its address: %w", err)
	}
	nc, err := net.Dial("tcp", strings.TrimSpace(line))
	if err != nil {
		kill()
		return nil, nil, err
	}
	nc.(*net.TCPConn).SetNoDelay(true)
	if _, err := tcpRoundTrips(ctx, nc, 50); err != nil { // warm up
		nc.Close()
		kill()
		return nil, nil, err
	}
	return nc, func() { nc.Close(); kill() }, nil
}

// tcpRoundTrips times n 64-byte round trips on nc.
func tcpRoundTrips(ctx context.Context, nc net.Conn, n int) ([]time.Duration, error) {
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg := bytes.Repeat([]byte("x"), 64)
	in := make([]byte, 64)
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := nc.Write(msg); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(nc, in); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	if !bytes.Equal(in, msg) {
		return lat, bench.ErrMismatch
	}
	return lat, nil
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user and system) pids have used, from
// /proc/PID/stat (in clock ticks, 10 ms); a process gone counts 0.
func procCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

// leasePIDs finds the processes of lease id's executors, as their node
// lists them (a process started from a parked one has no HANDOFF_LEASE in
// its /proc environ).
func leasePIDs(ctx context.Context, lc *leaseclient.Client, id string) ([]int, error) {
	info, err := leaseInfo(ctx, lc, id)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range info.Executors {
		if e.PID > 0 {
			pids = append(pids, e.PID)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("lease %s lists no executor process: cannot account the executor's CPU", id)
	}
	return pids, nil
}

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
	fmt.Fprintf(w, "\n| leases and direct calls, 64 B | p50 | p99 | pipelined calls/s (%d in flight) | cores (client + executor) | calls per core-s | idle executor CPU | hot polling / allocated (node accounting) |\n", d.Depth)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| raw ring ping-pong, 2 processes, hot | %s | %s | %s | — | — |\n", dur(d.RawRing.P50), dur(d.RawRing.P99), rate(d.RawRingRate))
	for _, s := range d.Leases {
		acct := "—"
		if s.Allocated > 0 {
			acct = fmt.Sprintf("%s / %s (%.0f %%)", dur(s.HotPolling), dur(s.Allocated), 100*s.HotPolling.Seconds()/s.Allocated.Seconds())
		}
		idle := "—"
		if s.Idle > 0 {
			idle = fmt.Sprintf("%.2f cores", s.IdleCPU.Seconds()/s.Idle.Seconds())
		}
		fmt.Fprintf(w, "| %s (%s, lease %s) | %s | %s | %s | %s | %s |\n", s.Series, s.Transport, s.Mode,
			dur(s.Latency.P50), dur(s.Latency.P99), rate(s.Pipelined), idle, acct)
	}
	fmt.Fprintf(w, "| raw TCP round trip, 2 processes | %s | %s | — | — | — | — | — |\n", dur(d.RawTCP2Proc.P50), dur(d.RawTCP2Proc.P99))
	fmt.Fprintf(w, "| raw TCP round trip, in process (bench/raw) | %s | %s | — | — | — | — | — |\n", dur(d.RawTCP.P50), dur(d.RawTCP.P99))
	fmt.Fprintf(w, "| through the gateway (above) | %s | %s | — | — | — | — | — |\n\n", dur(r.Gateway.P50), dur(r.Gateway.P99))
	return report.WriteBars(w, r.Bars)
}
