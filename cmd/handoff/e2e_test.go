package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/spec"
)

// These tests run the real binary: `handoff up` with node agents as separate
// processes, functions as processes, HTTP on loopback.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "handoff-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "handoff")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building handoff: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func startPlatform(t *testing.T, dir string, args ...string) *platform.Platform {
	t.Helper()
	p, err := platform.Start(context.Background(), platform.Options{Binary: binary, Dir: dir, Nodes: 2, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// testfnSpec deploys internal/testfn under name with the given tweaks.
func testfnSpec(t *testing.T, name string, tweak func(*spec.Function)) spec.Function {
	t.Helper()
	wd, _ := os.Getwd()
	f := spec.Function{Name: name, Run: spec.Run{Go: filepath.Join(wd, "..", "..", "internal", "testfn")}}
	f.Scale.Max = 4
	f.Timeout = spec.Duration(30 * time.Second)
	if tweak != nil {
		tweak(&f)
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

func deploy(t *testing.T, c *api.Client, f spec.Function) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.Deploy(ctx, f); err != nil {
		t.Fatalf("deploy %s: %v", f.Name, err)
	}
}

func invoke(t *testing.T, c *api.Client, name, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.Invoke(ctx, name, []byte(body))
	if err != nil {
		t.Fatalf("invoke %s %q: %v", name, body, err)
	}
	return string(out)
}

// checkFor polls fn until it returns nil or total passes.
func checkFor(t *testing.T, total time.Duration, fn func() error) {
	t.Helper()
	handofftest.CheckFor(t, total, 20*time.Millisecond, fn)
}

func TestTwoNodeAgentsServeFunctionToFunctionCalls(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	st, err := p.Client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 || st.Nodes[0].Addr == st.Nodes[1].Addr {
		t.Fatalf("want 2 node agents at distinct addresses, got %+v", st.Nodes)
	}
	for _, n := range st.Nodes {
		if !n.Up || n.RSS == 0 {
			t.Fatalf("node %s not up or reports no memory: %+v", n.ID, n)
		}
	}
	// min 1 per function and 2 functions: the scheduler spreads instances
	// over both agents, so the call crosses from one node agent to another.
	deploy(t, p.Client, testfnSpec(t, "caller", func(f *spec.Function) { f.Scale.Min = 1 }))
	deploy(t, p.Client, testfnSpec(t, "callee", func(f *spec.Function) { f.Scale.Min = 1 }))
	if got := invoke(t, p.Client, "caller", "call callee echo across nodes"); got != "echo across nodes" {
		t.Fatalf("caller → callee returned %q", got)
	}
	// The request id given to the outer call reaches the inner one.
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/fn/caller", strings.NewReader("call callee reqid"))
	req.Header.Set("X-Handoff-Request-Id", "trace-4711")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(inner) != "trace-4711" || resp.Header.Get("X-Handoff-Request-Id") != "trace-4711" {
		t.Fatalf("request id: inner call saw %q, response header %q; want trace-4711 on both", inner, resp.Header.Get("X-Handoff-Request-Id"))
	}
	if got := invoke(t, p.Client, "caller", "env HANDOFF_FUNCTION"); got != "caller" {
		t.Fatalf("HANDOFF_FUNCTION = %q", got)
	}
	checkFor(t, 5*time.Second, func() error {
		st, err := p.Client.Status(context.Background())
		if err != nil {
			return err
		}
		nodes := map[string]bool{}
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				nodes[n.ID] = true
				if in.PID == 0 || in.State != "ready" {
					return fmt.Errorf("instance %+v", in)
				}
			}
		}
		if len(nodes) != 2 {
			return fmt.Errorf("instances on %d node agents; want both used", len(nodes))
		}
		return nil
	})
}

func TestScaleFromZeroBuffersEveryRequest(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, testfnSpec(t, "cold", func(f *spec.Function) { f.Concurrency = 2 }))
	fn, err := p.Client.Function(context.Background(), "cold")
	if err != nil {
		t.Fatal(err)
	}
	if fn.Ready != 0 {
		t.Fatalf("min scale 0 but %d instances ready before any request", fn.Ready)
	}
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("sleep 50ms request %d", i)
			out, err := p.Client.Invoke(context.Background(), "cold", []byte(body))
			if err == nil && string(out) != body {
				err = fmt.Errorf("request %d got %q", i, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestOversizedInlineBodyGets413(t *testing.T) {
	p := startPlatform(t, t.TempDir(), "--inline-max", "1Mi")
	deploy(t, p.Client, testfnSpec(t, "echo", nil))
	big := append([]byte("echo "), bytes.Repeat([]byte("x"), 2<<20)...)
	// A synchronous upload of known length over the limit goes by
	// reference through the receiver's node agent.
	if out, err := p.Client.Invoke(context.Background(), "echo", big); err != nil || !bytes.Equal(out, big) {
		t.Fatalf("2 MiB upload over a 1 MiB inline limit: %d bytes back, %v; want it passed by reference", len(out), err)
	}
	// An async body must fit inline (the durable queue keeps bodies).
	_, err := p.Client.InvokeAsync(context.Background(), "echo", big)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("async over the limit: err = %v; want a 413", err)
	}
	for _, want := range []string{"inline limit", "1 MiB", "--inline-max"} {
		if !strings.Contains(se.Msg, want) {
			t.Errorf("413 message %q does not mention %q", se.Msg, want)
		}
	}
	// A chunked body (no Content-Length) over the limit is refused too.
	rc, err := p.Client.InvokeStream(context.Background(), "echo", bytes.NewReader(bytes.Repeat([]byte("x"), 2<<20)), -1)
	if err == nil {
		rc.Close()
		t.Fatal("a 2 MiB chunked body passed a 1 MiB inline limit")
	}
	if got := invoke(t, p.Client, "echo", "echo small"); got != "echo small" {
		t.Fatalf("small body after a refusal: %q", got)
	}
}

func TestCrashedInstanceIsRestarted(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, testfnSpec(t, "fragile", func(f *spec.Function) { f.Scale.Min, f.Scale.Max = 1, 1 }))
	invoke(t, p.Client, "fragile", "echo warm")
	_, err := p.Client.Invoke(context.Background(), "fragile", []byte("crash"))
	if err == nil {
		t.Fatal("a crashing request succeeded")
	}
	checkFor(t, 15*time.Second, func() error {
		out, err := p.Client.Invoke(context.Background(), "fragile", []byte("echo again"))
		if err != nil {
			return err
		}
		if string(out) != "echo again" {
			return fmt.Errorf("got %q", out)
		}
		return nil
	})
	checkFor(t, 5*time.Second, func() error {
		st, _ := p.Client.Status(context.Background())
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				if in.Function == "fragile" && in.Restarts >= 1 {
					return nil
				}
			}
		}
		return errors.New("no fragile instance reports a restart")
	})
}

func TestStartFailureIsReportedNotHung(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, testfnSpec(t, "broken", func(f *spec.Function) { f.Env = map[string]string{"TESTFN_FAIL_START": "1"} }))
	start := time.Now()
	_, err := p.Client.Invoke(context.Background(), "broken", []byte("echo"))
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("err = %v; want 503", err)
	}
	if !strings.Contains(se.Msg, "TESTFN_FAIL_START") {
		t.Errorf("error %q does not show the instance's own message", se.Msg)
	}
	if time.Since(start) > 25*time.Second {
		t.Errorf("the failure took %s to report", time.Since(start))
	}
}

func TestAsyncInvocationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	// The function cannot start, so the invocations stay queued and retried;
	// then the platform is killed as in a crash.
	f := testfnSpec(t, "later", func(f *spec.Function) { f.Env = map[string]string{"TESTFN_FAIL_START": "1"} })
	deploy(t, p.Client, f)
	var ids []string
	for i := range 5 {
		acc, err := p.Client.InvokeAsync(context.Background(), "later", []byte(fmt.Sprintf("echo job %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.ID)
	}
	p.Kill()

	p = startPlatform(t, dir)
	if _, err := p.Client.Function(context.Background(), "later"); err != nil {
		t.Fatalf("the deployed function did not survive the restart: %v", err)
	}
	delete(f.Env, "TESTFN_FAIL_START")
	deploy(t, p.Client, f) // the fixed version
	for i, id := range ids {
		checkFor(t, 60*time.Second, func() error {
			inv, err := p.Client.Invocation(context.Background(), id)
			if err != nil {
				return err
			}
			if inv.Status != "succeeded" {
				return fmt.Errorf("invocation %s is %s (%s)", id, inv.Status, inv.Error)
			}
			if want := fmt.Sprintf("echo job %d", i); inv.Output == nil || *inv.Output != want {
				return fmt.Errorf("invocation %s output %v; want %q", id, inv.Output, want)
			}
			return nil
		})
	}
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, testfnSpec(t, "slow", func(f *spec.Function) { f.Scale.Min = 1 }))
	invoke(t, p.Client, "slow", "echo warm")
	done := make(chan error, 1)
	go func() {
		out, err := p.Client.Invoke(context.Background(), "slow", []byte("sleep 1s drained"))
		if err == nil && string(out) != "sleep 1s drained" {
			err = fmt.Errorf("got %q", out)
		}
		done <- err
	}()
	checkFor(t, 5*time.Second, func() error {
		fn, err := p.Client.Function(context.Background(), "slow")
		if err != nil || fn.InFlight == 0 {
			return fmt.Errorf("request not in flight yet (%v)", err)
		}
		return nil
	})
	if err := p.Stop(); err != nil {
		t.Fatalf("handoff up exited with %v after SIGTERM", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight request lost on shutdown: %v", err)
	}
}

func TestCLIReportsBadSpecClearly(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: Bad_Name\nrun:\n  command: /bin/true\nconcurency: 3\n"), 0o600)
	cmd := exec.Command(binary, "deploy", "-f", bad, "--gateway", "http://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("deploying a bad spec succeeded")
	}
	for _, want := range []string{"name", "concurency", "concurrency"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not mention %q", out, want)
		}
	}
}

func TestCLIRoundTrip(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	env := append(os.Environ(), "HANDOFF_GATEWAY="+p.URL, "HANDOFF_TOKEN="+p.Token)
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("handoff %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	wd, _ := os.Getwd()
	specFile := filepath.Join(wd, "..", "..", "examples", "echo", "echo.yaml")
	if out := run("", "deploy", "-f", specFile); !strings.Contains(out, "deployed echo") {
		t.Fatalf("deploy: %s", out)
	}
	if out := run("through stdin", "invoke", "echo"); out != "through stdin" {
		t.Fatalf("invoke via stdin: %q", out)
	}
	if out := run("", "invoke", "echo", "-d", "inline data"); out != "inline data" {
		t.Fatalf("invoke -d: %q", out)
	}
	if out := run("", "ls"); !strings.Contains(out, "echo") {
		t.Fatalf("ls: %s", out)
	}
	if out := run("", "status"); !strings.Contains(out, "n1") || !strings.Contains(out, "n2") {
		t.Fatalf("status: %s", out)
	}
	id := strings.TrimSpace(run("", "invoke", "echo", "-d", "queued", "--async"))
	checkFor(t, 10*time.Second, func() error {
		out := run("", "result", id)
		if !strings.Contains(out, "succeeded") || !strings.HasSuffix(out, "queued") {
			return fmt.Errorf("result: %q", out)
		}
		return nil
	})
	run("", "logs", "echo")
	if out := run("", "rm", "echo"); !strings.Contains(out, "removed echo") {
		t.Fatalf("rm: %s", out)
	}
	cmd := exec.Command(binary, "invoke", "echo", "-d", "x")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not deployed") {
		t.Fatalf("invoking a removed function: %v %s", err, out)
	}
	// Without the admin token the management API refuses, and says why.
	cmd = exec.Command(binary, "deploy", "-f", specFile)
	cmd.Env = append(os.Environ(), "HANDOFF_GATEWAY="+p.URL, "HANDOFF_TOKEN=wrong", "HOME="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "admin token") {
		t.Fatalf("deploy with a wrong admin token: %v %s", err, out)
	}
}

func TestAutoscalerScalesWithLoadAndToZero(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	deploy(t, p.Client, testfnSpec(t, "elastic", func(f *spec.Function) {
		f.Concurrency, f.Scale.Max, f.Scale.Target = 2, 4, 1
		f.Scale.StableWindow = spec.Duration(4 * time.Second)
		f.Scale.PanicWindow = spec.Duration(time.Second)
		f.Scale.ScaleToZeroGrace = spec.Duration(2 * time.Second)
	}))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := p.Client.Invoke(ctx, "elastic", []byte("sleep 100ms")); err != nil && ctx.Err() == nil {
					failures.Add(1)
				}
			}
		}()
	}
	peak := 0
	checkFor(t, 20*time.Second, func() error {
		fn, err := p.Client.Function(context.Background(), "elastic")
		if err != nil {
			return err
		}
		peak = max(peak, fn.Ready)
		if fn.Ready < 3 {
			return fmt.Errorf("8 clients at target 1: %d instances ready (desired %d: %s)", fn.Ready, fn.Desired, fn.Reason)
		}
		return nil
	})
	stop()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d invocations failed while scaling up", n)
	}
	checkFor(t, 30*time.Second, func() error {
		fn, err := p.Client.Function(context.Background(), "elastic")
		if err != nil {
			return err
		}
		if fn.Ready+fn.Starting+fn.Draining > 0 {
			return fmt.Errorf("idle function still has %d ready, %d draining (%s)", fn.Ready, fn.Draining, fn.Reason)
		}
		return nil
	})
	t.Logf("peak %d instances; scaled back to zero", peak)
}

func TestInstancesSeeClientHeadersButNeverTheClusterToken(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "headers", nil))
	token, err := os.ReadFile(filepath.Join(dir, "cluster.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/fn/headers", strings.NewReader("x"))
	req.Header.Set("X-Testfn-Headers", "1")
	req.Header.Set("Authorization", "Bearer the-users-own")
	req.Header.Set("X-Handoff-Caller", "someone-else") // a client cannot claim to be a function
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	seen := string(b)
	if !strings.Contains(seen, "Authorization: Bearer the-users-own") {
		t.Errorf("the client's Authorization did not reach the function:\n%s", seen)
	}
	if strings.Contains(seen, strings.TrimSpace(string(token))) {
		t.Errorf("the cluster token reached an instance:\n%s", seen)
	}
	if strings.Contains(seen, "someone-else") {
		t.Errorf("a client's X-Handoff-Caller reached the function:\n%s", seen)
	}
}

func TestLostNodeAgentIsRestartedAndItsInstancesReplaced(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "sturdy", func(f *spec.Function) { f.Scale.Min, f.Scale.Max = 2, 2 }))
	invoke(t, p.Client, "sturdy", "echo warm")
	checkFor(t, 10*time.Second, func() error {
		fn, err := p.Client.Function(context.Background(), "sturdy")
		if err != nil || fn.Ready != 2 {
			return fmt.Errorf("ready %d (%v)", fn.Ready, err)
		}
		return nil
	})
	lost := map[string]bool{} // sturdy's instances on n1, which die with it
	checkFor(t, 5*time.Second, func() error {
		st, err := p.Client.Status(context.Background())
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				if n.ID == "n1" && in.Function == "sturdy" {
					lost[in.ID] = true
				}
			}
		}
		if len(lost) == 0 {
			return errors.New("no instance of sturdy on n1 yet")
		}
		return nil
	})
	out, err := exec.Command("pgrep", "-f", "node --id n1 --dir "+filepath.Join(dir, "nodes", "n1")).Output()
	if err != nil {
		t.Fatalf("finding node agent n1: %v", err)
	}
	var pid int
	fmt.Sscan(string(out), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The launcher starts a new agent (a new boot); the control plane drops
	// the old agent's instances and places new ones; calls work again.
	checkFor(t, 30*time.Second, func() error {
		out, err := exec.Command("pgrep", "-f", "node --id n1 --dir "+filepath.Join(dir, "nodes", "n1")).Output()
		if err != nil || strings.TrimSpace(string(out)) == fmt.Sprint(pid) {
			return fmt.Errorf("node agent n1 not restarted yet (pgrep %q, %v)", out, err)
		}
		return nil
	})
	checkFor(t, 30*time.Second, func() error {
		st, err := p.Client.Status(context.Background())
		if err != nil {
			return err
		}
		live := 0
		for _, n := range st.Nodes {
			if !n.Up {
				return fmt.Errorf("node agent %s is down", n.ID)
			}
			for _, in := range n.Instances {
				if lost[in.ID] {
					return fmt.Errorf("instance %s of the killed agent is still reported", in.ID)
				}
				if in.Function == "sturdy" && in.State == "ready" {
					live++
				}
			}
		}
		if live != 2 {
			return fmt.Errorf("node agents report %d live instances of sturdy, want 2", live)
		}
		fn, err := p.Client.Function(context.Background(), "sturdy")
		if err != nil {
			return err
		}
		if fn.Ready != 2 {
			return fmt.Errorf("%d instances ready, want 2", fn.Ready)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = p.Client.Invoke(ctx, "sturdy", []byte("echo after"))
		return err
	})
}
