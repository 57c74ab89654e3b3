package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/cgroup"
)

func testConfig(t testing.TB, id string, env ...string) Config {
	return Config{
		ID:                id,
		Function:          "fn-" + id,
		Node:              "n-test",
		Command:           os.Args[0],
		Env:               env,
		APISocket:         "/tmp/handoff-test.sock",
		LogPath:           filepath.Join(t.TempDir(), "logs", id+".log"),
		ReadyTimeout:      10 * time.Second,
		RestartBackoffMin: 5 * time.Millisecond,
		RestartBackoffMax: 20 * time.Millisecond,
		CgroupParent:      testCgroupParent,
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startT(t testing.TB, cfg Config) *Instance {
	t.Helper()
	inst, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		inst.Stop(ctx)
	})
	return inst
}

func get(addr, path string) (string, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), err
}

func TestStartServeEnv(t *testing.T) {
	var mu sync.Mutex
	var states []State
	cfg := testConfig(t, "i-echo", "HELPER_MODE=echo", "EXTRA=1", "PORT=1")
	cfg.OnState = func(id string, s State) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	}
	inst := startT(t, cfg)
	if inst.State() != Ready {
		t.Fatalf("state %v after Start, want ready", inst.State())
	}
	info := inst.Info()
	t.Logf("cold start (spawn→ready): %v", info.ColdStart)
	if info.PID == 0 || info.Addr != inst.Addr() || info.ColdStart <= 0 || info.Restarts != 0 {
		t.Errorf("info %+v", info)
	}
	if info.MemoryBytes <= 0 {
		t.Errorf("MemoryBytes = %d, want the process's RSS", info.MemoryBytes)
	}

	resp, err := http.Post("http://"+inst.Addr()+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Errorf("echo = %q", b)
	}

	body, err := get(inst.Addr(), "/env")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	json.Unmarshal([]byte(body), &env)
	_, port, _ := strings.Cut(inst.Addr(), ":")
	for _, want := range []string{
		"PORT=" + port, "HANDOFF_FUNCTION=fn-i-echo", "HANDOFF_INSTANCE=i-echo",
		"HANDOFF_NODE=n-test", "HANDOFF_API=/tmp/handoff-test.sock", "EXTRA=1",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("instance env lacks %s: %v", want, env)
		}
	}
	if slices.Contains(env, "PORT=1") {
		t.Errorf("Config.Env overrode PORT: %v", env)
	}

	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Wait():
	default:
		t.Fatal("Wait not closed after Stop")
	}
	log, _ := os.ReadFile(cfg.LogPath)
	if !strings.Contains(string(log), "helper: listening on "+port) {
		t.Errorf("log file lacks the instance output: %q", log)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []State{Starting, Ready, Draining, Stopped}; !slices.Equal(states, want) {
		t.Errorf("OnState saw %v, want %v", states, want)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	cfg := testConfig(t, "i-fail", "HELPER_MODE=fail")
	start := time.Now()
	inst, err := Start(context.Background(), cfg)
	if err == nil {
		inst.Stop(context.Background())
		t.Fatal("Start succeeded for a program that exits at once")
	}
	t.Logf("error after %v:\n%v", time.Since(start), err)
	for _, want := range []string{"i-fail", "exit status 1", "cannot open config.yaml", "helper: loading config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
}

func TestCrashRestarts(t *testing.T) {
	cfg := testConfig(t, "i-crash", "HELPER_MODE=echo", "CRASH_AFTER=1")
	inst := startT(t, cfg)
	addr := inst.Addr()
	pid := inst.Info().PID
	get(addr, "/") // served, then the process exits 3
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if i := inst.Info(); i.Restarts != 1 || i.State != Ready {
			return fmt.Errorf("restarts %d state %v, want 1 ready", i.Restarts, i.State)
		}
		return nil
	})
	info := inst.Info()
	if info.PID == pid || info.Addr != addr {
		t.Errorf("after restart pid %d (was %d) addr %s (was %s): want a new pid on the same addr", info.PID, pid, info.Addr, addr)
	}
	if !strings.Contains(info.LastExit, "exit status 3") {
		t.Errorf("LastExit = %q, want exit status 3", info.LastExit)
	}
	if _, err := get(inst.Addr(), "/env"); err != nil {
		t.Fatalf("restarted instance does not serve: %v", err)
	}
}

func TestRepeatedFailedStartsFail(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "started")
	cfg := testConfig(t, "i-crashloop", "HELPER_MODE=echo", "CRASH_AFTER=1", "FAIL_IF_EXISTS="+marker)
	inst := startT(t, cfg)
	get(inst.Addr(), "/")
	select {
	case <-inst.Wait():
	case <-time.After(10 * time.Second):
		t.Fatalf("instance did not fail: %+v", inst.Info())
	}
	info := inst.Info()
	if info.State != Failed || info.Restarts != maxFailedStarts {
		t.Errorf("state %v restarts %d, want failed after %d", info.State, info.Restarts, maxFailedStarts)
	}
	if !strings.Contains(info.LastExit, "refusing to start again") {
		t.Errorf("LastExit = %q, want the log line", info.LastExit)
	}
	if inst.Begin() {
		t.Error("Begin succeeded on a failed instance")
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Errorf("Stop of a failed instance: %v", err)
	}
}

func TestStopDrains(t *testing.T) {
	inst := startT(t, testConfig(t, "i-drain", "HELPER_MODE=echo"))
	pid := inst.Info().PID
	if !inst.Begin() {
		t.Fatal("Begin refused on a ready instance")
	}
	result := make(chan error, 1)
	go func() {
		defer inst.End()
		body, err := get(inst.Addr(), "/slow?ms=300")
		if err == nil && body != "slow done" {
			err = fmt.Errorf("body %q", body)
		}
		result <- err
	}()
	stopped := make(chan error, 1)
	go func() { stopped <- inst.Stop(context.Background()) }()
	checkFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := inst.State(); s != Draining {
			return fmt.Errorf("state %v, want draining", s)
		}
		return nil
	})
	if inst.Begin() {
		t.Fatal("Begin succeeded while draining")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("process gone while a request was in flight: %v", err)
	}
	if err := <-result; err != nil {
		t.Fatalf("in-flight request failed during drain: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if s := inst.State(); s != Stopped {
		t.Errorf("state %v, want stopped", s)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d still alive after Stop", pid)
	}
}

func TestStopDrainDeadline(t *testing.T) {
	inst := startT(t, testConfig(t, "i-deadline", "HELPER_MODE=echo"))
	inst.Begin() // never ended
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := inst.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 requests in flight") {
		t.Errorf("Stop = %v, want a deadline error naming 1 request", err)
	}
	if s := inst.State(); s != Stopped {
		t.Errorf("state %v, want stopped", s)
	}
}

// dead reports whether pid is gone or a zombie.
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

func TestStopKillsChildren(t *testing.T) {
	inst := startT(t, testConfig(t, "i-children", "HELPER_MODE=echo"))
	body, err := get(inst.Addr(), "/child")
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(body)
	if child == 0 || dead(child) {
		t.Fatalf("child %q not running", body)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, time.Millisecond, func() error {
		if !dead(child) {
			return fmt.Errorf("child %d of the instance survived Stop", child)
		}
		return nil
	})
}

// TestPdeathsig runs a node agent in a separate process, kills it with
// SIGKILL, and checks that its instance dies with it.
func TestPdeathsig(t *testing.T) {
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), "HELPER_MODE=agent")
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("agent said %q", line)
	}
	if dead(pid) {
		t.Fatalf("instance %d not running", pid)
	}
	agent.Process.Kill()
	agent.Wait()
	checkFor(t, 2*time.Second, time.Millisecond, func() error {
		if !dead(pid) {
			return fmt.Errorf("instance %d survived its node agent", pid)
		}
		return nil
	})
}

func TestSlowStartAndTimeout(t *testing.T) {
	cfg := testConfig(t, "i-slow", "HELPER_MODE=slow", "SLOW_MS=100")
	inst := startT(t, cfg)
	if c := inst.Info().ColdStart; c < 100*time.Millisecond {
		t.Errorf("cold start %v, want >= the helper's 100ms sleep", c)
	}

	cfg = testConfig(t, "i-timeout", "HELPER_MODE=slow", "SLOW_MS=5000")
	cfg.ReadyTimeout = 50 * time.Millisecond
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "not ready after 50ms") {
		t.Errorf("Start = %v, want a readiness timeout", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	cfg = testConfig(t, "i-cancel", "HELPER_MODE=slow", "SLOW_MS=5000")
	_, err = Start(ctx, cfg)
	if !errors.Is(err, ErrStopped) {
		t.Errorf("Start = %v, want ErrStopped", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	if _, err := cgroup.Detect(); err != nil {
		t.Skipf("memory limits cannot be tested on this machine: %v", err)
	}
	cfg := testConfig(t, "i-oom", "HELPER_MODE=echo")
	cfg.Memory = 32 << 20
	inst := startT(t, cfg)
	info := inst.Info()
	if !info.MemoryLimitEnforced {
		t.Fatal("MemoryLimitEnforced = false on a machine with a memory controller")
	}
	if _, err := get(inst.Addr(), "/alloc?mb=4"); err != nil {
		t.Fatal(err)
	}
	if n := inst.Info().MemoryBytes; n < 4<<20 {
		t.Errorf("MemoryBytes = %d after allocating 4 MiB", n)
	}
	if body, err := get(inst.Addr(), "/alloc?mb=128"); err == nil {
		t.Fatalf("allocated 128 MiB under a 32 MiB limit: %s", body)
	}
	checkFor(t, 5*time.Second, time.Millisecond, func() error {
		if i := inst.Info(); i.Restarts != 1 || i.State != Ready {
			return fmt.Errorf("restarts %d state %v, want 1 ready", i.Restarts, i.State)
		}
		return nil
	})
	if last := inst.Info().LastExit; !strings.Contains(last, "out of memory") {
		t.Errorf("LastExit = %q, want it to name the OOM kill", last)
	}
}

func TestUnenforcedWarnsOncePerNode(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	lg := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	cfg := Config{Node: "n-warn", Function: "resize", Memory: 64 << 20}
	err := errors.New("cgroup: memory limits cannot be enforced: test")
	warnUnenforced(lg, cfg, err)
	warnUnenforced(lg, cfg, err)
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "not enforced"); n != 1 {
		t.Errorf("%d warnings, want 1: %s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "memory limit 64Mi for function resize is not enforced: cgroup: memory limits cannot be enforced: test") {
		t.Errorf("warning reads %q", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestLogRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b.log")
	s, err := openLogSink(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 1<<20-1) + "\n")
	for i := 0; i < 17; i++ {
		s.Write(chunk)
	}
	s.Write([]byte("last line\n"))
	s.close()
	old, err := os.Stat(path + ".1")
	if err != nil || old.Size() != 16*int64(len(chunk)) {
		t.Fatalf("rotated file: %v %v", old, err)
	}
	cur, _ := os.ReadFile(path)
	if len(cur) != len(chunk)+len("last line\n") {
		t.Errorf("current log %d bytes", len(cur))
	}
	if tl := s.tail(1); len(tl) != 1 || tl[0] != "last line" {
		t.Errorf("tail %q", tl)
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[int64]string{64 << 20: "64Mi", 1 << 30: "1Gi", 1536: "1536B", 3 << 10: "3Ki"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %s, want %s", n, got, want)
		}
	}
}

// BenchmarkColdStart measures spawn→ready of the helper binary (a Go HTTP
// server), which is what Info.ColdStart reports, and Start's wall time. Set
// COLDSTART_BIN to measure another program that serves on $PORT instead.
func BenchmarkColdStart(b *testing.B) {
	cfg := testConfig(b, "i-bench", "HELPER_MODE=echo")
	if bin := os.Getenv("COLDSTART_BIN"); bin != "" {
		cfg.Command = bin
	}
	cfg.LogPath = ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	var colds []time.Duration
	for b.Loop() {
		inst, err := Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		colds = append(colds, inst.Info().ColdStart)
		b.StopTimer()
		inst.Stop(context.Background())
		b.StartTimer()
	}
	sort.Slice(colds, func(i, j int) bool { return colds[i] < colds[j] })
	b.ReportMetric(float64(colds[len(colds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(colds[len(colds)*99/100].Microseconds())/1000, "p99-ms")
}

func TestReadyAnnouncedOnThePipe(t *testing.T) {
	cfg := testConfig(t, "announce", "HELPER_MODE=announce")
	cfg.ReadyTimeout = 10 * time.Second
	start := time.Now()
	inst := startT(t, cfg)
	if inst.State() != Ready {
		t.Fatalf("state %v, want ready", inst.State())
	}
	// Nothing listens: only the announcement can have made it ready.
	if c, err := net.Dial("tcp", inst.Addr()); err == nil {
		c.Close()
		t.Fatal("the announcing helper listens; the test proves nothing")
	}
	t.Logf("ready by announcement in %v", time.Since(start))

	// A line other than "ready" is no announcement: the start times out.
	cfg = testConfig(t, "mumble", "HELPER_MODE=mumble")
	cfg.ReadyTimeout = 300 * time.Millisecond
	if inst, err := Start(context.Background(), cfg); err == nil {
		inst.Stop(context.Background())
		t.Fatal("a process that said hello was taken as ready")
	}
}
