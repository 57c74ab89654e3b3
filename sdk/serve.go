package sdk

import (
	"bufio"
	"context"
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
	"syscall"
	"time"
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
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sdk: cannot listen on %s: %w (is another process using the port?)", addr, err)
	}
	if err := startDirect(ctx, raw, h); err != nil {
		ln.Close()
		return err
	}
	return serve(ctx, ln, wrap(h, maxBody))
}

// serve runs an http.Server on ln until ctx is done and then drains it.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
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
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "sdk: in-flight requests still running after %v; closing their connections\n", shutdownGrace)
		srv.Close()
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
