package control

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/wire"
)

// wirePool keeps framed connections (package wire) to node agents; each
// carries one invocation at a time, written and read by the caller's own
// goroutine.
type wirePool struct {
	httpx.Pool
}

func newWirePool(token string) *wirePool {
	return &wirePool{httpx.Pool{Dial: func(ctx context.Context, addr string) (*httpx.Conn, error) {
		return dialWire(ctx, addr, token, "node agent")
	}}}
}

// newDirectPool keeps framed connections straight to SDK instances. A key
// is "ADDR SECRET": each instance has a secret of its own, which opens its
// connections (the cluster token never goes to an instance).
func newDirectPool() *wirePool {
	return &wirePool{httpx.Pool{Dial: func(ctx context.Context, key string) (*httpx.Conn, error) {
		addr, secret, _ := strings.Cut(key, " ")
		return dialWire(ctx, addr, secret, "instance")
	}}}
}

// dialError is a failure to open a connection: nothing was sent.
type dialError struct{ err error }

func (e dialError) Error() string { return e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

func dialWire(ctx context.Context, addr, secret, who string) (*httpx.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError{err}
	}
	wc := &httpx.Conn{C: c, R: bufio.NewReaderSize(c, 64<<10), W: bufio.NewWriterSize(c, 64<<10)}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wire.WriteHello(wc.W, secret); err != nil {
		c.Close()
		return nil, dialError{err}
	}
	if b, err := wc.R.ReadByte(); err != nil || b != 'K' {
		c.Close()
		return nil, dialError{fmt.Errorf("%s at %s refused the connection's secret", who, addr)}
	}
	_ = c.SetDeadline(time.Time{})
	return wc, nil
}

// forward sends one small invocation over the wire to the node agent at addr
// and streams the answer into w. An error means nothing was written to w, so
// the caller may answer itself. If the answer breaks off after it began,
// forward aborts the client's connection, so a cut body is never taken for a
// whole one.
func (p *wirePool) forward(ctx context.Context, w http.ResponseWriter, addr string, req *wire.Request) (status int, out int64, err error) {
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(node.HeaderDeadline, strconv.FormatInt(dl.UnixNano(), 10))
	}
	wc, err := p.Get(ctx, addr)
	if err != nil {
		return 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = wc.C.SetDeadline(time.Now()) })
	fail := func(err error) (int, int64, error) {
		stop()
		wc.C.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return 0, 0, err
	}
	if err := wire.WriteRequest(wc.W, req); err != nil {
		return fail(err)
	}
	status, h, err := wire.ReadAnswerHead(wc.R)
	if err != nil {
		return fail(err)
	}
	httpx.CopyHeaders(w.Header(), h)
	w.WriteHeader(status)
	body := wire.NewBodyReader(wc.R)
	out, err = body.WriteTo(w) // from the connection's buffer, no copy buffer
	if stop() && err == nil && body.Complete() {
		p.Put(addr, wc)
		return status, out, nil
	}
	wc.C.Close()
	panic(http.ErrAbortHandler) // the client must not take a cut body for a whole one
}
