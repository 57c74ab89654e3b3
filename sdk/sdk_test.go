package sdk

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/wire"
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

// startWireInstance starts an instance that also serves framed invocations
// behind secret, as a node agent starts an SDK instance, and returns the
// framed address.
func startWireInstance(t *testing.T, h http.Handler, secret string) string {
	t.Helper()
	addr := "127.0.0.1:" + freePort(t)
	t.Setenv("HANDOFF_WIRE", addr)
	t.Setenv("HANDOFF_WIRE_SECRET", secret)
	startInstance(t, h)
	return addr
}

// dialInstanceWire opens a framed connection with secret; ok is false when
// the instance closed it without accepting.
func dialInstanceWire(t *testing.T, addr, secret string) (c net.Conn, br *bufio.Reader, bw *bufio.Writer, ok bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br, bw = bufio.NewReader(c), bufio.NewWriter(c)
	if err := wire.WriteHello(bw, secret); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := br.ReadByte()
	_ = c.SetReadDeadline(time.Time{})
	return c, br, bw, err == nil && b == 'K'
}

// wireCall sends one framed request and reads the whole answer.
func wireCall(t *testing.T, br *bufio.Reader, bw *bufio.Writer, h http.Header, body string) (int, http.Header, string, error) {
	t.Helper()
	if h == nil {
		h = http.Header{}
	}
	if err := wire.WriteRequest(bw, &wire.Request{Target: "i-1", Header: h, Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	status, ah, err := wire.ReadAnswerHead(br)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(wire.NewBodyReader(br))
	return status, ah, string(out), err
}

func TestWireRefusesAForgedOrAbsentSecret(t *testing.T) {
	addr := startWireInstance(t, HandlerFunc(echo), "s3cret-of-this-instance")
	for _, secret := range []string{"", "forged", "s3cret-of-this-instanc", "s3cret-of-this-instance-and-more"} {
		if _, _, _, ok := dialInstanceWire(t, addr, secret); ok {
			t.Errorf("secret %q was accepted", secret)
		}
	}
	// Bytes that are not a hello at all are refused too.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Error("an HTTP request on the framed port got an answer")
	}
	if _, _, _, ok := dialInstanceWire(t, addr, "s3cret-of-this-instance"); !ok {
		t.Fatal("the right secret was refused")
	}
}

func TestWireServesTheWrappedHandler(t *testing.T) {
	addr := startWireInstance(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Case") {
		case "echo":
			HandlerFunc(echo).ServeHTTP(w, r)
		case "reqid":
			io.WriteString(w, RequestID(r.Context()))
		case "deadline":
			dl, ok := r.Context().Deadline()
			fmt.Fprint(w, ok, dl.UnixNano(), r.Header.Get("X-Handoff-Deadline"))
		case "fail":
			HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, Errorf(409, "taken") }).ServeHTTP(w, r)
		case "big":
			w.Write(bytes.Repeat([]byte("b"), 3<<20))
		case "panic-late":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("late")
		case "short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		}
	}), "k")
	_, br, bw, ok := dialInstanceWire(t, addr, "k")
	if !ok {
		t.Fatal("refused")
	}
	status, h, out, err := wireCall(t, br, bw, http.Header{"X-Case": {"echo"}}, "hello")
	if err != nil || status != 200 || out != "hello" || h.Get("Content-Length") != "5" || h.Get("Content-Type") == "" {
		t.Fatalf("echo: %d %v %q %v", status, h, out, err)
	}
	_, _, out, _ = wireCall(t, br, bw, http.Header{"X-Case": {"reqid"}, "X-Handoff-Request-Id": {"rid-7"}}, "")
	if out != "rid-7" {
		t.Errorf("request id in the handler: %q", out)
	}
	dl := time.Now().Add(time.Hour).UnixNano()
	_, _, out, _ = wireCall(t, br, bw, http.Header{"X-Case": {"deadline"}, "X-Handoff-Deadline": {strconv.FormatInt(dl, 10)}}, "")
	if out != fmt.Sprint(true, dl, "") {
		t.Errorf("deadline: got %q, want the gateway's deadline in the context and no header", out)
	}
	status, _, out, _ = wireCall(t, br, bw, http.Header{"X-Case": {"fail"}}, "")
	if status != 409 || !strings.Contains(out, "taken") {
		t.Errorf("handler error: %d %q", status, out)
	}
	status, _, out, err = wireCall(t, br, bw, http.Header{"X-Case": {"big"}}, "")
	if status != 200 || len(out) != 3<<20 || err != nil {
		t.Errorf("large answer: %d, %d bytes, %v", status, len(out), err)
	}
	// A handler that breaks off, or writes less than it declared, gives a
	// broken answer, never a whole one; the connection carries on.
	for _, c := range []string{"panic-late", "short"} {
		_, _, _, err = wireCall(t, br, bw, http.Header{"X-Case": {c}}, "")
		if !errors.Is(err, wire.ErrBroken) {
			t.Errorf("%s: got %v, want a broken answer", c, err)
		}
	}
	if _, _, out, _ := wireCall(t, br, bw, http.Header{"X-Case": {"echo"}}, "again"); out != "again" {
		t.Errorf("after a broken answer: %q", out)
	}
}

func TestWireDrainsOnShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	addr := "127.0.0.1:" + freePort(t)
	t.Setenv("HANDOFF_WIRE", addr)
	t.Setenv("HANDOFF_WIRE_SECRET", "k")
	t.Setenv("PORT", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeContext(ctx, HandlerFunc(func(ctx context.Context, in []byte) ([]byte, error) {
			close(started)
			<-release
			return in, nil
		}))
	}()
	var c net.Conn
	var br *bufio.Reader
	var bw *bufio.Writer
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conn.Close()
		var ok bool
		c, br, bw, ok = dialInstanceWire(t, addr, "k")
		if !ok {
			return errors.New("refused")
		}
		return nil
	})
	_ = c
	got := make(chan string, 1)
	go func() {
		wire.WriteRequest(bw, &wire.Request{Target: "i", Header: http.Header{}, Body: []byte("in flight")})
		if _, _, err := wire.ReadAnswerHead(br); err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(wire.NewBodyReader(br))
		got <- string(b)
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("ServeContext returned %v with an invocation in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if s := <-got; s != "in flight" {
		t.Errorf("in-flight answer: %q", s)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("the framed port still accepts after shutdown")
	}
}

// TestServeParkedWaitsForActivation parks ServeContext as a node agent
// would (a socket pair in $HANDOFF_PARK_FD, no PORT) and activates it.
func TestServeParkedWaitsForActivation(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	agent := os.NewFile(uintptr(fds[0]), "agent")
	defer agent.Close()
	os.Unsetenv("PORT")
	t.Setenv("HANDOFF_PARK_FD", strconv.Itoa(fds[1]))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ServeContext(ctx, HandlerFunc(func(ctx context.Context, in []byte) ([]byte, error) {
			return []byte(os.Getenv("PARK_TEST_INSTANCE")), nil
		}))
	}()
	line, err := bufio.NewReader(agent).ReadString('\n')
	if err != nil || line != "parked\n" {
		t.Fatalf("the parked server said %q (%v), want parked", line, err)
	}
	select {
	case err := <-done:
		t.Fatalf("ServeContext returned while parked: %v", err)
	default:
	}
	port := freePort(t)
	fmt.Fprintf(agent, `{"env":["PORT=%s","PARK_TEST_INSTANCE=i-7"]}`+"\n", port)
	defer os.Unsetenv("PARK_TEST_INSTANCE")
	var out string
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		resp, err := http.Post("http://127.0.0.1:"+port+"/", "", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out = string(b)
		return nil
	})
	if out != "i-7" {
		t.Errorf("activated handler sees PARK_TEST_INSTANCE=%q, want i-7", out)
	}
	if _, ok := os.LookupEnv("HANDOFF_PARK_FD"); ok {
		t.Error("HANDOFF_PARK_FD still set after the activation")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServeParkedReleasedWithoutActivation(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	agent := os.NewFile(uintptr(fds[0]), "agent")
	t.Setenv("HANDOFF_PARK_FD", strconv.Itoa(fds[1]))
	done := make(chan error, 1)
	go func() { done <- ServeContext(context.Background(), http.NotFoundHandler()) }()
	bufio.NewReader(agent).ReadString('\n')
	agent.Close() // the node agent dropped it
	if err := <-done; err == nil || !strings.Contains(err.Error(), "released without an activation") {
		t.Errorf("ServeContext = %v, want released without an activation", err)
	}
	t.Setenv("HANDOFF_PARK_FD", "x")
	if err := ServeContext(context.Background(), http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "unset it") {
		t.Errorf("ServeContext with a bad HANDOFF_PARK_FD = %v", err)
	}
}

func TestParseActivation(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"env":["PORT=1","A=b=c","E="]}`, true},
		{`{"env":[]}`, true},
		{`{"env":["=x"]}`, false},
		{`{"env":["NOEQUALS"]}`, false},
		{`{"env":["A=\u0000"]}`, false},
		{`{"env":"PORT=1"}`, false},
		{`not json`, false},
	} {
		_, err := parseActivation([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("parseActivation(%s) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func FuzzParseActivation(f *testing.F) {
	f.Add([]byte(`{"env":["PORT=8080","HANDOFF_INSTANCE=i-1"]}` + "\n"))
	f.Add([]byte(`{"env":["=x"]}`))
	f.Add([]byte(`{"env":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := parseActivation(b)
		if err != nil {
			return
		}
		for _, kv := range env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
				t.Fatalf("accepted %q", kv)
			}
		}
	})
}
