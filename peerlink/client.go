package peerlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Client makes pulls and adoptions, keeping idle connections per address.
// It is safe for concurrent use; each request has a connection to itself.
type Client struct {
	TLS   *tls.Config // the member's client configuration (pki.Member.ClientConfig)
	Clear bool        // accept and send clear payloads when the other end allows

	mu   sync.Mutex // guards idle
	idle map[string][]*conn
}

// MaxIdle is how many idle connections the client keeps per address: a
// gather pulls that many payloads from one holder at once without dialing.
const MaxIdle = 16

type conn struct {
	raw net.Conn
	tc  *tls.Conn
}

func (c *Client) get(ctx context.Context, addr string) (*conn, bool, error) {
	c.mu.Lock()
	if l := c.idle[addr]; len(l) > 0 {
		cn := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		return cn, true, nil
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	tc := tls.Client(raw, c.TLS)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, false, err
	}
	return &conn{raw: raw, tc: tc}, false, nil
}

func (c *Client) put(addr string, cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		c.idle = map[string][]*conn{}
	}
	if len(c.idle[addr]) >= MaxIdle {
		cn.raw.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], cn)
}

// CloseIdle closes the idle connections to addr ("" for all).
func (c *Client) CloseIdle(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, l := range c.idle {
		if addr == "" || a == addr {
			for _, cn := range l {
				cn.raw.Close()
			}
			delete(c.idle, a)
		}
	}
}

// exchange sends req and reads the answer on a pooled connection, retrying
// once on a fresh one when a reused connection turns out dead.
func (c *Client) exchange(ctx context.Context, addr string, req Request) (*conn, Answer, func() bool, error) {
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx, addr)
		if err != nil {
			return nil, Answer{}, nil, err
		}
		stop := context.AfterFunc(ctx, func() { cn.raw.SetDeadline(time.Unix(1, 0)) })
		var ans Answer
		err = writeFrame(cn.tc, req)
		if err == nil {
			err = readFrame(cn.tc, &ans)
		}
		if err != nil {
			stop()
			cn.raw.Close()
			if reused && attempt == 0 && ctx.Err() == nil && !errors.Is(err, ErrMalformed) {
				continue
			}
			if ctx.Err() != nil {
				return nil, Answer{}, nil, ctx.Err()
			}
			return nil, Answer{}, nil, err
		}
		return cn, ans, stop, nil
	}
}

// Pull asks the member at addr for one read of the payload behind ref on
// behalf of reader. The body must be read to its end (Size bytes) or
// closed; an error answer is a *RemoteError. The payload's checksum is
// Answer.Checksum, or, when Answer.Trailer is set, Body.Checksum once the
// body was read to its end.
func (c *Client) Pull(ctx context.Context, addr, ref, reader string) (*Body, Answer, error) {
	cn, ans, stop, err := c.exchange(ctx, addr, Request{Op: "pull", Ref: ref, Reader: reader, Clear: c.Clear, Trailer: true})
	if err != nil {
		return nil, Answer{}, err
	}
	if ans.Code != "" {
		c.release(addr, cn, stop, true)
		return nil, ans, &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	if ans.Size < 0 {
		c.release(addr, cn, stop, false)
		return nil, ans, fmt.Errorf("%w: negative size %d", ErrMalformed, ans.Size)
	}
	var src io.Reader = cn.tc
	if ans.Clear {
		if _, err := cn.tc.Write([]byte{'G'}); err != nil {
			c.release(addr, cn, stop, false)
			return nil, ans, err
		}
		src = cn.raw
	}
	b := &Body{c: c, addr: addr, cn: cn, stop: stop, src: src, left: ans.Size, trailer: ans.Trailer, sum: ans.Checksum}
	if ans.Size == 0 {
		if err := b.end(); err != nil {
			return nil, ans, err
		}
	}
	return b, ans, nil
}

// Take asks the member at addr to account one read of the payload behind
// ref for reader without sending it, and returns how many reads are left.
// An error answer is a *RemoteError (code "bad_request" from a holder that
// does not know take).
func (c *Client) Take(ctx context.Context, addr, ref, reader string) (readsLeft uint32, err error) {
	cn, ans, stop, err := c.exchange(ctx, addr, Request{Op: "take", Ref: ref, Reader: reader})
	if err != nil {
		return 0, err
	}
	c.release(addr, cn, stop, true)
	if ans.Code != "" {
		return 0, &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	return ans.ReadsLeft, nil
}

// Body is a pulled payload arriving.
type Body struct {
	c       *Client
	addr    string
	cn      *conn
	stop    func() bool
	src     io.Reader
	left    int64
	done    bool
	trailer bool   // the checksum follows the payload
	sum     uint32 // the checksum, once known
}

// Checksum is the payload's CRC-32C as the holder gives it: from its
// answer, or from the trailer once the body was read to its end (0 before).
func (b *Body) Checksum() uint32 { return b.sum }

// Read reads the payload; io.EOF after Size bytes. The Read that returns
// the last bytes also reads the trailer, and fails if it does not come.
func (b *Body) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.src.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		return n, b.end()
	}
	if err == io.EOF {
		err = fmt.Errorf("peer closed the connection %d bytes before the end of the payload: %w", b.left, io.ErrUnexpectedEOF)
	}
	if err != nil {
		b.finish(false)
	}
	return n, err
}

// end finishes a payload read in full: it reads the trailer, if one
// follows, and gives the connection back.
func (b *Body) end() error {
	if b.done {
		return nil
	}
	if b.trailer {
		var t Answer
		if err := readFrame(b.cn.tc, &t); err != nil {
			b.finish(false)
			return fmt.Errorf("peerlink: the payload's checksum did not follow it: %w", err)
		}
		if t.Code != "" {
			b.finish(true)
			return &RemoteError{Code: t.Code, Message: t.Error}
		}
		b.sum = t.Checksum
	}
	b.finish(true)
	return nil
}

// WriteTo lets an *os.File take a clear payload straight from the socket
// with splice(2).
func (b *Body) WriteTo(w io.Writer) (int64, error) {
	if f, ok := w.(*os.File); ok && b.src == b.cn.raw && !b.done {
		lr := &io.LimitedReader{R: b.cn.raw, N: b.left}
		n, err := f.ReadFrom(lr)
		b.left = lr.N
		if err == nil && b.left > 0 {
			err = fmt.Errorf("peer closed the connection %d bytes before the end of the payload: %w", b.left, io.ErrUnexpectedEOF)
		}
		if err == nil {
			return n, b.end()
		}
		b.finish(false)
		return n, err
	}
	return copyBig(w, struct{ io.Reader }{b})
}

// Close gives the connection back when the payload was read in full, and
// drops it otherwise.
func (b *Body) Close() error {
	b.finish(b.left == 0 && !b.trailer)
	return nil
}

func (b *Body) finish(ok bool) {
	if b.done {
		return
	}
	b.done = true
	b.c.release(b.addr, b.cn, b.stop, ok)
}

// release ends a request on cn: back to the pool when it went well and the
// context did not fire meanwhile (which sets a deadline in the past),
// closed otherwise.
func (c *Client) release(addr string, cn *conn, stop func() bool, ok bool) {
	if !stop() {
		ok = false
	}
	if ok {
		c.put(addr, cn)
	} else {
		cn.raw.Close()
	}
}

// Adopt hands the member at addr a buffer (req describes it, body gives
// req.Size bytes; f, when not nil, is body's descriptor for sendfile).
func (c *Client) Adopt(ctx context.Context, addr string, req Request, body io.Reader, f *os.File) error {
	req.Op, req.Clear = "adopt", c.Clear
	cn, ans, stop, err := c.exchange(ctx, addr, req)
	if err != nil {
		return err
	}
	if ans.Code != "" {
		c.release(addr, cn, stop, true)
		return &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	var n int64
	switch {
	case ans.Clear && f != nil:
		n, err = cn.raw.(io.ReaderFrom).ReadFrom(&io.LimitedReader{R: f, N: req.Size})
	case ans.Clear:
		n, err = copyBig(cn.raw, io.LimitReader(body, req.Size))
	default:
		n, err = copyBig(cn.tc, io.LimitReader(body, req.Size))
	}
	if err == nil && n != req.Size {
		err = fmt.Errorf("adopt: body gave %d of %d bytes: %w", n, req.Size, io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = readFrame(cn.tc, &ans)
	}
	c.release(addr, cn, stop, err == nil)
	if err != nil {
		return err
	}
	if ans.Code != "" {
		return &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	return nil
}

// Stream opens a workflow stream to the member at addr on a pooled
// connection, which the stream then keeps to itself until it ends. Write
// the stream's bytes to the returned connection and end them with
// CloseWrite; Close abandons the stream. An error answer is a *RemoteError.
func (c *Client) Stream(ctx context.Context, addr string, req Request) (*StreamConn, error) {
	req.Op, req.Clear = "stream", c.Clear
	cn, ans, stop, err := c.exchange(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	stop()
	if ans.Code != "" {
		cn.raw.Close()
		return nil, &RemoteError{Code: ans.Code, Message: ans.Error}
	}
	cn.raw.SetDeadline(time.Time{})
	if ans.Clear {
		return &StreamConn{Conn: cn.raw, raw: cn.raw}, nil
	}
	return &StreamConn{Conn: cn.tc, raw: cn.raw}, nil
}

// StreamConn is the sending end of a stream: the TCP socket itself when
// the stream travels in the clear (so that a pipe can be spliced into it),
// else the TLS connection.
type StreamConn struct {
	net.Conn
	raw net.Conn
}

// CloseWrite ends the stream: the receiver reads EOF after the last byte.
func (s *StreamConn) CloseWrite() error {
	if tc, ok := s.Conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	if cw, ok := s.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close abandons the stream (or releases it after CloseWrite).
func (s *StreamConn) Close() error { return s.raw.Close() }
