package direct_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
)

// The benchmarks run the executor in a child process (the test binary
// again), as in production, and report latency percentiles of 64-byte
// calls (p50-µs, p99-µs) or pipelined throughput (calls/s, and calls per
// CPU-second of both processes together). BENCH_EXECUTOR_PROCS sets the
// executor's GOMAXPROCS, DIRECT_HANDOFF_US its ServerConfig.HandOff.
//
//	go test ./direct -run '^$' -bench . -benchtime 1s

// latencies records the duration of every operation.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	pct := func(p float64) float64 {
		return float64(l[min(len(l)-1, int(float64(len(l))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op") // the percentiles say it better
}

// cpuTime is the CPU time (user and system) pid has used so far.
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func childEnv() []string {
	if p := os.Getenv("BENCH_EXECUTOR_PROCS"); p != "" {
		return []string{"GOMAXPROCS=" + p}
	}
	return nil
}

// BenchmarkRawTCPRoundTrip is the baseline for TCP: a 64-byte write and
// read on a loopback connection to an echo process, nothing else.
func BenchmarkRawTCPRoundTrip(b *testing.B) {
	e := startExecutor(b, "rawtcp", nil, childEnv()...)
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var buf [64]byte
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := nc.Write(buf[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf[:]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}

// BenchmarkRingPingPong is the baseline for shared memory: a 64-byte
// message to an echo process over the rings and back, both sides hot.
func BenchmarkRingPingPong(b *testing.B) {
	env := append(childEnv(), fmt.Sprintf("SHM_MODE=%d", shm.Hot))
	c, _ := shmConn(b, "rawshm", shm.Options{Mode: shm.Hot}, env...)
	msg := make([]byte, 64)
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := c.Send(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Recv(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}

// shmModes are the waiting modes the shm benchmarks compare.
var shmModes = []struct {
	name string
	opts shm.Options
	env  []string
}{
	{"hot", shm.Options{Mode: shm.Hot}, []string{fmt.Sprintf("SHM_MODE=%d", shm.Hot)}},
	{"hot-locked", shm.Options{Mode: shm.Hot, LockThread: true}, []string{fmt.Sprintf("SHM_MODE=%d", shm.Hot), "SHM_LOCK=1"}},
	{"auto", shm.Options{Mode: shm.Auto}, nil},
	{"warm", shm.Options{Mode: shm.Warm}, []string{fmt.Sprintf("SHM_MODE=%d", shm.Warm)}},
}

// BenchmarkCallShm is a synchronous 64-byte Call over the rings.
func BenchmarkCallShm(b *testing.B) {
	for _, m := range shmModes {
		b.Run(m.name, func(b *testing.B) {
			c, _ := shmConn(b, "shm", m.opts, append(childEnv(), m.env...)...)
			benchCall(b, handshake(b, c))
		})
	}
}

// BenchmarkCallTCP is a synchronous 64-byte Call over loopback TCP.
func BenchmarkCallTCP(b *testing.B) {
	for _, m := range []struct {
		name string
		opts direct.TCPOptions
		env  []string
	}{
		{"flush", direct.TCPOptions{}, nil},
		{"batch", direct.TCPOptions{Batch: true}, []string{"TCP_BATCH=1"}},
		// Both ends busy-poll their socket: a hot executor and a
		// client that spins while it waits for its result.
		{"batch-spin", direct.TCPOptions{Batch: true, Spin: -1}, []string{"TCP_BATCH=1", "TCP_SPIN=-1ns"}},
	} {
		b.Run(m.name, func(b *testing.B) {
			e := startExecutor(b, "tcp", nil, append(childEnv(), m.env...)...)
			benchCall(b, handshake(b, tcpConn(b, e.addr, m.opts)))
		})
	}
}

func benchCall(b *testing.B, c *direct.Client) {
	ctx := context.Background()
	payload := make([]byte, 64)
	for range 1000 { // warm up
		c.Call(ctx, payload)
	}
	lat := make(latencies, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := c.Call(ctx, payload); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	lat.report(b)
}

// BenchmarkPipelined keeps up to 64 calls of 64 bytes in flight from one
// goroutine and reports calls per second, and per CPU-second of client and
// executor together.
func BenchmarkPipelined(b *testing.B) {
	for _, m := range shmModes {
		if m.name == "hot-locked" {
			continue
		}
		b.Run("shm-"+m.name, func(b *testing.B) {
			c, e := shmConn(b, "shm", m.opts, append(childEnv(), m.env...)...)
			benchPipelined(b, handshake(b, c), e)
		})
	}
	for _, m := range []struct {
		name string
		opts direct.TCPOptions
		env  []string
	}{
		{"tcp-flush", direct.TCPOptions{}, nil},
		{"tcp-batch", direct.TCPOptions{Batch: true}, []string{"TCP_BATCH=1"}},
		// The executor spins; the client does not while calls are
		// pipelined (see Client.recv).
		{"tcp-batch-spin", direct.TCPOptions{Batch: true, Spin: -1}, []string{"TCP_BATCH=1", "TCP_SPIN=-1ns"}},
	} {
		b.Run(m.name, func(b *testing.B) {
			e := startExecutor(b, "tcp", nil, append(childEnv(), m.env...)...)
			benchPipelined(b, handshake(b, tcpConn(b, e.addr, m.opts)), e)
		})
	}
}

func benchPipelined(b *testing.B, c *direct.Client, e *executor) {
	const depth = 64
	ctx := context.Background()
	payload := make([]byte, 64)
	ring := make([]*direct.Future, depth)
	var self syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	selfStart := time.Duration(self.Utime.Nano() + self.Stime.Nano())
	childStart := cpuTime(b, e.cmd.Process.Pid)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if f := ring[i%depth]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		ring[i%depth] = c.Go(payload)
	}
	for _, f := range ring {
		if f != nil {
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	cpu := time.Duration(self.Utime.Nano()+self.Stime.Nano()) - selfStart + cpuTime(b, e.cmd.Process.Pid) - childStart
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "calls/cpu-s")
	}
}
