package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// checkFor polls fn every poll until it returns nil or total has passed.
var checkFor = handofftest.CheckFor

// instance is an SDK server started with ServeContext, as a node agent
// would start it.
type instance struct {
	url  string
	stop context.CancelFunc
	done chan error // receives ServeContext's result
}

// startInstance runs ServeContext(h) on a free port and waits until it
// answers its health check. The server is stopped at the end of the test.
func startInstance(t testing.TB, h http.Handler) *instance {
	t.Helper()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		os.Setenv("PORT", port)
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{url: "http://127.0.0.1:" + port, stop: cancel, done: make(chan error, 1)}
		go func() { in.done <- ServeContext(ctx, h) }()
		var err error
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			select {
			case err = <-in.done:
				return nil
			default:
			}
			resp, herr := http.Get(in.url + "/healthz")
			if herr != nil {
				return herr
			}
			resp.Body.Close()
			return nil
		})
		os.Unsetenv("PORT")
		if err != nil {
			cancel()
			if attempt < 3 { // the free port was taken meanwhile
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			<-in.done
		})
		return in
	}
}

// agent plays the node agent's local API on a Unix socket: POST /fn/{name}
// is forwarded to the instance registered for name.
type agent struct {
	mu     sync.Mutex          // guards all following fields
	routes map[string]string   // function name → instance URL
	seen   map[string][]string // function name → request ids received
	fixed  map[string]func(http.ResponseWriter)
}

func startAgent(t testing.TB) *agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{routes: map[string]string{}, seen: map[string][]string{}, fixed: map[string]func(http.ResponseWriter){}}
	srv := &http.Server{Handler: a}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("HANDOFF_API", sock)
	return a
}

func (a *agent) route(name, url string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.routes[name] = url
}

func (a *agent) answer(name string, fn func(http.ResponseWriter)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fixed[name] = fn
}

func (a *agent) requestIDs(name string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen[name]...)
}

var agentClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (a *agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/fn/")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "bad local API request", http.StatusBadRequest)
		return
	}
	id := r.Header.Get(HeaderRequestID)
	a.mu.Lock()
	a.seen[name] = append(a.seen[name], id)
	url, fixed := a.routes[name], a.fixed[name]
	a.mu.Unlock()
	if fixed != nil {
		fixed(w)
		return
	}
	if url == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"code":"function_not_found","error":"no function %s is deployed; deploy it with handoff deploy"}`, name)
		return
	}
	if id == "" {
		id = "agent-" + name
	}
	// Stream both ways, as the node agent does.
	http.NewResponseController(w).EnableFullDuplex()
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, url+"/", r.Body)
	req.ContentLength = r.ContentLength
	req.Header.Set(HeaderRequestID, id)
	req.Header.Set(HeaderFunction, name)
	resp, err := agentClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func echo(ctx context.Context, in []byte) ([]byte, error) { return in, nil }

func post(t testing.TB, url string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestServeRoutes(t *testing.T) {
	in := startInstance(t, HandlerFunc(echo))

	body := make([]byte, 3<<20)
	rand.Read(body)
	if code, out := post(t, in.url+"/", body, nil); code != 200 || !bytes.Equal(out, body) {
		t.Fatalf("POST /: status %d, %d bytes back, want 200 and the same %d bytes", code, len(out), len(body))
	}
	if code, out := post(t, in.url+"/", nil, nil); code != 200 || len(out) != 0 {
		t.Fatalf("POST / empty: status %d, %q", code, out)
	}
	resp, err := http.Get(in.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /: status %d Allow %q, want 405 POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if code, _ := post(t, in.url+"/elsewhere", nil, nil); code != http.StatusNotFound {
		t.Errorf("POST /elsewhere: status %d, want 404", code)
	}
	resp, err = http.Get(in.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz: status %d", resp.StatusCode)
	}
}

func TestServeChunkedBody(t *testing.T) {
	in := startInstance(t, HandlerFunc(echo))
	body := bytes.Repeat([]byte("chunked "), 100000)
	// An io.Reader of unknown length is sent chunked.
	resp, err := http.Post(in.url+"/", "text/plain", io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(out, body) {
		t.Fatalf("status %d, %d bytes back, want 200 and %d", resp.StatusCode, len(out), len(body))
	}
}

func TestHandlerErrors(t *testing.T) {
	in := startInstance(t, HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) {
		switch string(b) {
		case "plain":
			return nil, errors.New("disk full")
		case "status":
			return nil, fmt.Errorf("checking input: %w", Errorf(http.StatusUnprocessableEntity, "input %q is not a number", "x"))
		case "panic":
			panic("boom")
		}
		return b, nil
	}))
	for _, tc := range []struct {
		in, code, msg string
		status        int
	}{
		{"plain", "function_error", "disk full", 500},
		{"status", "unprocessable_entity", `checking input: input "x" is not a number`, 422},
		{"panic", "panic", "function panicked: boom", 500},
	} {
		status, out := post(t, in.url+"/", []byte(tc.in), nil)
		want := fmt.Sprintf(`{"code":%q,"error":%q}`+"\n", tc.code, tc.msg)
		if status != tc.status || string(out) != want {
			t.Errorf("%s: got %d %s, want %d %s", tc.in, status, out, tc.status, want)
		}
	}
	// The server survives the panic.
	if status, out := post(t, in.url+"/", []byte("ok"), nil); status != 200 || string(out) != "ok" {
		t.Errorf("after panic: %d %q", status, out)
	}
}

func TestMaxBody(t *testing.T) {
	t.Setenv("HANDOFF_MAX_BODY", "1Ki")
	in := startInstance(t, HandlerFunc(echo))
	if status, _ := post(t, in.url+"/", make([]byte, 1024), nil); status != 200 {
		t.Errorf("1024 bytes: status %d, want 200", status)
	}
	if status, out := post(t, in.url+"/", make([]byte, 1025), nil); status != http.StatusRequestEntityTooLarge {
		t.Errorf("1025 bytes: status %d %s, want 413", status, out)
	}
	// Chunked bodies are cut by the MaxBytesReader.
	resp, err := http.Post(in.url+"/", "", io.MultiReader(bytes.NewReader(make([]byte, 5000))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 5000 bytes: status %d, want 413", resp.StatusCode)
	}

	t.Setenv("HANDOFF_MAX_BODY", "lots")
	t.Setenv("PORT", freePort(t))
	if err := ServeContext(context.Background(), HandlerFunc(echo)); err == nil || !strings.Contains(err.Error(), "HANDOFF_MAX_BODY") {
		t.Errorf("invalid HANDOFF_MAX_BODY: err %v", err)
	}
}

func TestServeContextListenErrors(t *testing.T) {
	t.Setenv("PORT", "")
	os.Unsetenv("PORT")
	if err := ServeContext(context.Background(), HandlerFunc(echo)); err == nil || !strings.Contains(err.Error(), "PORT is not set") {
		t.Errorf("no PORT: err %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("PORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	if err := ServeContext(context.Background(), HandlerFunc(echo)); err == nil || !strings.Contains(err.Error(), "cannot listen") {
		t.Errorf("port in use: err %v", err)
	}
}

func TestRequestIDPropagation(t *testing.T) {
	a := startAgent(t)
	b := startInstance(t, HandlerFunc(func(ctx context.Context, in []byte) ([]byte, error) {
		return []byte(RequestID(ctx)), nil
	}))
	a.route("b", b.url)
	front := startInstance(t, HandlerFunc(func(ctx context.Context, in []byte) ([]byte, error) {
		return Invoke(ctx, "b", in)
	}))
	status, out := post(t, front.url+"/", []byte("x"), map[string]string{HeaderRequestID: "req-42"})
	if status != 200 || string(out) != "req-42" {
		t.Fatalf("got %d %q, want 200 and the request id req-42 seen by b", status, out)
	}
	if ids := a.requestIDs("b"); len(ids) != 1 || ids[0] != "req-42" {
		t.Errorf("agent saw request ids %q for b, want [req-42]", ids)
	}
	// Outside an invocation there is no id to propagate.
	if _, err := Invoke(context.Background(), "b", nil); err != nil {
		t.Fatal(err)
	}
	if ids := a.requestIDs("b"); len(ids) != 2 || ids[1] != "" {
		t.Errorf("agent saw request ids %q for b, want a second empty one", ids)
	}
}

func TestInvokeErrors(t *testing.T) {
	a := startAgent(t)
	fail := startInstance(t, HandlerFunc(func(ctx context.Context, in []byte) ([]byte, error) {
		if len(in) > 0 {
			return nil, Errorf(http.StatusBadRequest, "want an empty input, got %d bytes", len(in))
		}
		return nil, errors.New("database unreachable")
	}))
	a.route("fail", fail.url)
	a.answer("text", func(w http.ResponseWriter) { http.Error(w, "upstream exploded", http.StatusBadGateway) })

	for _, tc := range []struct {
		fn, in string
		want   Error
	}{
		{"fail", "", Error{"fail", 500, "function_error", "database unreachable"}},
		{"fail", "xyz", Error{"fail", 400, "bad_request", "want an empty input, got 3 bytes"}},
		{"missing", "", Error{"missing", 404, "function_not_found", "no function missing is deployed; deploy it with handoff deploy"}},
		{"text", "", Error{"text", 502, "", "upstream exploded"}},
	} {
		_, err := Invoke(context.Background(), tc.fn, []byte(tc.in))
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: err %v (%T), want *Error", tc.fn, err, err)
		}
		if *e != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.fn, *e, tc.want)
		}
		if !strings.Contains(e.Error(), strconv.Quote(tc.fn)) || !strings.Contains(e.Error(), tc.want.Message) {
			t.Errorf("%s: message %q does not say which function failed and why", tc.fn, e.Error())
		}
	}
	_, err := InvokeStream(context.Background(), "fail", strings.NewReader("abc"))
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 {
		t.Errorf("InvokeStream: err %v, want *Error with status 400", err)
	}
}

func TestNoAPI(t *testing.T) {
	t.Setenv("HANDOFF_API", "")
	if _, err := Invoke(context.Background(), "x", nil); !errors.Is(err, ErrNoAPI) {
		t.Errorf("Invoke: err %v, want ErrNoAPI", err)
	}
	if _, err := InvokeStream(context.Background(), "x", nil); !errors.Is(err, ErrNoAPI) {
		t.Errorf("InvokeStream: err %v, want ErrNoAPI", err)
	}
}

func TestInvokeStream(t *testing.T) {
	a := startAgent(t)
	// A streaming function: upper-cases its input as it reads it.
	up := startInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			w.Write(bytes.ToUpper(buf[:n]))
			if err != nil {
				return
			}
		}
	}))
	a.route("up", up.url)

	const size = 16 << 20
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("abcdefgh"), 4096)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	rc, err := InvokeStream(WithRequestID(context.Background(), "s-1"), "up", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || !bytes.Equal(got[:16], []byte("ABCDEFGHABCDEFGH")) {
		t.Fatalf("got %d bytes starting %q, want %d upper-cased", len(got), got[:min(16, len(got))], size)
	}
	if ids := a.requestIDs("up"); len(ids) != 1 || ids[0] != "s-1" {
		t.Errorf("request ids %q, want [s-1]", ids)
	}
}

func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	in := startInstance(t, HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) {
		close(entered)
		<-release
		return []byte("finished"), nil
	}))
	type result struct {
		status int
		body   string
		err    error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Post(in.url+"/", "", strings.NewReader("work"))
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		resc <- result{resp.StatusCode, string(b), err}
	}()
	<-entered
	in.stop() // as SIGTERM does in Serve

	// New connections are refused while the request is in flight...
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		c, err := net.Dial("tcp", strings.TrimPrefix(in.url, "http://"))
		if err == nil {
			c.Close()
			return errors.New("still accepting")
		}
		return nil
	})
	// ...and the server waits for it.
	select {
	case err := <-in.done:
		t.Fatalf("ServeContext returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := <-resc
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %+v, want 200 finished", r)
	}
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("ServeContext: %v", err)
		}
		in.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("ServeContext did not return after the in-flight request finished")
	}
}

func TestShutdownGraceExpires(t *testing.T) {
	old := shutdownGrace
	shutdownGrace = 50 * time.Millisecond
	defer func() { shutdownGrace = old }()
	entered := make(chan struct{})
	in := startInstance(t, HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done() // canceled when the connection is closed
		return nil, ctx.Err()
	}))
	go http.Post(in.url+"/", "", nil)
	<-entered
	in.stop()
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatal(err)
		}
		in.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("ServeContext did not return after the grace period")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "1Ki": 1024, "64Mi": 64 << 20, "2Gi": 2 << 30, "5M": 5e6, "1G": 1e9} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1Ti", "Mi", "1.5Gi", "99999999999999999999"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}

// BenchmarkServeEcho measures one invocation round trip through the SDK
// server (keep-alive client, echo handler) for several body sizes.
func BenchmarkServeEcho(b *testing.B) {
	in := startInstance(b, HandlerFunc(echo))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	for _, size := range []int{0, 1 << 10, 1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			body := make([]byte, size)
			out := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(in.url+"/", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.ReadFull(resp.Body, out)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != size {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}

// BenchmarkInvokeEcho measures Invoke through a local API on a Unix socket
// to an echo instance: the path one function takes to call another.
func BenchmarkInvokeEcho(b *testing.B) {
	a := startAgent(b)
	in := startInstance(b, HandlerFunc(echo))
	a.route("echo", in.url)
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			body := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				out, err := Invoke(context.Background(), "echo", body)
				if err != nil || len(out) != size {
					b.Fatalf("%d bytes, %v", len(out), err)
				}
			}
		})
	}
}
