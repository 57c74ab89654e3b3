package sdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/wire"
)

// Header names of the instance contract.
const (
	// HeaderRequestID carries the id of the current invocation; Invoke
	// propagates it on outgoing calls.
	HeaderRequestID = "X-Handoff-Request-Id"
	// HeaderFunction carries the name of the invoked function.
	HeaderFunction = "X-Handoff-Function"
)

// Handler handles one invocation: in is the whole request body and the
// returned bytes are the whole response body. ctx is canceled when the caller
// goes away and carries the request id (RequestID).
type Handler func(ctx context.Context, in []byte) ([]byte, error)

// shutdownGrace bounds how long in-flight invocations may run after SIGTERM
// (or the cancellation of ServeContext's context). A variable for tests.
var shutdownGrace = 30 * time.Second

// Serve serves h on 127.0.0.1:$PORT until SIGTERM or SIGINT, then lets
// in-flight invocations finish (up to 30 s) and exits the process with status
// 0. If the server cannot start (PORT unset or invalid, port in use) it prints
// a message saying why to stderr and exits with status 1. Serve never returns.
func Serve(h Handler) {
	serveMain(HandlerFunc(h), h)
}

// ServeHTTP is Serve for a plain http.Handler. GET /healthz is answered by
// the SDK and a request on / other than POST gets 405; every other request
// goes to h with the request id in its context.
func ServeHTTP(h http.Handler) {
	serveMain(h, nil)
}

// serveMain is Serve and ServeHTTP; raw, when set, is h's plain handler,
// which direct calls of a leased executor run without an HTTP detour.
func serveMain(h http.Handler, raw Handler) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serveContext(ctx, h, raw); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// ServeContext serves h on 127.0.0.1:$PORT until ctx is done, then stops
// accepting, waits for in-flight requests to finish (up to 30 s, after which
// the remaining connections are closed) and returns nil. It returns an error
// if the server cannot start: PORT unset or invalid, the port in use, or an
// invalid HANDOFF_MAX_BODY.
//
// It is the testable core of Serve and ServeHTTP and wraps h the same way.
func ServeContext(ctx context.Context, h http.Handler) error {
	return serveContext(ctx, h, nil)
}

func serveContext(ctx context.Context, h http.Handler, raw Handler) error {
	// A parked process waits here for its instance environment; every
	// per-instance variable is read below this line.
	if active, err := awaitActivation(ctx); err != nil || !active {
		return err
	}
	port := os.Getenv("PORT")
	if port == "" {
		return errors.New("sdk: PORT is not set: this program is not running under a Handoff node agent; start it with `handoff deploy` (or set PORT=8080 to try it by hand)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("sdk: PORT=%q is not a TCP port number (0-65535)", port)
	}
	maxBody, err := maxBodyFromEnv()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	wrapped := wrap(h, maxBody)
	// The framed listener opens before the HTTP one: once the node agent
	// sees $PORT accept, the gateway may come straight here.
	ws := startWire(wrapped)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		ws.close()
		return fmt.Errorf("sdk: cannot listen on %s: %w (is another process using the port?)", addr, err)
	}
	if err := startDirect(ctx, raw, h); err != nil {
		ln.Close()
		ws.close()
		return err
	}
	announceReady(ws)
	return serve(ctx, ln, wrapped, ws)
}

// serve runs an http.Server on ln (and the framed server ws, if any) until
// ctx is done and then drains both.
func serve(ctx context.Context, ln net.Listener, h http.Handler, ws *wireServer) error {
	srv := &http.Server{
		Handler: h,
		// No ReadTimeout or WriteTimeout: inputs and outputs may be large
		// streams. The spec's timeout is enforced by the node agent.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          nil, // net/http logs to stderr, which the node agent collects
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		// Serve only returns early on a listener failure.
		return fmt.Errorf("sdk: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	wdone := make(chan bool, 1)
	go func() { wdone <- ws.shutdown(sctx) }()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "sdk: in-flight requests still running after %v; closing their connections\n", shutdownGrace)
		srv.Close()
	}
	if !<-wdone {
		fmt.Fprintf(os.Stderr, "sdk: framed invocations still running after %v; closing their connections\n", shutdownGrace)
	}
	<-errc // http.ErrServerClosed
	return nil
}

// maxBodyFromEnv reads HANDOFF_MAX_BODY: a number of bytes, optionally with a
// K, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024) suffix. Zero means
// no limit.
func maxBodyFromEnv() (int64, error) {
	v := strings.TrimSpace(os.Getenv("HANDOFF_MAX_BODY"))
	if v == "" {
		return 0, nil
	}
	n, err := parseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("sdk: HANDOFF_MAX_BODY=%q: %w", v, err)
	}
	return n, nil
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, errors.New("want a size in bytes such as 1048576, 64Mi or 1Gi")
	}
	return n * mult, nil
}

// wrap adds what every function server does around h: the health check, 405
// for non-POST on /, the body guard, the request id in the context and panic
// recovery.
func wrap(h http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
			return
		}
		if r.URL.Path == "/" && r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s / is not supported: invoke a function with POST /", r.Method))
			return
		}
		if maxBody > 0 {
			if r.ContentLength > maxBody {
				writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
					fmt.Sprintf("request body of %d bytes exceeds HANDOFF_MAX_BODY (%d bytes); send less or raise the limit", r.ContentLength, maxBody))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if id := r.Header.Get(HeaderRequestID); id != "" {
			r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		}
		// Let streaming handlers read the input while they write the output
		// (HTTP/1 servers otherwise cut the request body at the first write).
		http.NewResponseController(w).EnableFullDuplex()
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			fmt.Fprintf(os.Stderr, "sdk: handler panic serving %s %s (request %s): %v\n%s",
				r.Method, r.URL.Path, r.Header.Get(HeaderRequestID), p, debug.Stack())
			if tw.wrote {
				// The status is out already: abort the response so the caller
				// sees a broken stream rather than a truncated success.
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "panic", fmt.Sprintf("function panicked: %v", p))
		}()
		h.ServeHTTP(tw, r)
	})
}

// trackingWriter remembers whether the response status has been sent, so
// that panic recovery knows whether it can still answer 500.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	if code >= 200 {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps io.Copy into the response as efficient as without the
// wrapper.
func (w *trackingWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *trackingWriter) Flush() {
	w.wrote = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is there for completeness of the wrapper; functions rarely need it.
func (w *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.wrote = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// HandlerFunc adapts a Handler to an http.Handler that serves POST / (other
// paths get 404). ServeHTTP and ServeContext add the health check, the
// request id and panic recovery around it.
func HandlerFunc(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			writeError(w, http.StatusNotFound, "not_found",
				fmt.Sprintf("no route %s %s: invoke a function with POST /", r.Method, r.URL.Path))
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s / is not supported: invoke a function with POST /", r.Method))
			return
		}
		in, err := readBody(r.Body, r.ContentLength)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, "body_too_large",
					fmt.Sprintf("request body exceeds HANDOFF_MAX_BODY (%d bytes); send less or raise the limit", mbe.Limit))
				return
			}
			writeError(w, http.StatusBadRequest, "bad_body", fmt.Sprintf("reading the request body: %v", err))
			return
		}
		out, err := h(r.Context(), in)
		if err != nil {
			var se *statusError
			if errors.As(err, &se) {
				writeError(w, se.status, codeForStatus(se.status), err.Error())
				return
			}
			writeError(w, http.StatusInternalServerError, "function_error", err.Error())
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		// One large Write goes straight to the connection (bufio.Writer skips
		// its buffer when it is empty), so the output is not copied again.
		w.Write(out)
	})
}

// readBody reads all of r. When the size is known (Content-Length), it reads
// into a buffer of exactly that size: one copy from the socket, no regrowth.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil
	}
	if size > 0 {
		buf := make([]byte, size)
		n, err := io.ReadFull(r, buf)
		if err != nil {
			return nil, fmt.Errorf("got %d of %d bytes: %w", n, size, err)
		}
		return buf, nil
	}
	// Unknown size (chunked): grow geometrically from a modest start.
	buf := make([]byte, 0, 64<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// errorBody is the JSON error format of the platform's edges.
type errorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(errorBody{Code: code, Error: msg})
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// codeForStatus turns a status into a stable snake_case code ("bad_request").
func codeForStatus(status int) string {
	t := http.StatusText(status)
	if t == "" {
		return "status_" + strconv.Itoa(status)
	}
	return strings.ToLower(strings.NewReplacer(" ", "_", "-", "_", "'", "").Replace(t))
}

// statusError is an error with the HTTP status a handler chose (Errorf).
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// Errorf returns an error that makes the invocation fail with the given HTTP
// status (4xx or 5xx) and the formatted message. It may be wrapped with %w;
// the outermost message is sent. Other errors a handler returns become 500.
func Errorf(status int, format string, args ...any) error {
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	return &statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

type requestIDKey struct{}

// RequestID returns the X-Handoff-Request-Id of the invocation that ctx
// belongs to, or "" if there is none. Invoke propagates it automatically.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// WithRequestID returns a context carrying id as the request id, for
// programs that call Invoke outside a handler (and for tests).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// The framed invocation server. When the node agent gives an instance
// $HANDOFF_WIRE (an address to listen on) and $HANDOFF_WIRE_SECRET, the SDK
// also serves invocations in the gateway's framed protocol (package wire)
// there, so a small invocation goes from the gateway to the instance without
// the node agent's hop. The gateway opens each connection with the
// instance's secret (never the cluster token); anything else is closed
// unanswered. The same wrapped handler serves both listeners.

// wireServer serves framed invocations; a nil *wireServer serves nothing.
type wireServer struct {
	ln     net.Listener
	secret []byte
	h      http.Handler

	mu       sync.Mutex // guards all following fields
	conns    map[net.Conn]bool
	inflight int
	idle     chan struct{} // closed when inflight drops to 0 while closing
	closing  bool
}

// startWire opens the framed listener if the node agent asked for one. A
// listener that cannot open is not fatal: the gateway then reaches this
// instance through its node agent, as any HTTP function.
func startWire(h http.Handler) *wireServer {
	addr, secret := os.Getenv("HANDOFF_WIRE"), os.Getenv("HANDOFF_WIRE_SECRET")
	if addr == "" || secret == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdk: cannot serve framed invocations on %s (%v); invocations come through the node agent instead\n", addr, err)
		return nil
	}
	ws := &wireServer{ln: ln, secret: []byte(secret), h: h, conns: map[net.Conn]bool{}}
	go ws.serve()
	return ws
}

// announceReady tells the node agent that the instance serves, through the
// descriptor it passed in $HANDOFF_READY_FD (if any), so it need not wait
// for its next connection probe.
func announceReady(ws *wireServer) {
	fd, err := strconv.Atoi(os.Getenv("HANDOFF_READY_FD"))
	if err != nil || fd < 3 {
		return
	}
	f := os.NewFile(uintptr(fd), "ready")
	if f == nil {
		return
	}
	msg := "ready\n"
	if ws != nil {
		msg = "ready wire\n"
	}
	_, _ = f.WriteString(msg)
	f.Close()
}

func (ws *wireServer) serve() {
	for {
		c, err := ws.ln.Accept()
		if err != nil {
			return
		}
		go ws.conn(c)
	}
}

func (ws *wireServer) close() {
	if ws != nil {
		ws.ln.Close()
	}
}

// track records c as open (idle or busy); false once the server closes.
func (ws *wireServer) track(c net.Conn, idle bool) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closing {
		return false
	}
	ws.conns[c] = idle
	return true
}

// begin counts an invocation; false once the server closes.
func (ws *wireServer) begin(c net.Conn) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closing {
		return false
	}
	ws.conns[c] = false
	ws.inflight++
	return true
}

func (ws *wireServer) end() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.inflight--
	if ws.inflight == 0 && ws.idle != nil {
		close(ws.idle)
		ws.idle = nil
	}
}

// shutdown stops accepting, closes idle connections and waits for the
// invocations in flight, up to ctx; then it closes every connection. It
// reports whether the invocations ended in time.
func (ws *wireServer) shutdown(ctx context.Context) bool {
	if ws == nil {
		return true
	}
	ws.ln.Close()
	ws.mu.Lock()
	ws.closing = true
	for c, idle := range ws.conns {
		if idle {
			_ = c.SetReadDeadline(time.Now())
		}
	}
	var wait chan struct{}
	if ws.inflight > 0 {
		ws.idle = make(chan struct{})
		wait = ws.idle
	}
	ws.mu.Unlock()
	ok := true
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			ok = false
		}
	}
	ws.mu.Lock()
	for c := range ws.conns {
		c.Close()
	}
	ws.mu.Unlock()
	return ok
}

func (ws *wireServer) conn(c net.Conn) {
	defer func() {
		ws.mu.Lock()
		delete(ws.conns, c)
		ws.mu.Unlock()
		c.Close()
	}()
	if !ws.track(c, true) {
		return
	}
	br, bw := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	secret, err := wire.ReadHello(br)
	if err != nil || subtle.ConstantTimeCompare([]byte(secret), ws.secret) != 1 {
		return // not the gateway: say nothing
	}
	bw.WriteByte('K')
	if bw.Flush() != nil {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Time{})
		if !ws.track(c, true) {
			return
		}
		req, err := wire.ReadRequest(br)
		if err != nil {
			return
		}
		if !ws.begin(c) {
			return
		}
		ok := ws.invoke(c, req, bw)
		ws.end()
		if !ok {
			return
		}
	}
}

// headerDeadline carries the gateway's deadline of a framed invocation, in
// Unix nanoseconds (the same header the node agent reads).
const headerDeadline = "X-Handoff-Deadline"

// invoke runs one framed request through the handler and writes its answer;
// false means the connection cannot carry another.
func (ws *wireServer) invoke(c net.Conn, req *wire.Request, bw *bufio.Writer) bool {
	ctx := context.Background()
	if ns, err := strconv.ParseInt(req.Header.Get(headerDeadline), 10, 64); err == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, ns))
		defer cancel()
	}
	req.Header.Del(headerDeadline)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(req.Body))
	if err != nil {
		return false
	}
	hr.Header = req.Header
	hr.ContentLength = int64(len(req.Body))
	hr.Header.Set("Content-Length", strconv.Itoa(len(req.Body)))
	hr.RequestURI = "/"
	hr.Host = hr.Header.Get("Host")
	hr.Header.Del("Host")
	hr.RemoteAddr = c.RemoteAddr().String()
	w := &wireWriter{bw: bw, header: http.Header{}}
	aborted := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					fmt.Fprintf(os.Stderr, "sdk: panic serving a framed invocation: %v\n%s", p, debug.Stack())
				}
				aborted = true
			}
		}()
		ws.h.ServeHTTP(w, hr)
	}()
	if aborted {
		return w.abort("the function aborted its answer")
	}
	return w.finish()
}

// wireWriter is an http.ResponseWriter that writes a framed answer. Like
// net/http it holds back a small body, so an answer that ends within it gets
// a Content-Length (and a sniffed Content-Type) instead of a chunked body.
type wireWriter struct {
	bw      *bufio.Writer
	header  http.Header
	status  int    // 0 until WriteHeader
	sent    bool   // the answer head is on the wire
	held    []byte // body held back until sent
	body    *wire.BodyWriter
	written int64 // body bytes accepted
	limit   int64 // declared Content-Length, -1 if none
	err     error // the connection failed
}

// wireHold is how much of a body is held back to find its length.
const wireHold = 4 << 10

func (w *wireWriter) Header() http.Header { return w.header }

func (w *wireWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return // informational answers are not forwarded
	}
	w.status = code
	w.limit = -1
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.limit = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

func (w *wireWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		return 0, http.ErrBodyNotAllowed
	}
	if w.limit >= 0 && w.written+int64(len(p)) > w.limit {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.sent && len(w.held)+len(p) <= wireHold {
		w.held = append(w.held, p...)
		return len(p), nil
	}
	if !w.sent {
		w.sendHead(false)
	}
	if w.err == nil {
		_, w.err = w.body.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Flush sends what is held and buffered (http.Flusher).
func (w *wireWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(false)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// sendHead writes the head and whatever was held back; complete means the
// handler has returned, so the held bytes are the whole body.
func (w *wireWriter) sendHead(complete bool) {
	w.sent = true
	h := w.header
	if _, ok := h["Content-Type"]; !ok && len(w.held) > 0 {
		h.Set("Content-Type", http.DetectContentType(w.held))
	}
	if complete && w.limit < 0 && w.status != http.StatusNoContent && w.status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(len(w.held)))
	}
	if err := wire.WriteAnswerHead(w.bw, w.status, h); err != nil {
		w.err = err
		return
	}
	w.body = wire.NewBodyWriter(w.bw)
	if len(w.held) > 0 {
		_, w.err = w.body.Write(w.held)
	}
	w.held = nil
}

// finish ends the answer after the handler returned; false means the
// connection is unusable.
func (w *wireWriter) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent {
		w.sendHead(true)
	}
	if w.err != nil {
		return false
	}
	if w.limit >= 0 && w.written != w.limit {
		return w.abort(fmt.Sprintf("the function declared %d bytes and wrote %d", w.limit, w.written))
	}
	return w.body.Close() == nil
}

// abort ends an answer that broke off: the gateway sees a broken answer,
// never a whole one. It reports whether the connection can carry another.
func (w *wireWriter) abort(msg string) bool {
	if w.err != nil {
		return false
	}
	if !w.sent {
		w.status = http.StatusInternalServerError
		w.held = nil
		w.header = http.Header{}
		if err := wire.WriteAnswerHead(w.bw, w.status, w.header); err != nil {
			return false
		}
		w.sent = true
		w.body = wire.NewBodyWriter(w.bw)
	}
	return w.body.Abort(msg) == nil
}

// Parking. A node agent may start a function's program before any
// instance needs it, with only the function's own environment and
// $HANDOFF_PARK_FD, one end of a socket pair (see package supervisor,
// Park). Serve then says "parked\n" there and waits for the activation:
// one line of JSON, {"env": ["K=V", ...]}, the instance's environment,
// which it sets before it reads any of it. The program's start-up (runtime,
// package initialisation, whatever main does before Serve) is then paid
// before the request that needs the instance.

// maxActivation bounds the activation line.
const maxActivation = 1 << 20

// awaitActivation parks the process if the node agent asked for it and
// returns once it is activated (true), or when ctx ends first (false, nil).
// Without $HANDOFF_PARK_FD it returns true at once.
func awaitActivation(ctx context.Context) (bool, error) {
	v, ok := os.LookupEnv("HANDOFF_PARK_FD")
	if !ok {
		return true, nil
	}
	os.Unsetenv("HANDOFF_PARK_FD") // not for the function's children
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return false, fmt.Errorf("sdk: HANDOFF_PARK_FD=%q is not a descriptor number; only a node agent sets it, so unset it to run the program by hand", v)
	}
	f := os.NewFile(uintptr(fd), "park")
	warmUp()
	if _, err := f.WriteString("parked\n"); err != nil {
		f.Close()
		return false, fmt.Errorf("sdk: HANDOFF_PARK_FD=%d: cannot tell the node agent this process is parked (%w); only a node agent sets it, so unset it to run the program by hand", fd, err)
	}
	type result struct {
		env []string
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(io.LimitReader(f, maxActivation)).ReadBytes('\n')
		if err != nil {
			got <- result{nil, fmt.Errorf("sdk: parked process released without an activation (%v): the node agent stopped or dropped it", err)}
			return
		}
		env, err := parseActivation(line)
		got <- result{env, err}
	}()
	select {
	case <-ctx.Done():
		return false, nil
	case r := <-got:
		f.Close()
		if r.err != nil {
			return false, r.err
		}
		for _, kv := range r.env {
			k, val, _ := strings.Cut(kv, "=")
			if err := os.Setenv(k, val); err != nil {
				return false, fmt.Errorf("sdk: activation: set %s: %w", k, err)
			}
		}
		return true, nil
	}
}

// warmUp serves one invocation over HTTP and one over the framed protocol,
// on throwaway loopback listeners, with a handler of its own (never the
// function's): the code and data of the serving path are then paged in
// before the activation, so an instance's first request costs about what
// a warm one does. Failures are ignored: it is only a head start.
func warmUp() {
	h := wrap(HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, nil }), 0)
	deadline := time.Now().Add(2 * time.Second)
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.SetDeadline(deadline)
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: warm-up\r\nContent-Length: 1\r\nX-Handoff-Request-Id: warm-up\r\nConnection: close\r\n\r\nx")
			io.Copy(io.Discard, c)
			c.Close()
		}
		srv.Close()
	}
	var secret [16]byte
	rand.Read(secret[:])
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ws := &wireServer{ln: ln, secret: []byte(hex.EncodeToString(secret[:])), h: h, conns: map[net.Conn]bool{}}
		go ws.serve()
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.SetDeadline(deadline)
			br, bw := bufio.NewReader(c), bufio.NewWriter(c)
			if wire.WriteHello(bw, string(ws.secret)) == nil {
				if k, err := br.ReadByte(); err == nil && k == 'K' {
					req := &wire.Request{Target: "/", Header: http.Header{HeaderRequestID: {"warm-up"}}, Body: []byte("x")}
					if wire.WriteRequest(bw, req) == nil {
						if _, _, err := wire.ReadAnswerHead(br); err == nil {
							io.Copy(io.Discard, wire.NewBodyReader(br))
						}
					}
				}
			}
			c.Close()
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		ws.shutdown(ctx)
		cancel()
	}
}

// parseActivation reads the activation line: JSON {"env": ["K=V", ...]},
// each entry a variable with a non-empty name, no NUL bytes.
func parseActivation(line []byte) ([]string, error) {
	var a struct {
		Env []string `json:"env"`
	}
	if err := json.Unmarshal(line, &a); err != nil {
		return nil, fmt.Errorf("sdk: activation from the node agent is not JSON {\"env\": [...]}: %w", err)
	}
	for _, kv := range a.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("sdk: activation from the node agent holds %q, which is not NAME=value", kv)
		}
	}
	return a.Env, nil
}
