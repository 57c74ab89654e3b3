package control

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/wire"
)

// wirePool keeps framed connections (package wire) to node agents; each
// carries one invocation at a time, written and read by the caller's own
// goroutine.
type wirePool struct {
	token  string
	dialer net.Dialer

	mu   sync.Mutex // guards idle
	idle map[string][]*wireConn
}

type wireConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newWirePool(token string) *wirePool {
	return &wirePool{token: token, dialer: net.Dialer{Timeout: 5 * time.Second}, idle: make(map[string][]*wireConn)}
}

func (p *wirePool) get(ctx context.Context, addr string) (*wireConn, error) {
	for {
		p.mu.Lock()
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		wc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		if httpx.Alive(wc.c, wc.br) {
			return wc, nil
		}
		wc.c.Close()
	}
	c, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	wc := &wireConn{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriterSize(c, 64<<10)}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wire.WriteHello(wc.bw, p.token); err != nil {
		c.Close()
		return nil, err
	}
	if b, err := wc.br.ReadByte(); err != nil || b != 'K' {
		c.Close()
		return nil, fmt.Errorf("node agent at %s refused the cluster token", addr)
	}
	_ = c.SetDeadline(time.Time{})
	return wc, nil
}

func (p *wirePool) put(addr string, wc *wireConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[addr]) >= 256 {
		wc.c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], wc)
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
	wc, err := p.get(ctx, addr)
	if err != nil {
		return 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = wc.c.SetDeadline(time.Now()) })
	fail := func(err error) (int, int64, error) {
		stop()
		wc.c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return 0, 0, err
	}
	if err := wire.WriteRequest(wc.bw, req); err != nil {
		return fail(err)
	}
	status, h, err := wire.ReadAnswerHead(wc.br)
	if err != nil {
		return fail(err)
	}
	httpx.CopyHeaders(w.Header(), h)
	w.WriteHeader(status)
	body := wire.NewBodyReader(wc.br)
	out, err = io.Copy(w, body)
	if stop() && err == nil && body.Complete() {
		p.put(addr, wc)
		return status, out, nil
	}
	wc.c.Close()
	panic(http.ErrAbortHandler) // the client must not take a cut body for a whole one
}
