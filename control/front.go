package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// front serves the gateway's connections. Invocations (POST /fn/{name}) are
// answered by the connection's own goroutine, which reads the request,
// forwards it and writes the answer; net/http would hand each request
// between a reading goroutine, the handler and a background reader, and on a
// small invocation those wake-ups cost more than the network. Any other
// request hands its connection, with the bytes already buffered, to
// net/http's server for the rest of its life.
type front struct {
	s       *Server
	ln      net.Listener
	handoff *chanListener

	mu      sync.Mutex        // guards conns and closing
	conns   map[net.Conn]bool // open connections; true while waiting for a request
	closing bool
	active  sync.WaitGroup // requests being served
}

// frontIdle bounds how long a kept-alive connection may wait for its next
// request.
const frontIdle = 2 * time.Minute

func newFront(s *Server, ln net.Listener) *front {
	return &front{s: s, ln: ln, handoff: newChanListener(ln.Addr()), conns: make(map[net.Conn]bool)}
}

func (f *front) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.conn(c)
	}
}

// setIdle records whether c waits for a request, and reports false once the
// front is closing (an idle connection should then close).
func (f *front) setIdle(c net.Conn, idle bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[c] = idle
	return !f.closing
}

// begin marks c busy with a request and counts it as active; false once the
// front is closing.
func (f *front) begin(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.conns[c] = false
	f.active.Add(1)
	return true
}

func (f *front) forget(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// shutdown stops accepting, wakes idle connections so they close, and waits
// for the requests being served, up to ctx.
func (f *front) shutdown(ctx context.Context) {
	f.ln.Close()
	f.mu.Lock()
	f.closing = true
	for c, idle := range f.conns {
		if idle {
			_ = c.SetReadDeadline(time.Now()) // wakes it from waiting
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (f *front) conn(c net.Conn) {
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 16<<10)
	handed := false
	defer func() {
		f.forget(c)
		if !handed {
			c.Close()
		}
	}()
	for {
		if !f.setIdle(c, true) {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(frontIdle))
		if !isInvocation(br) {
			// Not ours (or not HTTP): net/http takes the connection, with
			// what is buffered, for the rest of its life.
			_ = c.SetReadDeadline(time.Time{})
			handed = f.handoff.give(&bufferedConn{Conn: c, r: br})
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if !f.begin(c) {
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return
		}
		keep := f.invoke(c, req, bw)
		f.active.Done()
		if !keep {
			return
		}
	}
}

// isInvocation peeks at the request line: is it POST /fn/...?
func isInvocation(br *bufio.Reader) bool {
	const want = "POST /fn/"
	b, err := br.Peek(len(want))
	return err == nil && string(b) == want
}

// invoke serves one invocation and reports whether the connection can carry
// another.
func (f *front) invoke(c net.Conn, req *http.Request, bw *bufio.Writer) (keep bool) {
	name, ok := strings.CutPrefix(req.URL.Path, "/fn/")
	if !ok || name == "" || strings.Contains(name, "/") {
		name = "" // the handler answers not-deployed for a bad name
	}
	req.SetPathValue("name", name)
	req.RemoteAddr = c.RemoteAddr().String()
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if bw.Flush() != nil {
			return false
		}
	}
	body := &eofReader{r: req.Body, left: req.ContentLength} // the handler may wrap req.Body; this sees the end
	req.Body = body
	w := &frontWriter{bw: bw, header: http.Header{}, method: req.Method, bodyDone: body.finish, closeAfter: req.Close}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				f.s.log.Error("invocation handler panicked", "panic", p)
			}
			keep = false
		}
	}()
	f.s.handleInvoke(w, req)
	if err := w.finish(); err != nil {
		return false
	}
	// An answer that began before the body was read to its end said
	// "Connection: close": the rest of the body is not read.
	return !w.close
}

// frontWriter is an http.ResponseWriter over the connection's writer:
// Content-Length when the handler set one, else chunked.
type frontWriter struct {
	bw         *bufio.Writer
	header     http.Header
	method     string
	bodyDone   func() bool // is the request body read to its end (after reading a small rest)?
	closeAfter bool        // the client asked to close
	status     int
	chunked    bool
	close      bool
	err        error
}

func (w *frontWriter) Header() http.Header { return w.header }

func (w *frontWriter) WriteHeader(code int) {
	if w.status != 0 || code < 100 {
		return
	}
	w.status = code
	h := w.header
	if h.Get("Content-Length") == "" && code != http.StatusNoContent && code != http.StatusNotModified {
		w.chunked = true
		h.Set("Transfer-Encoding", "chunked")
	}
	if w.closeAfter || !w.bodyDone() {
		// Unread request bytes would be taken for the next request.
		h.Set("Connection", "close")
		w.close = true
	}
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	fmt.Fprintf(w.bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	w.err = h.Write(w.bw)
	w.bw.WriteString("\r\n")
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.chunked {
		fmt.Fprintf(w.bw, "%x\r\n", len(p))
	}
	n, err := w.bw.Write(p)
	if w.chunked && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what is buffered (http.Flusher), for streamed answers.
func (w *frontWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// finish ends the answer and flushes it.
func (w *frontWriter) finish() error {
	if w.status == 0 {
		w.header.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.bw.WriteString("0\r\n\r\n")
	}
	if w.err != nil {
		return w.err
	}
	if cl := w.header.Get("Content-Length"); cl != "" {
		if _, err := strconv.ParseInt(cl, 10, 64); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// eofReader notes when a request body has been read to its end: all of a
// known length, or EOF. A transport's goroutine may still be reading the body
// when the handler begins its answer, hence the mutex.
type eofReader struct {
	mu   sync.Mutex // guards all following fields, held across a Read
	r    io.ReadCloser
	left int64 // bytes of a known length still unread; -1 if unknown
	eof  bool
}

// finish reads a small known-length rest of the body (so the connection can
// carry the next request) and reports whether the body is done.
func (e *eofReader) finish() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.eof && e.left > 0 && e.left <= 64<<10 {
		n, _ := io.Copy(io.Discard, io.LimitReader(e.r, e.left))
		e.left -= n
	}
	return e.eof || e.left == 0
}

func (e *eofReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eof {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if e.left > 0 {
		e.left -= int64(n)
	}
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func (e *eofReader) Close() error { return e.r.Close() }

// bufferedConn is a connection whose first bytes are already in r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is the net.Listener through which the front hands
// connections to net/http.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
