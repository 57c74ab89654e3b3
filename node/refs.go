package node

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/ref"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/xfer"
)

// peekMax is how much of a body of unknown length the agent reads before it
// decides: a body that ends within it travels inline, one that goes on is
// buffered and passed by reference.
const peekMax = 64 << 10

// refKeyring derives the cluster's reference key from the cluster token,
// so every member signs and verifies with the same key without another
// secret to distribute. Key id 1; rotating the token rotates the key.
func refKeyring(token string) (*ref.Keyring, error) {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("handoff reference key v1"))
	k := ref.NewKeyring()
	if err := k.Add(1, m.Sum(nil)); err != nil {
		return nil, err
	}
	return k, k.Use(1)
}

// peek reads up to peekMax bytes of a body of unknown length; when the body
// ends within them its length becomes known. It returns the body to read
// from then on (the peeked bytes first).
func peek(body io.ReadCloser, size int64) (io.ReadCloser, int64) {
	if size >= 0 || body == nil || body == http.NoBody {
		return body, size
	}
	br := bufio.NewReaderSize(body, peekMax+1)
	b, err := br.Peek(peekMax + 1)
	if err == io.EOF {
		size = int64(len(b))
	}
	return struct {
		io.Reader
		io.Closer
	}{br, body}, size
}

// byRef decides whether a body from one function to another travels by
// reference, and if so buffers it and returns the token; "" means inline.
func (a *Agent) byRef(ctx context.Context, body io.Reader, size int64, from, to string) (string, error) {
	if a.refs == nil || to == "" {
		return "", nil
	}
	mode, _, err := a.policy.Choose(xfer.Edge{From: from, To: to, Size: size})
	if err != nil || mode != xfer.Ref {
		return "", err
	}
	issuer := from
	if issuer == "" {
		issuer = "client"
	}
	tok, info, err := a.refs.Put(ctx, body, size, refpass.Options{Issuer: issuer, Readers: []string{to}, Reads: 1})
	if err != nil {
		return "", err
	}
	a.metrics.bytes.WithLabelValues(string(xfer.Ref), "out").Add(float64(info.Size))
	return tok, nil
}

// refRequest swaps a request body for a reference when it is large enough.
// The body is read to the end before the request goes on.
func (a *Agent) refRequest(r *http.Request, from, to string) (*http.Request, error) {
	body, size := peek(r.Body, r.ContentLength)
	r.Body, r.ContentLength = body, size
	tok, err := a.byRef(r.Context(), body, size, from, to)
	if err != nil || tok == "" {
		return r, err
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = http.NoBody, 0
	r2.Header.Set(refpass.HeaderRef, tok)
	r2.Header.Del("Content-Length")
	return r2, nil
}

// refAnswer swaps a large response for a reference the caller's node agent
// will pull; caller "" (a client at the gateway) gets the bytes streamed.
func (a *Agent) refAnswer(ctx context.Context, resp *http.Response, fn, caller string) error {
	if caller == "" || resp.Header.Get(refpass.HeaderRef) != "" {
		return nil
	}
	body, size := peek(resp.Body, resp.ContentLength)
	resp.Body, resp.ContentLength = body, size
	tok, err := a.byRef(ctx, body, size, fn, caller)
	if err != nil || tok == "" {
		return err
	}
	resp.Body.Close()
	resp.Body, resp.ContentLength = http.NoBody, 0
	resp.Header.Set(refpass.HeaderRef, tok)
	resp.Header.Set("Content-Length", "0")
	resp.Header.Del("Content-Type")
	return nil
}

// deref replaces a reference in h (a request's or an answer's headers) by
// the payload it names, opened for reader. ok is false when h carries none.
func (a *Agent) deref(ctx context.Context, h http.Header, reader string) (p *refpass.Payload, ok bool, err error) {
	tok := h.Get(refpass.HeaderRef)
	if tok == "" {
		return nil, false, nil
	}
	h.Del(refpass.HeaderRef)
	if a.refs == nil {
		return nil, true, fmt.Errorf("%w: node %s does not run reference passing", refpass.ErrUnreachable, a.cfg.ID)
	}
	p, err = a.refs.Open(ctx, tok, reader)
	if err != nil {
		return nil, true, err
	}
	a.metrics.bytes.WithLabelValues(string(xfer.Ref), "in").Add(float64(p.Ref.Size))
	h.Set("Content-Length", strconv.FormatInt(p.Ref.Size, 10))
	return p, true, nil
}

// deliverable is a payload as a request body for an instance. A local
// payload is its buffer's own file, which net/http's transport hands to
// the kernel (sendfile(2)) instead of copying it through this process; the
// payload itself stays open until the caller closes it.
func deliverable(p *refpass.Payload) io.ReadCloser {
	if f := p.File(); f != nil {
		return io.NopCloser(f)
	}
	return io.NopCloser(p)
}

// derefAnswer is the answer hook of a caller's node agent: a reference in
// the answer becomes the bytes, pulled while they are delivered.
func (a *Agent) derefAnswer(ctx context.Context, resp *http.Response, caller string) error {
	p, ok, err := a.deref(ctx, resp.Header, readerName(caller))
	if !ok || err != nil {
		return err
	}
	resp.Body.Close()
	resp.Body, resp.ContentLength = p, p.Ref.Size
	return nil
}

// readerName is the reader a pull is made for: the calling function, or
// "client" for the node-wide socket's anonymous callers.
func readerName(fn string) string {
	if fn == "" {
		return "client"
	}
	return fn
}

// writeRefError answers a failed reference operation with its stable code.
func writeRefError(w http.ResponseWriter, err error) {
	status, code := refpass.Status(err)
	httpx.WriteError(w, status, code, err.Error())
}

// isRefError reports whether err came from reference passing (as opposed
// to the next hop failing).
func isRefError(err error) bool {
	_, code := refpass.Status(err)
	return code != "internal"
}

// parseScope reads a reference's scope from the local API's query:
// readers=a,b (or *), reads=N, ttl=10m.
func parseScope(q map[string][]string, issuer string) (refpass.Options, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o := refpass.Options{Issuer: issuer}
	if s := get("readers"); s != "" {
		o.Readers = strings.Split(s, ",")
	}
	if s := get("reads"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return o, fmt.Errorf("%w: reads=%q: give a whole number of at least 1", ref.ErrInvalid, s)
		}
		o.Reads = uint32(n)
	}
	if s := get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("%w: ttl=%q: give a duration such as 30s or 10m", ref.ErrInvalid, s)
		}
		o.TTL = d
	}
	return o, nil
}
