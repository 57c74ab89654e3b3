package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
)

var (
	testDir    string // removed after the tests
	testfnOnce sync.Once
	testfnBin  string
	testfnErr  error
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "control-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// startTestfn builds internal/testfn and runs it as an SDK instance would
// run under a node agent: HTTP on $PORT and framed invocations on
// $HANDOFF_WIRE behind secret. It returns the backend the router would
// hold and the process.
func startTestfn(t *testing.T, secret string) (*backend, *exec.Cmd) {
	t.Helper()
	testfnOnce.Do(func() {
		testfnBin = filepath.Join(testDir, "testfn")
		if out, err := exec.Command("go", "build", "-o", testfnBin, "../internal/testfn").CombinedOutput(); err != nil {
			testfnErr = fmt.Errorf("building testfn: %v\n%s", err, out)
		}
	})
	if testfnErr != nil {
		t.Fatal(testfnErr)
	}
	bin := testfnBin
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	httpAddr, wireAddr := free(), free()
	_, port, _ := net.SplitHostPort(httpAddr)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port, "HANDOFF_WIRE=" + wireAddr, "HANDOFF_WIRE_SECRET=" + secret}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", httpAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("testfn did not listen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &backend{id: "fn-1", node: "n1", direct: wireAddr + " " + secret, limit: 10}, cmd
}

func directServer() *Server {
	return &Server{direct: newDirectPool(), wire: newWirePool("cluster-token"), toNodes: httpx.NewHybrid(), cfg: Config{Token: "cluster-token"}}
}

// invokeDirect runs forwardDirect as handleInvoke does, with the headers
// handleInvoke sets for the node path (cluster token included).
func invokeDirect(t *testing.T, s *Server, b *backend, body string, hdr http.Header) (*httptest.ResponseRecorder, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/fn/testfn", strings.NewReader(body))
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	set := func(h http.Header) {
		httpx.SetToken(h, s.cfg.Token)
		h.Set(httpx.HeaderRequestID, "rid-1")
		h.Set(httpx.HeaderFunction, "testfn")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, _, err := s.forwardDirect(ctx, w, r, b, set)
	return w, err
}

func TestDirectInvocationNeverCarriesTheClusterToken(t *testing.T) {
	s := directServer()
	b, _ := startTestfn(t, "instance-secret")
	w, err := invokeDirect(t, s, b, "echo hi", nil)
	if err != nil || w.Code != 200 || w.Body.String() != "echo hi" {
		t.Fatalf("echo: %d %q %v", w.Code, w.Body.String(), err)
	}
	// A client that sends a cluster token of its own, and the gateway's
	// own: neither reaches the instance.
	w, err = invokeDirect(t, s, b, "x", http.Header{"X-Testfn-Headers": {"1"}, "X-Handoff-Token": {"forged-by-client"}, "X-Handoff-Caller": {"someone"}})
	if err != nil || w.Code != 200 {
		t.Fatalf("headers: %d %v", w.Code, err)
	}
	seen := w.Body.String()
	for _, bad := range []string{"cluster-token", "forged-by-client", "X-Handoff-Token", "someone", "instance-secret"} {
		if strings.Contains(seen, bad) {
			t.Errorf("the instance saw %q:\n%s", bad, seen)
		}
	}
	if !strings.Contains(seen, "X-Handoff-Request-Id: rid-1") {
		t.Errorf("the request id did not reach the instance:\n%s", seen)
	}
}

func TestDirectRefusesAWrongSecret(t *testing.T) {
	s := directServer()
	b, _ := startTestfn(t, "right")
	b.direct = strings.Replace(b.direct, " right", " wrong", 1)
	var viaNode atomic.Int64
	nodeAgent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viaNode.Add(1)
		io.WriteString(w, "via node")
	}))
	defer nodeAgent.Close()
	b.nodeURL = nodeAgent.URL
	w, err := invokeDirect(t, s, b, "echo hi", nil)
	if err != nil || w.Body.String() != "via node" || viaNode.Load() != 1 {
		t.Fatalf("a refused secret should send the call through the node agent: %q %v", w.Body.String(), err)
	}
	if b.directOn(time.Now()) {
		t.Error("the direct path did not rest after a refusal")
	}
}

func TestDirectCrashMidCall(t *testing.T) {
	s := directServer()
	b, cmd := startTestfn(t, "k")
	if w, err := invokeDirect(t, s, b, "echo warm", nil); err != nil || w.Code != 200 {
		t.Fatalf("warm-up: %d %v", w.Code, err)
	}
	// The instance dies while it holds the call: a clear failure that
	// says so, never a success or a retry of a call that may have run.
	_, err := invokeDirect(t, s, b, "crash", nil)
	if !errors.Is(err, httpx.ErrUpstream) || !errors.As(err, new(directError)) {
		t.Fatalf("crash mid-call: got %v, want an upstream directError", err)
	}
	cmd.Wait()
	// Now nothing listens: the call goes through the node agent, which
	// knows why (here a stand-in that answers as an agent does).
	nodeAgent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(httpx.HeaderToken) != "cluster-token" {
			t.Errorf("the node path lost the cluster token")
		}
		httpx.WriteError(w, http.StatusServiceUnavailable, "instance_gone", "instance fn-1 is not serving")
	}))
	defer nodeAgent.Close()
	b.nodeURL = nodeAgent.URL
	w, err := invokeDirect(t, s, b, "echo again", nil)
	if err != nil || w.Code != http.StatusServiceUnavailable {
		t.Fatalf("after the crash: %d %q %v", w.Code, w.Body.String(), err)
	}
}
