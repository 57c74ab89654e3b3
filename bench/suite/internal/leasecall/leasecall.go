//go:build linux

// Package leasecall is the measuring side of `handoff bench invoke`'s
// lease series, run in a small client process of its own (the leasecaller
// command) rather than in the harness: a user's client of a lease is its
// own process, and the harness, with its heap, garbage collections and
// goroutines, took the core of a spinning caller often enough to make the
// tail of a hot call its own (p99 59-107 µs for calls and for the raw ring
// alike, against ~2 µs for the same ring ping-pong in a small process).
//
// The harness writes one Job as a JSON line to the caller's stdin and
// reads one Result line from its stdout. For a lease job the caller then
// holds the lease until its stdin closes, so the harness can measure the
// executor idle and read the node's accounting, and releases it.
package leasecall

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
	"github.com/handoff-dev/handoff/internal/prefault"
	"github.com/handoff-dev/handoff/leaseclient"
	"golang.org/x/sys/unix"
)

// Job is what the harness asks the caller to measure.
type Job struct {
	// Kind is "ring" (the raw ring baseline: a ping-pong with a rawecho
	// child) or "lease" (a lease of Function in Mode, over TCP if TCP).
	Kind     string `json:"kind"`
	Node     string `json:"node"`  // a node agent's base URL
	Token    string `json:"token"` // the admin token (on stdin, never in argv)
	Function string `json:"function"`
	Mode     string `json:"mode"`
	TCP      bool   `json:"tcp"`
	// N sequential 64-byte calls after a warm-up, in 10 blocks; over TCP
	// raw round trips to a rawecho child run between the blocks.
	N     int           `json:"n"`
	Pipe  time.Duration `json:"pipe_ns"` // pipelined calls for this long
	Depth int           `json:"depth"`   // calls in flight when pipelined
	// WarmUp is how long calls run before the measured ones (at least
	// 1000 calls): the caller, its peer and both Go runtimes reach the
	// steady state a held lease is in (the runtime's monitor thread, for
	// one, polls every 20 µs for the first millisecond of activity).
	WarmUp time.Duration `json:"warm_up_ns"`
	// RawEcho is the rawecho binary (the baselines' peer).
	RawEcho string `json:"rawecho"`
	// Pin puts this process's threads on one CPU and the peer's (the
	// executor or rawecho) on another while measuring.
	Pin bool `json:"pin"`
}

// Result is what the caller measured.
type Result struct {
	Lease     string        `json:"lease,omitempty"` // the lease's id
	Acquire   time.Duration `json:"acquire_ns"`
	Latency   bench.Point   `json:"latency"`
	Over20us  int           `json:"over_20us"` // sequential calls that took over 20 µs
	Pipelined Rate          `json:"pipelined"`
	// Over TCP, the baselines measured from this process: round trips
	// to a rawecho child between the blocks, and bench/raw's (an echo
	// goroutine in this process) after them.
	RawTCP2Proc bench.Point `json:"raw_tcp_2proc"`
	RawTCP      bench.Point `json:"raw_tcp"`
	// Pinned says which CPUs the measurement ran on, or why it was not
	// pinned.
	Pinned string `json:"pinned"`
	Error  string `json:"error,omitempty"`
}

// Rate is pipelined throughput with the CPU it took.
type Rate struct {
	Calls   int           `json:"calls"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// CPU is the CPU time (user and system) of the client and the
	// executor together over Elapsed.
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

// Main is the caller's whole life: one job from stdin, its result to
// stdout, and for a lease, the release once stdin closes.
func Main(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the job from stdin: %w", err)
	}
	var j Job
	if err := json.Unmarshal(line, &j); err != nil {
		return fmt.Errorf("the job on stdin is not JSON: %w", err)
	}
	var res Result
	var release func()
	switch j.Kind {
	case "ring":
		res, err = rawRing(ctx, j)
	case "lease":
		res, release, err = lease(ctx, j)
	default:
		err = fmt.Errorf("no job kind %q: want ring or lease", j.Kind)
	}
	if err != nil {
		res.Error = err.Error()
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	if release != nil {
		io.Copy(io.Discard, in) // until the harness is done with the lease
		release()
	}
	return nil
}

// settle leaves a garbage collection behind before measuring, so that
// the collection the warm-up owed does not land in the series.
func settle() { runtime.GC() }

// lease acquires one executor, measures it and returns the release.
func lease(ctx context.Context, j Job) (Result, func(), error) {
	var res Result
	lc := &leaseclient.Client{Node: j.Node, Token: j.Token, TCPOnly: j.TCP}
	start := time.Now()
	l, err := lc.Acquire(ctx, api.LeaseRequest{Function: j.Function, Executors: 1, Duration: "10m", Mode: j.Mode})
	if err != nil {
		return res, nil, err
	}
	res.Acquire = time.Since(start)
	release := func() { l.Release(context.Background()) }
	res.Lease = l.Grant().ID
	pids, err := LeasePIDs(ctx, j.Node, j.Token, res.Lease)
	if err != nil {
		return res, release, err
	}
	res.Pinned = pin(j.Pin, pids)
	payload := bytes.Repeat([]byte("x"), 64)
	call := func() (time.Duration, error) {
		t0 := time.Now()
		out, err := l.Call(ctx, payload)
		d := time.Since(t0)
		if err == nil && !bytes.Equal(out, payload) {
			err = bench.ErrMismatch
		}
		return d, err
	}
	if err := warm(j, func() error { _, err := call(); return err }); err != nil {
		return res, release, err
	}
	var between func() error
	var rawLat []time.Duration
	if j.TCP {
		nc, stop, err := startTCPEcho(ctx, j.RawEcho)
		if err != nil {
			return res, release, fmt.Errorf("raw tcp (2 processes): %w", err)
		}
		defer stop()
		between = func() error {
			l, err := tcpRoundTrips(ctx, nc, j.N/10)
			rawLat = append(rawLat, l...)
			return err
		}
	}
	lat := samples(j.N)
	settle()
	for range 10 {
		for range j.N / 10 {
			d, err := call()
			if err != nil {
				return res, release, err
			}
			lat = append(lat, d)
		}
		if between != nil {
			if err := between(); err != nil {
				return res, release, err
			}
		}
	}
	res.Latency, res.Over20us = summarize("", lat)
	if j.TCP {
		res.RawTCP2Proc = bench.Summarize("raw-tcp-2proc", 64, rawLat)
	}

	cpu0 := SelfCPU() + ProcCPU(pids)
	start = time.Now()
	ring := make([]*direct.Future, j.Depth)
	calls := 0
	for ; calls%1024 != 0 || time.Since(start) < j.Pipe; calls++ {
		if f := ring[calls%j.Depth]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				return res, release, err
			}
		}
		if ring[calls%j.Depth], err = l.Go(payload); err != nil {
			return res, release, err
		}
	}
	for _, f := range ring {
		if f != nil {
			if _, err := f.Wait(ctx); err != nil {
				return res, release, err
			}
		}
	}
	res.Pipelined = Rate{Calls: calls, Elapsed: time.Since(start), CPU: SelfCPU() + ProcCPU(pids) - cpu0}
	if j.TCP {
		// bench/raw's round trip (echo goroutine in this process).
		if res.RawTCP, err = raw.RoundTrip(ctx, "tcp", 64, j.N); err != nil {
			return res, release, fmt.Errorf("raw tcp: %w", err)
		}
		res.RawTCP.Series = "raw-tcp"
	}
	return res, release, nil
}

// warmUp is the fewest calls made before measuring.
const warmUp = 1000

// warm calls call for j.WarmUp, and at least warmUp times.
func warm(j Job, call func() error) error {
	start := time.Now()
	for i := 0; i < min(j.N, warmUp) || time.Since(start) < j.WarmUp; i++ {
		if err := call(); err != nil {
			return err
		}
	}
	return nil
}

// samples is room for n latencies, written once so that recording them
// faults no fresh page in while measuring.
func samples(n int) []time.Duration {
	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = 1
	}
	return lat[:0]
}

// summarize is bench.Summarize of 64-byte calls, with the count of calls
// over 20 µs (the hot p99 bar).
func summarize(series string, lat []time.Duration) (bench.Point, int) {
	over := 0
	for _, d := range lat {
		if d > 20*time.Microsecond {
			over++
		}
	}
	return bench.Summarize(series, 64, lat), over
}

// rawRing measures j.N ping-pongs of 64 bytes over a ring to a rawecho
// child, both sides polling hot, then keeps j.Depth messages in flight
// for j.Pipe.
func rawRing(ctx context.Context, j Job) (Result, error) {
	var res Result
	prefault.Heap(leaseclient.PrefaultHeap) // as a polling lease's client does
	f, err := shm.New(1 << 20)              // the executors' default ring
	if err != nil {
		return res, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, j.RawEcho, "ring")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	child, err := shm.WatchProcess(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	c, err := shm.Open(f, shm.Client, shm.Options{Mode: shm.Hot, Alive: child.Alive})
	if err != nil {
		child.Close()
		return res, err
	}
	defer func() { c.Close(); child.Close() }()

	msg := bytes.Repeat([]byte("x"), 64)
	pingPong := func() (time.Duration, error) {
		t0 := time.Now()
		if err := c.Send(msg); err != nil {
			return 0, err
		}
		got, err := c.Recv()
		d := time.Since(t0)
		if err == nil && !bytes.Equal(got, msg) {
			err = bench.ErrMismatch
		}
		return d, err
	}
	pids := []int{cmd.Process.Pid}
	res.Pinned = pin(j.Pin, pids)
	if err := warm(j, func() error { _, err := pingPong(); return err }); err != nil {
		return res, err
	}
	lat := samples(j.N)
	settle()
	for range j.N {
		d, err := pingPong()
		if err != nil {
			return res, err
		}
		lat = append(lat, d)
	}
	res.Latency, res.Over20us = summarize("raw-ring", lat)

	cpu0 := SelfCPU() + ProcCPU(pids)
	start := time.Now()
	sent, got := 0, 0
	for ; got%1024 != 0 || time.Since(start) < j.Pipe; got++ {
		for ; sent-got < j.Depth; sent++ {
			if err := c.Send(msg); err != nil {
				return res, err
			}
		}
		if _, err := c.Recv(); err != nil {
			return res, err
		}
	}
	for ; got < sent; got++ {
		if _, err := c.Recv(); err != nil {
			return res, err
		}
	}
	res.Pipelined = Rate{Calls: got, Elapsed: time.Since(start), CPU: SelfCPU() + ProcCPU(pids) - cpu0}
	return res, nil
}

// pin puts every thread of this process on the first CPU it may use and
// every thread of the peers on the second, if asked and if there are two;
// it says what it did.
func pin(want bool, peers []int) string {
	if !want {
		return "not pinned"
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "not pinned: " + err.Error()
	}
	var cpus []int
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return fmt.Sprintf("not pinned: this process may run on %d CPU only", len(cpus))
	}
	if err := pinProcess(os.Getpid(), cpus[0]); err != nil {
		return "not pinned: " + err.Error()
	}
	for _, p := range peers {
		if err := pinProcess(p, cpus[1]); err != nil {
			return fmt.Sprintf("caller pinned to CPU %d; peer not pinned: %v", cpus[0], err)
		}
	}
	return fmt.Sprintf("caller's threads on CPU %d, the peer's on CPU %d; other processes unpinned", cpus[0], cpus[1])
}

// pinProcess sets the affinity of every thread of pid to cpu; threads
// started later inherit it.
func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("process %d lists no threads", pid)
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(filepath.Base(t))
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d of process %d to CPU %d: %w", tid, pid, cpu, err)
		}
	}
	return nil
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

// SelfCPU is the CPU time (user and system) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcCPU is the CPU time (user and system) pids have used, from
// /proc/PID/stat (in clock ticks, 10 ms); a process gone counts 0.
func ProcCPU(pids []int) time.Duration {
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

// LeaseInfo finds lease id in node's listing (GET /v1/leases).
func LeaseInfo(ctx context.Context, node, token, id string) (api.LeaseInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, node+"/v1/leases", nil)
	if err != nil {
		return api.LeaseInfo{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return api.LeaseInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.LeaseInfo{}, fmt.Errorf("GET %s/v1/leases: %s", node, resp.Status)
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
	return api.LeaseInfo{}, fmt.Errorf("node %s does not list lease %s", node, id)
}

// LeasePIDs finds the processes of lease id's executors, as their node
// lists them (a process started from a parked one has no HANDOFF_LEASE in
// its /proc environ).
func LeasePIDs(ctx context.Context, node, token, id string) ([]int, error) {
	info, err := LeaseInfo(ctx, node, token, id)
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
