package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/spec"
)

const testToken = "test-cluster-token"

// bigRounds is how many invocations with a body beyond httpx.FastMax a test
// sends through a proxy.
const bigRounds = 100

// testfnBin is ./internal/testfn, built once by TestMain.
var testfnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "node-testfn-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "node test:", err)
		os.Exit(1)
	}
	testfnBin = filepath.Join(dir, "testfn")
	build := exec.Command("go", "build", "-o", testfnBin, "../internal/testfn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "node test: building internal/testfn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeControl plays the control plane: it records heartbeats (answering 204)
// and serves POST /fn/{name} with a fixed answer, recording what it got.
type fakeControl struct {
	srv *httptest.Server

	mu         sync.Mutex // guards all following fields
	heartbeats []Heartbeat
	hbAuth     []string
	calls      []controlCall
}

type controlCall struct {
	name, auth, caller, body string
}

func newFakeControl(t *testing.T) *fakeControl {
	fc := &fakeControl{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nodes/{id}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var hb Heartbeat
		if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fc.mu.Lock()
		fc.heartbeats = append(fc.heartbeats, hb)
		fc.hbAuth = append(fc.hbAuth, r.Header.Get(httpx.HeaderToken))
		fc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /fn/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		name := r.PathValue("name")
		fc.mu.Lock()
		fc.calls = append(fc.calls, controlCall{
			name: name, auth: r.Header.Get(httpx.HeaderToken),
			caller: r.Header.Get(httpx.HeaderCaller), body: string(b),
		})
		fc.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "control answers %s: %s", name, b)
	})
	fc.srv = httptest.NewServer(mux)
	t.Cleanup(fc.srv.Close)
	return fc
}

func (fc *fakeControl) lastHeartbeat() (Heartbeat, string, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.heartbeats) == 0 {
		return Heartbeat{}, "", false
	}
	n := len(fc.heartbeats) - 1
	return fc.heartbeats[n], fc.hbAuth[n], true
}

func (fc *fakeControl) callsTo(name string) []controlCall {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []controlCall
	for _, c := range fc.calls {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

// harness is one agent running in-process against a fakeControl.
type harness struct {
	t      *testing.T
	agent  *Agent
	ctl    *fakeControl
	base   string // http://ADDR of the node API
	client *http.Client
	cancel context.CancelFunc
	done   chan error // Run's result
}

// logWriter sends the agent's log lines to t.Log until the test ends.
type logWriter struct {
	mu   sync.Mutex // guards all following fields
	t    *testing.T
	over bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.over {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) stop() {
	w.mu.Lock()
	w.over = true
	w.mu.Unlock()
}

// startAgent runs a node agent until the test ends (or h.shutdown).
func startAgent(t *testing.T) *harness {
	return startAgentWith(t, newFakeControl(t), "")
}

func startAgentWith(t *testing.T, ctl *fakeControl, controlURL string) *harness {
	return startAgentTuned(t, ctl, controlURL, nil)
}

// startAgentTuned is startAgentWith with a say in the agent's Config.
func startAgentTuned(t *testing.T, ctl *fakeControl, controlURL string, tune func(*Config)) *harness {
	t.Helper()
	// A short directory: the socket path must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if controlURL == "" {
		controlURL = ctl.srv.URL
	}
	lw := &logWriter{t: t}
	cfg := Config{
		ID: "n1", Listen: "127.0.0.1:0", Dir: dir, ControlURL: controlURL, Token: testToken,
		Logger:    slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Heartbeat: 50 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, agent: a, ctl: ctl, base: "http://" + a.Addr(),
		client: &http.Client{Timeout: 10 * time.Second},
		cancel: cancel, done: make(chan error, 1),
	}
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		if err := h.shutdown(); err != nil {
			t.Errorf("Run: %v", err)
		}
		lw.stop()
	})
	return h
}

// shutdown cancels Run and waits for it to return; it may be called more
// than once.
func (h *harness) shutdown() error {
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return err
	case <-time.After(15 * time.Second):
		return errors.New("Run did not return within 15s of its context ending")
	}
}

// do sends a request to the node API with token (none when empty) and
// returns the status and body.
func (h *harness) do(method, path, token string, body []byte, hdr ...string) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(httpx.HeaderToken, token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// startRequest is the body of PUT /v1/instances/{id} for a testfn instance.
func startRequest(t *testing.T, fn string, env map[string]string) []byte {
	t.Helper()
	f := spec.Function{Name: fn, Run: spec.Run{Command: testfnBin}, Env: env}
	f.ApplyDefaults()
	b, err := json.Marshal(StartRequest{Function: f})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start starts a testfn instance and returns what the agent answered.
func (h *harness) start(id, fn string, env map[string]string) api.Instance {
	h.t.Helper()
	status, b := h.do("PUT", "/v1/instances/"+id, testToken, startRequest(h.t, fn, env))
	if status != http.StatusOK {
		h.t.Fatalf("PUT /v1/instances/%s: status %d, want 200; body %s", id, status, b)
	}
	var inst api.Instance
	if err := json.Unmarshal(b, &inst); err != nil {
		h.t.Fatalf("PUT /v1/instances/%s: answer is not an api.Instance: %v; body %s", id, err, b)
	}
	return inst
}

// invoke proxies one invocation of fn to instance id, as the gateway does.
func (h *harness) invoke(id, fn, body string) (int, string) {
	h.t.Helper()
	status, b := h.do("POST", "/v1/invoke/"+id, testToken, []byte(body), httpx.HeaderFunction, fn)
	return status, string(b)
}

// list returns GET /v1/instances.
func (h *harness) list() []api.Instance {
	h.t.Helper()
	status, b := h.do("GET", "/v1/instances", testToken, nil)
	if status != http.StatusOK {
		h.t.Fatalf("GET /v1/instances: status %d, want 200; body %s", status, b)
	}
	var out []api.Instance
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatalf("GET /v1/instances: %v; body %s", err, b)
	}
	return out
}

// wantError checks that an answer is an httpx.Error with the given status
// and code, and returns its message.
func wantError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode string) string {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s: status %d, want %d; body %s", what, status, wantStatus, body)
	}
	var e httpx.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: body is not a JSON error: %v; body %q", what, err, body)
		return ""
	}
	if e.Code != wantCode {
		t.Errorf("%s: code %q, want %q (error %q)", what, e.Code, wantCode, e.Error)
	}
	if e.Error == "" {
		t.Errorf("%s: the JSON error has no message", what)
	}
	return e.Error
}

// waitFor polls cond every 10ms until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	handofftest.CheckFor(t, timeout, 10*time.Millisecond, cond)
}

// processGone reports whether no process has pid (signal 0 fails with
// ESRCH). A supervised instance is reaped by its supervisor, so a stopped one
// does not linger as a zombie.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		if !processGone(pid) {
			return fmt.Errorf("process %d still exists", pid)
		}
		return nil
	})
}

// metricValue returns the value of the sample of name whose labels include
// all of labels (`k="v"` strings) on the agent's /metrics page.
func (h *harness) metricValue(name string, labels ...string) (float64, bool) {
	h.t.Helper()
	status, b := h.do("GET", "/metrics", "", nil)
	if status != http.StatusOK {
		h.t.Fatalf("GET /metrics: status %d", status)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			h.t.Fatalf("metrics line %q: %v", line, err)
		}
		return v, true
	}
	return 0, false
}

func TestAPINeedsClusterToken(t *testing.T) {
	h := startAgent(t)
	calls := []struct{ method, path string }{
		{"PUT", "/v1/instances/i1"},
		{"DELETE", "/v1/instances/i1"},
		{"GET", "/v1/instances"},
		{"POST", "/v1/invoke/i1"},
		{"GET", "/v1/logs/echo"},
		{"GET", "/v1/nothing-here"},
	}
	auths := map[string]string{
		"no header":      "",
		"wrong token":    "not-the-token",
		"token prefix":   testToken[:len(testToken)-1],
		"token extended": testToken + "x",
		"with a scheme":  "Bearer " + testToken,
		"upper-cased":    strings.ToUpper(testToken),
	}
	body := startRequest(t, "echo", nil)
	for _, c := range calls {
		for what, auth := range auths {
			req, _ := http.NewRequest(c.method, h.base+c.path, bytes.NewReader(body))
			if auth != "" {
				req.Header.Set(httpx.HeaderToken, auth)
			}
			// The token travels in its own header, never in Authorization.
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, c.method+" "+c.path+" with "+what, resp.StatusCode, b, http.StatusUnauthorized, "unauthenticated")
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s with %s: Content-Type %q, want application/json", c.method, c.path, what, ct)
			}
		}
	}
	// Nothing was started by the rejected PUTs.
	if got := h.list(); len(got) != 0 {
		t.Errorf("instances after rejected starts: %+v, want none", got)
	}

	if status, b := h.do("GET", "/healthz", "", nil); status != http.StatusOK {
		t.Errorf("GET /healthz without token: status %d, want 200; body %s", status, b)
	}
	status, b := h.do("GET", "/metrics", "", nil)
	if status != http.StatusOK {
		t.Errorf("GET /metrics without token: status %d, want 200; body %.200s", status, b)
	}
	if !bytes.Contains(b, []byte("go_goroutines")) {
		t.Errorf("GET /metrics: no go_goroutines in the page:\n%.500s", b)
	}
}

func TestStartListHeartbeat(t *testing.T) {
	h := startAgent(t)
	before := time.Now()
	inst := h.start("i1", "echo", nil)
	if inst.ID != "i1" || inst.Function != "echo" {
		t.Errorf("started instance: ID %q Function %q, want i1 echo", inst.ID, inst.Function)
	}
	if inst.State != "ready" {
		t.Errorf("started instance: State %q, want ready", inst.State)
	}
	if inst.PID <= 0 || processGone(inst.PID) {
		t.Errorf("started instance: PID %d is not a live process", inst.PID)
	}
	host, port, err := net.SplitHostPort(inst.Addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("started instance: Addr %q, want 127.0.0.1:PORT", inst.Addr)
	}
	if c, err := net.DialTimeout("tcp", inst.Addr, time.Second); err != nil {
		t.Errorf("instance address %s does not accept connections: %v", inst.Addr, err)
	} else {
		c.Close()
	}
	if inst.StartedAt.Before(before.Add(-time.Second)) || inst.ColdStart <= 0 {
		t.Errorf("started instance: StartedAt %v ColdStart %v, want a recent start and a positive cold start", inst.StartedAt, inst.ColdStart)
	}

	list := h.list()
	if len(list) != 1 || list[0].ID != "i1" || list[0].PID != inst.PID || list[0].State != "ready" || list[0].Addr != inst.Addr {
		t.Errorf("GET /v1/instances = %+v, want just i1 (pid %d, ready, %s)", list, inst.PID, inst.Addr)
	}

	status, b := h.do("PUT", "/v1/instances/i1", testToken, startRequest(t, "echo", nil))
	wantError(t, "PUT of a running instance id", status, b, http.StatusConflict, "instance_exists")

	status, b = h.do("PUT", "/v1/instances/i2", testToken, []byte("{not json"))
	wantError(t, "PUT with a malformed body", status, b, http.StatusBadRequest, "bad_request")

	waitFor(t, 5*time.Second, func() error {
		hb, auth, ok := h.ctl.lastHeartbeat()
		if !ok {
			return errors.New("no heartbeat reached the control plane")
		}
		if auth != testToken {
			return fmt.Errorf("heartbeat Authorization %q, want the cluster token", auth)
		}
		if hb.ID != "n1" || hb.Addr != h.agent.Addr() || hb.Boot == "" {
			return fmt.Errorf("heartbeat %+v: want id n1, addr %s and a boot id", hb, h.agent.Addr())
		}
		if len(hb.Instances) != 1 || hb.Instances[0].ID != "i1" || hb.Instances[0].PID != inst.PID || hb.Instances[0].State != "ready" {
			return fmt.Errorf("last heartbeat lists %+v, want i1 ready with pid %d", hb.Instances, inst.PID)
		}
		if hb.RSS <= 0 {
			return fmt.Errorf("heartbeat RSS %d, want the agent's resident memory", hb.RSS)
		}
		return nil
	})
}

func TestInvokeProxiesToInstance(t *testing.T) {
	// The agent's own environment must not leak into the instance.
	t.Setenv("NODE_TEST_SECRET", "leaked")
	h := startAgent(t)
	h.start("i1", "echo", map[string]string{"GREETING": "hello from the spec"})

	if status, out := h.invoke("i1", "echo", "echo some input"); status != http.StatusOK || out != "echo some input" {
		t.Errorf("invoke echo: %d %q, want 200 %q", status, out, "echo some input")
	}
	// The instance runs with the spec's env and the contract variables.
	for name, want := range map[string]string{"GREETING": "hello from the spec", "HANDOFF_INSTANCE": "i1", "HANDOFF_FUNCTION": "echo", "HANDOFF_NODE": "n1"} {
		if status, out := h.invoke("i1", "echo", "env "+name); status != http.StatusOK || out != want {
			t.Errorf("invoke env %s: %d %q, want 200 %q", name, status, out, want)
		}
	}
	// Each instance has a local API socket of its own.
	if status, out := h.invoke("i1", "echo", "env HANDOFF_API"); status != http.StatusOK || filepath.Dir(out) != filepath.Join(filepath.Dir(h.agent.SocketPath()), "api") {
		t.Errorf("invoke env HANDOFF_API: %d %q, want a socket in the agent's api/ directory", status, out)
	}
	if status, out := h.invoke("i1", "echo", "env NODE_TEST_SECRET"); status != http.StatusOK || out != "" {
		t.Errorf("invoke env NODE_TEST_SECRET: %d %q, want 200 and empty", status, out)
	}
	// The instance's error status is passed through.
	if status, out := h.invoke("i1", "echo", "fail"); status != http.StatusInternalServerError {
		t.Errorf("invoke fail: status %d, want 500; body %q", status, out)
	}
	// Larger bodies go through whole (beyond the fast path's limit). Many of
	// them, because an answer cut off midway (the request body closed under
	// the forwarding Transport) showed in about one in a few hundred.
	big := "echo " + strings.Repeat("x", 200<<10)
	for i := range bigRounds {
		if status, out := h.invoke("i1", "echo", big); status != http.StatusOK || out != big {
			t.Fatalf("invoke echo with %d bytes, round %d: status %d, %d bytes back (equal: %v)", len(big), i, status, len(out), out == big)
		}
	}

	if v, ok := h.metricValue("handoff_node_invocations_total", `function="echo"`, `code="200"`, `node="n1"`); !ok || v != 7+bigRounds {
		t.Errorf("handoff_node_invocations_total{function=echo,code=200} = %v (found %v), want %d", v, ok, 7+bigRounds)
	}
	if v, ok := h.metricValue("handoff_node_invocations_total", `function="echo"`, `code="500"`); !ok || v != 1 {
		t.Errorf("handoff_node_invocations_total{function=echo,code=500} = %v (found %v), want 1", v, ok)
	}
	if v, ok := h.metricValue("handoff_node_cold_start_seconds_count", `function="echo"`); !ok || v != 1 {
		t.Errorf("handoff_node_cold_start_seconds_count{function=echo} = %v (found %v), want 1", v, ok)
	}

	status, b := h.do("POST", "/v1/invoke/nope", testToken, []byte("echo x"), httpx.HeaderFunction, "echo")
	msg := wantError(t, "invoke of an unknown instance", status, b, http.StatusServiceUnavailable, "instance_gone")
	if !strings.Contains(msg, "nope") {
		t.Errorf("instance_gone message %q does not name the instance", msg)
	}
}

func TestStopDrainsInFlight(t *testing.T) {
	h := startAgent(t)
	inst := h.start("i1", "sleepy", nil)

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	const in = "sleep 500ms and then the rest of the input"
	go func() {
		// Not h.invoke: t.Fatal must not run outside the test goroutine.
		req, _ := http.NewRequest("POST", h.base+"/v1/invoke/i1", strings.NewReader(in))
		req.Header.Set(httpx.HeaderToken, testToken)
		req.Header.Set(httpx.HeaderFunction, "sleepy")
		resp, err := h.client.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	sup := h.agent.instance("i1")
	if sup == nil {
		t.Fatal("the agent does not hold instance i1")
	}
	waitFor(t, 5*time.Second, func() error {
		if n := sup.InFlight(); n != 1 {
			return fmt.Errorf("instance i1 has %d requests in flight, want 1", n)
		}
		return nil
	})

	status, b := h.do("DELETE", "/v1/instances/i1", testToken, nil)
	if status != http.StatusNoContent {
		t.Fatalf("DELETE /v1/instances/i1: status %d, want 204; body %s", status, b)
	}
	// The drain waited for the invocation: it is over (its answer written)
	// by the time DELETE returns.
	if n := sup.InFlight(); n != 0 {
		t.Errorf("after DELETE: %d requests in flight, want 0", n)
	}
	select {
	case r := <-res:
		if r.err != nil || r.status != http.StatusOK || r.body != in {
			t.Errorf("invocation during the drain: %d %q %v, want 200 and the whole input back", r.status, r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the invocation did not finish within 5s of the DELETE")
	}
	waitGone(t, inst.PID)

	if got := h.list(); len(got) != 0 {
		t.Errorf("GET /v1/instances after DELETE = %+v, want none", got)
	}
	status, b = h.do("POST", "/v1/invoke/i1", testToken, []byte("echo late"))
	wantError(t, "invoke after DELETE", status, b, http.StatusServiceUnavailable, "instance_gone")
	status, b = h.do("DELETE", "/v1/instances/i1", testToken, nil)
	wantError(t, "second DELETE", status, b, http.StatusNotFound, "no_instance")

	// The id is free again.
	again := h.start("i1", "sleepy", nil)
	if again.PID == inst.PID || again.State != "ready" {
		t.Errorf("restarted i1: %+v, want a new ready process", again)
	}
}

// localClient talks HTTP over the agent's Unix socket, as an instance does.
func localClient(h *harness) *http.Client {
	tr := httpx.UnixTransport(h.agent.SocketPath())
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestLocalAPIForwardsToGateway(t *testing.T) {
	h := startAgent(t)
	lc := localClient(h)

	resp, err := lc.Get("http://handoff/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over %s: %v", h.agent.SocketPath(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("local GET /healthz: status %d, want 200", resp.StatusCode)
	}

	// The node-wide socket is anonymous: a caller cannot claim a function.
	req, _ := http.NewRequest("POST", "http://handoff/fn/other", strings.NewReader("ping"))
	req.Header.Set(httpx.HeaderFunction, "caller-fn")
	req.Header.Set(httpx.HeaderCaller, "caller-fn")
	resp, err = lc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "control answers other: ping" {
		t.Errorf("local POST /fn/other: %d %q, want 200 %q", resp.StatusCode, b, "control answers other: ping")
	}
	calls := h.ctl.callsTo("other")
	if len(calls) != 1 {
		t.Fatalf("the control plane got %d calls to other, want 1", len(calls))
	}
	if c := calls[0]; c.auth != testToken || c.caller != "" || c.body != "ping" {
		t.Errorf("the control plane got %+v, want the cluster token, no caller and body ping", c)
	}

	// Bodies beyond the fast path's limit come back whole.
	big := strings.Repeat("y", 200<<10)
	for i := range bigRounds {
		resp, err := lc.Post("http://handoff/fn/big", "application/octet-stream", strings.NewReader(big))
		if err != nil {
			t.Fatalf("local POST /fn/big, round %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(b) != "control answers big: "+big {
			t.Fatalf("local POST /fn/big, round %d: status %d, %d bytes back, %v", i, resp.StatusCode, len(b), err)
		}
	}

	for _, bad := range []string{"Bad_Name", "1abc", strings.Repeat("a", 64)} {
		resp, err := lc.Post("http://handoff/fn/"+bad, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, "local POST /fn/"+bad, resp.StatusCode, b, http.StatusBadRequest, "bad_name")
	}
	if n := len(h.ctl.callsTo("Bad_Name")); n != 0 {
		t.Errorf("a bad name reached the control plane %d times", n)
	}

	if v, ok := h.metricValue("handoff_node_local_calls_total", `function="other"`, `code="200"`); !ok || v != 1 {
		t.Errorf("handoff_node_local_calls_total{function=other,code=200} = %v (found %v), want 1", v, ok)
	}
}

// TestLocalAPIFromInstance has a real instance call another function through
// $HANDOFF_API: instance → local API → control plane → back.
func TestLocalAPIFromInstance(t *testing.T) {
	h := startAgent(t)
	h.start("i1", "caller", nil)
	status, out := h.invoke("i1", "caller", "call other hi there")
	if status != http.StatusOK || out != "control answers other: hi there" {
		t.Errorf("invoke call other: %d %q, want 200 %q", status, out, "control answers other: hi there")
	}
	calls := h.ctl.callsTo("other")
	if len(calls) != 1 {
		t.Fatalf("the control plane got %d calls to other, want 1", len(calls))
	}
	// The caller is known from the instance's own socket.
	if c := calls[0]; c.auth != testToken || c.body != "hi there" || c.caller != "caller" {
		t.Errorf("the control plane got %+v, want the cluster token, caller %q and body %q", c, "caller", "hi there")
	}
}

func TestLocalAPIGatewayDown(t *testing.T) {
	// A control URL where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	h := startAgentWith(t, newFakeControl(t), down)
	resp, err := localClient(h).Post("http://handoff/fn/other", "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, "local call with the gateway down", resp.StatusCode, b, http.StatusBadGateway, "gateway_unreachable")
}

func TestStartFailureAndLogs(t *testing.T) {
	h := startAgent(t)
	const printed = "testfn: refusing to start: TESTFN_FAIL_START=1"

	status, b := h.do("PUT", "/v1/instances/bad1", testToken, startRequest(t, "broken", map[string]string{"TESTFN_FAIL_START": "1"}))
	msg := wantError(t, "start of a failing command", status, b, http.StatusUnprocessableEntity, "start_failed")
	if !strings.Contains(msg, printed) {
		t.Errorf("start error %q does not carry what the process printed (%q)", msg, printed)
	}
	if !strings.Contains(msg, "broken") || !strings.Contains(msg, "n1") {
		t.Errorf("start error %q does not name the function and node", msg)
	}
	if got := h.list(); len(got) != 0 {
		t.Errorf("GET /v1/instances after a failed start = %+v, want none", got)
	}
	if v, ok := h.metricValue("handoff_node_start_failures_total", `function="broken"`); !ok || v != 1 {
		t.Errorf("handoff_node_start_failures_total{function=broken} = %v (found %v), want 1", v, ok)
	}

	status, b = h.do("GET", "/v1/logs/broken", testToken, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/logs/broken: status %d; body %s", status, b)
	}
	logs := string(b)
	if !strings.Contains(logs, "==> node n1 instance bad1 <==\n") || !strings.Contains(logs, printed) {
		t.Errorf("GET /v1/logs/broken = %q, want the header of instance bad1 and %q", logs, printed)
	}

	// A function with no instance here has empty logs; a bad name is refused.
	if status, b := h.do("GET", "/v1/logs/never", testToken, nil); status != http.StatusOK || len(b) != 0 {
		t.Errorf("GET /v1/logs/never: %d %q, want 200 and empty", status, b)
	}
	status, b = h.do("GET", "/v1/logs/Not_A_Name", testToken, nil)
	wantError(t, "GET /v1/logs/Not_A_Name", status, b, http.StatusBadRequest, "bad_name")
}

func TestShutdownStopsInstances(t *testing.T) {
	h := startAgent(t)
	a := h.start("i1", "one", nil)
	b := h.start("i2", "two", nil)
	if _, err := os.Stat(h.agent.SocketPath()); err != nil {
		t.Fatalf("local API socket: %v", err)
	}
	if err := h.shutdown(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, inst := range []api.Instance{a, b} {
		if !processGone(inst.PID) {
			t.Errorf("instance %s (pid %d) still runs after Run returned", inst.ID, inst.PID)
		}
	}
	if _, err := os.Stat(h.agent.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local API socket after shutdown: %v, want it removed", err)
	}
	if c, err := net.DialTimeout("tcp", h.agent.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("the node API still accepts connections on %s after shutdown", h.agent.Addr())
	}
}

// TestConcurrentStartsOfOneID sends two starts of the same id at once: one
// must win and the other get 409, and only one process may run.
func TestConcurrentStartsOfOneID(t *testing.T) {
	h := startAgent(t)
	body := startRequest(t, "echo", nil)
	type result struct {
		status int
		body   []byte
		err    error
	}
	res := make(chan result, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest("PUT", h.base+"/v1/instances/i1", bytes.NewReader(body))
			req.Header.Set(httpx.HeaderToken, testToken)
			resp, err := h.client.Do(req)
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			res <- result{resp.StatusCode, b, err}
		}()
	}
	var pids []int
	conflicts := 0
	for range 2 {
		r := <-res
		switch {
		case r.err != nil:
			t.Fatal(r.err)
		case r.status == http.StatusOK:
			var inst api.Instance
			if err := json.Unmarshal(r.body, &inst); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, inst.PID)
		default:
			wantError(t, "the losing start", r.status, r.body, http.StatusConflict, "instance_exists")
			conflicts++
		}
	}
	if len(pids) != 1 || conflicts != 1 {
		t.Errorf("two concurrent starts of i1: %d succeeded (pids %v), %d got 409; want one of each", len(pids), pids, conflicts)
	}
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("process %d of i1 outlived the agent", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// parkedOf returns the pid of fn's parked process (0 if none or starting).
func (h *harness) parkedOf(fn string) int {
	h.t.Helper()
	return h.parkedInfo(fn).PID
}

// parkedInfo returns what GET /v1/parked says of fn.
func (h *harness) parkedInfo(fn string) ParkedInfo {
	h.t.Helper()
	status, b := h.do("GET", "/v1/parked", testToken, nil)
	if status != http.StatusOK {
		h.t.Fatalf("GET /v1/parked: %d %s", status, b)
	}
	var ps []ParkedInfo
	if err := json.Unmarshal(b, &ps); err != nil {
		h.t.Fatalf("GET /v1/parked: %v; body %s", err, b)
	}
	for _, p := range ps {
		if p.Function == fn {
			return p
		}
	}
	return ParkedInfo{}
}

// waitParked waits until fn has a parked process other than not and returns its pid.
func (h *harness) waitParked(fn string, not int) int {
	h.t.Helper()
	var pid int
	waitFor(h.t, 10*time.Second, func() error {
		pid = h.parkedOf(fn)
		if pid == 0 || pid == not {
			return fmt.Errorf("no new parked process of %s (have %d)", fn, pid)
		}
		if !h.parkedInfo(fn).Parked {
			return fmt.Errorf("process %d of %s has not parked yet", pid, fn)
		}
		return nil
	})
	return pid
}

func parkRequest(t *testing.T, fn string, env map[string]string, memory spec.Bytes) []byte {
	t.Helper()
	f := spec.Function{Name: fn, Run: spec.Run{Command: testfnBin}, Env: env, Memory: memory}
	f.ApplyDefaults()
	b, err := json.Marshal(StartRequest{Function: f})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sockets counts the sockets process pid holds.
func sockets(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

func TestParkedProcessBecomesTheNextInstance(t *testing.T) {
	h := startAgent(t)
	body := parkRequest(t, "echo", map[string]string{"GREETING": "spec"}, 64<<20)
	if status, b := h.do("PUT", "/v1/instances/i1", testToken, body); status != http.StatusOK {
		t.Fatalf("start i1: %d %s", status, b)
	}
	parked := h.waitParked("echo", 0)
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", parked))
	for _, k := range []string{"PORT=", "HANDOFF_INSTANCE=", "HANDOFF_API=", "HANDOFF_WIRE_SECRET="} {
		if bytes.Contains(env, []byte("\x00"+k)) {
			t.Errorf("parked process has per-instance %s", k)
		}
	}
	if !bytes.Contains(env, []byte("GREETING=spec")) {
		t.Errorf("parked process lacks the spec's env")
	}
	// Never an instance, never reachable: its only socket is the park socket.
	for _, in := range h.list() {
		if in.PID == parked {
			t.Errorf("parked process %d listed as instance %s", parked, in.ID)
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if n := sockets(t, parked); n != 1 {
			return fmt.Errorf("parked process holds %d sockets, want only its park socket", n)
		}
		return nil
	})
	if status, _ := h.do("DELETE", "/v1/instances/i1", testToken, nil); status != http.StatusNoContent {
		t.Fatalf("stop i1: %d", status)
	}
	// Scale from zero: the parked process becomes i2, with i2's env.
	status, b := h.do("PUT", "/v1/instances/i2", testToken, body)
	if status != http.StatusOK {
		t.Fatalf("start i2: %d %s", status, b)
	}
	var in api.Instance
	json.Unmarshal(b, &in)
	if in.PID != parked {
		t.Fatalf("i2 runs as pid %d, want the parked %d", in.PID, parked)
	}
	t.Logf("activation to ready: %v", in.ColdStart)
	for name, want := range map[string]string{"HANDOFF_INSTANCE": "i2", "GREETING": "spec", "HANDOFF_FUNCTION": "echo"} {
		if status, out := h.invoke("i2", "echo", "env "+name); status != http.StatusOK || out != want {
			t.Errorf("i2: env %s = %d %q, want %q", name, status, out, want)
		}
	}
	if status, out := h.invoke("i2", "echo", "env HANDOFF_API"); status != http.StatusOK || !strings.HasPrefix(out, filepath.Join(filepath.Dir(h.agent.SocketPath()), "api")) {
		t.Errorf("i2: HANDOFF_API = %q", out)
	}
	if in.MemoryLimitEnforced {
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", parked))
		if !strings.Contains(string(cg), "/handoff/n1/i2") && !strings.Contains(string(cg), "/handoff/n1/parked.") {
			t.Errorf("activated process is in cgroups %q, want the instance's", cg)
		}
	}
	// And a new one is parked for the next start.
	h.waitParked("echo", parked)
}

func TestParkedProcessCrashIsReplaced(t *testing.T) {
	h := startAgent(t)
	h.start("i1", "echo", nil)
	first := h.waitParked("echo", 0)
	syscall.Kill(first, syscall.SIGKILL)
	second := h.waitParked("echo", first)
	if !processGone(first) {
		t.Errorf("killed parked process %d still there", first)
	}
	t.Logf("parked %d replaced by %d", first, second)
}

func TestRedeployReplacesParkedProcess(t *testing.T) {
	h := startAgent(t)
	h.start("i1", "echo", map[string]string{"V": "1"})
	old := h.waitParked("echo", 0)
	// The control plane says echo has a new version.
	v2 := startRequest(t, "echo", map[string]string{"V": "2"})
	if status, b := h.do("PUT", "/v1/parked/echo", testToken, v2); status != http.StatusNoContent {
		t.Fatalf("PUT /v1/parked/echo: %d %s", status, b)
	}
	cur := h.waitParked("echo", old)
	waitGone(t, old)
	h.do("DELETE", "/v1/instances/i1", testToken, nil)
	status, b := h.do("PUT", "/v1/instances/i2", testToken, v2)
	if status != http.StatusOK {
		t.Fatalf("start i2: %d %s", status, b)
	}
	if status, out := h.invoke("i2", "echo", "env V"); out != "2" {
		t.Errorf("i2 of version 2: env V = %d %q", status, out)
	}
	var in api.Instance
	json.Unmarshal(b, &in)
	if in.PID != cur {
		t.Errorf("i2 is pid %d, want the parked version 2 (%d)", in.PID, cur)
	}
	// A start of yet another version without notice never activates the
	// old parked process.
	next := h.waitParked("echo", cur)
	v3 := startRequest(t, "echo", map[string]string{"V": "3"})
	status, b = h.do("PUT", "/v1/instances/i3", testToken, v3)
	if status != http.StatusOK {
		t.Fatalf("start i3: %d %s", status, b)
	}
	json.Unmarshal(b, &in)
	if in.PID == next {
		t.Error("a parked process of version 2 became an instance of version 3")
	}
	if status, out := h.invoke("i3", "echo", "env V"); out != "3" {
		t.Errorf("i3: env V = %d %q", status, out)
	}
	waitGone(t, next)
	// Removal drops the parked process.
	last := h.waitParked("echo", next)
	h.do("DELETE", "/v1/parked/echo", testToken, nil)
	waitGone(t, last)
	if pid := h.parkedOf("echo"); pid != 0 {
		t.Errorf("parked process %d after DELETE /v1/parked/echo", pid)
	}
}

func TestNoParkStartsEveryInstanceAfresh(t *testing.T) {
	h := startAgentTuned(t, newFakeControl(t), "", func(c *Config) { c.NoPark = true })
	var req StartRequest
	json.Unmarshal(startRequest(t, "echo", nil), &req)
	key, cfg := h.agent.parkConfig(req)
	h.agent.park("echo", key, cfg, 0) // what an instance's start schedules
	if pid := h.parkedOf("echo"); pid != 0 {
		t.Errorf("NoPark agent parked pid %d", pid)
	}
}
