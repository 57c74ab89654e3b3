// Package httpx holds the small HTTP pieces that the gateway and the node agent
// share: the lean forwarding proxy on the invocation path, error replies with a
// stable code, and tuned transports.
package httpx

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Header names that travel with every invocation.
const (
	HeaderRequestID = "X-Handoff-Request-Id"
	HeaderFunction  = "X-Handoff-Function"
	HeaderCaller    = "X-Handoff-Caller"
	HeaderInstance  = "X-Handoff-Instance"
	// HeaderToken carries the cluster token between the control plane and
	// node agents. It is a header of its own, not Authorization, so that a
	// client's Authorization reaches its function untouched; node agents
	// strip it before a request reaches an instance.
	HeaderToken = "X-Handoff-Token"
)

// SetToken marks an internal request with the cluster token.
func SetToken(h http.Header, token string) { h.Set(HeaderToken, token) }

// HasToken reports, in constant time, whether h carries the cluster token.
func HasToken(h http.Header, token string) bool {
	return subtle.ConstantTimeCompare([]byte(h.Get(HeaderToken)), []byte(token)) == 1
}

// Error is the JSON body of every error reply at the edge.
type Error struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// WriteError replies with status and a JSON body naming a stable code and a
// sentence that says what went wrong and what to do.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Error{Code: code, Error: msg})
}

// ParseError reads an error body written by WriteError (or any body):
// its code, and its message (the body itself, or fallback when empty).
func ParseError(body []byte, fallback string) (code, msg string) {
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Code, e.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return "", s
	}
	return "", fallback
}

// WriteJSON replies 200 (or status) with v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Transport returns a keep-alive transport sized for the invocation path: many
// idle connections per host, because every hop talks to few hosts a lot.
func Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}
}

// UnixTransport is Transport dialing the Unix socket at path whatever the URL
// says.
func UnixTransport(path string) *http.Transport {
	t := Transport()
	d := &net.Dialer{Timeout: 5 * time.Second}
	t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}
	return t
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Copy copies src to dst with a pooled 256 KiB buffer, flushing once at the
// end when dst is an http.ResponseWriter. It returns the bytes copied.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1).
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Proxy-Authorization": true, "Proxy-Authenticate": true,
}

// CopyHeaders adds src's end-to-end headers to dst (hop-by-hop ones stay).
func CopyHeaders(dst, src http.Header) {
	for k, vs := range src {
		if !hopHeaders[k] {
			dst[k] = append(dst[k], vs...)
		}
	}
}

// ErrUpstream marks a failure to reach or read from the next hop (as opposed to
// the next hop answering with an error status). errors.Unwrap of such an
// error gives the cause.
var ErrUpstream = errors.New("httpx: upstream failed")

type upstreamError struct{ err error }

func (e upstreamError) Error() string        { return e.err.Error() }
func (e upstreamError) Unwrap() error        { return e.err }
func (e upstreamError) Is(target error) bool { return target == ErrUpstream }

func upstream(err error) error { return upstreamError{err} }

// Upstream marks err as a failure to reach or read from the next hop before
// any answer was written (errors.Is(err, ErrUpstream)).
func Upstream(err error) error { return upstreamError{err} }

// Forward sends r's method, body and end-to-end headers to url over rt, then
// streams the answer back into w. set may add or override headers on the
// outgoing request. It returns the status sent and the bytes of the request
// and response bodies. An error wrapping ErrUpstream means no response was
// written and the caller may reply itself.
func Forward(w http.ResponseWriter, r *http.Request, rt http.RoundTripper, url string, set func(http.Header)) (status int, in, out int64, err error) {
	return ForwardVia(w, r, rt, url, set, nil)
}

// ForwardVia is Forward with a hook on the answer: answer may replace the
// response's body, length and headers before any of it is written (a node
// agent swaps a large body for a reference there, or a reference for the
// bytes it names). An error from answer is returned wrapping ErrUpstream,
// with nothing written.
func ForwardVia(w http.ResponseWriter, r *http.Request, rt http.RoundTripper, url string, set func(http.Header), answer func(*http.Response) error) (status int, in, out int64, err error) {
	// Full duplex lets the answer flow back while the request body is still
	// read. Without it the server's first flush of the answer closes the
	// request body, and net/http's Transport, whose write loop reads the body
	// once more for EOF after sending it all, fails that read and cuts the
	// answer off (the client sees unexpected EOF).
	_ = http.NewResponseController(w).EnableFullDuplex()
	body := &countingReader{r: r.Body}
	defer body.Close()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, url, body)
	if err != nil {
		return 0, 0, 0, upstream(err)
	}
	if r.ContentLength == 0 || r.Body == http.NoBody {
		req.Body = http.NoBody
	}
	req.ContentLength = r.ContentLength
	for k, vs := range r.Header {
		if !hopHeaders[k] {
			req.Header[k] = vs
		}
	}
	if set != nil {
		set(req.Header)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		body.Close()
		return 0, body.count(), 0, upstream(err)
	}
	defer func() { resp.Body.Close() }() // answer may swap the body
	if answer != nil {
		if err := answer(resp); err != nil {
			body.Close()
			return 0, body.count(), 0, upstream(err)
		}
	}
	h := w.Header()
	for k, vs := range resp.Header {
		if !hopHeaders[k] {
			h[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	out, err = Copy(w, resp.Body)
	body.Close()
	return resp.StatusCode, body.count(), out, err
}

// countingReader counts the body bytes forwarded. Close fences it: once it
// returns, no Read of the underlying body is running or will start, so the
// server may drain the body after the handler without racing a transport
// goroutine that still holds it.
type countingReader struct {
	mu     sync.Mutex // guards all following fields, held across a Read
	r      io.Reader
	n      int64
	closed bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// EOF, not an error: a transport that reads once more after the
		// whole body was sent expects exactly that; one that was cut off
		// early sees a short body and drops its connection.
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *countingReader) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
