package httpx

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// FastMax is the largest request body the fast path carries. Such a body fits
// in the socket buffers, so writing it whole before reading the answer can
// never deadlock against a server that answers while it reads.
const FastMax = 64 << 10

// Fast is a pool of HTTP/1.1 keep-alive connections on which a request is
// written and its response read by the caller's own goroutine.
//
// net/http's Transport hands every request to a write goroutine and every
// response to a read goroutine; on a small invocation those hand-offs cost
// more than the network (about 50 µs per hop on a 2-core VM), and the
// invocation path has two hops. Fast serves small requests; Forward falls
// back to the Transport for large or streamed bodies.
type Fast struct {
	pool Pool
}

// NewFast returns an empty pool.
func NewFast() *Fast {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &Fast{pool: Pool{Dial: func(ctx context.Context, addr string) (*Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &Conn{C: c, R: bufio.NewReaderSize(c, 32<<10), W: bufio.NewWriterSize(c, 32<<10)}, nil
	}}}
}

// Alive reports whether an idle pooled connection is still open: the peer may
// have closed it (an instance or node agent restarted) while it sat in the
// pool. It peeks without blocking; a read with a past deadline would not look
// at the socket.
func Alive(c net.Conn, br *bufio.Reader) bool {
	if br.Buffered() > 0 {
		return false // nothing may arrive unasked
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n // 0 bytes: closed; data: out of turn; EAGAIN: open and quiet
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}

// RoundTrip sends req (whose body, if any, must be at most FastMax bytes and
// have a known ContentLength) to req.URL.Host and returns the response. The
// connection goes back to the pool once the body is read to its end; closing
// the body early discards the connection.
func (f *Fast) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	fc, err := f.pool.Get(ctx, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = fc.C.SetDeadline(time.Now()) })
	fail := func(err error) (*http.Response, error) {
		stop()
		fc.C.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := req.Write(fc.W); err != nil {
		return fail(err)
	}
	if err := fc.W.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(fc.R, req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &fastBody{rc: resp.Body, f: f, fc: fc, addr: addr, stop: stop, keep: !resp.Close}
	return resp, nil
}

// fastBody returns its connection to the pool at EOF.
type fastBody struct {
	rc   io.ReadCloser
	f    *Fast
	fc   *Conn
	addr string
	stop func() bool
	keep bool
	done bool
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *fastBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *fastBody) finish(eof bool) {
	b.done = true
	b.rc.Close()
	if b.stop() && eof && b.keep {
		b.f.pool.Put(b.addr, b.fc)
		return
	}
	b.fc.C.Close()
}

// Hybrid routes small requests with a known length to Fast and everything
// else to a standard keep-alive Transport.
type Hybrid struct {
	Fast *Fast
	Std  *http.Transport
}

// NewHybrid returns a Hybrid with fresh pools.
func NewHybrid() *Hybrid { return &Hybrid{Fast: NewFast(), Std: Transport()} }

// RoundTrip implements http.RoundTripper.
func (h *Hybrid) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && req.ContentLength >= 0 && req.ContentLength <= FastMax &&
		(req.ContentLength > 0 || req.Body == nil || req.Body == http.NoBody) {
		return h.Fast.RoundTrip(req)
	}
	return h.Std.RoundTrip(req)
}
