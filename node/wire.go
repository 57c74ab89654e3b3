package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/wire"
)

// HeaderDeadline carries the gateway's deadline for a wire invocation, in
// Unix nanoseconds, so the agent can give up on the instance when the gateway
// has (the connection has no goroutine watching it for a close).
const HeaderDeadline = "X-Handoff-Deadline"

// serveWire accepts framed invocations from the gateway (package wire) until
// the listener closes.
func (a *Agent) serveWire() {
	for {
		c, err := a.wireLn.Accept()
		if err != nil {
			return
		}
		go a.wireConn(c)
	}
}

// wireConn serves one gateway connection: after the hello, one goroutine
// reads a request, proxies it to the instance and writes the answer, again
// and again.
func (a *Agent) wireConn(c net.Conn) {
	defer c.Close()
	br, bw := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	tok, err := wire.ReadHello(br)
	if err != nil || !httpx.HasToken(http.Header{httpx.HeaderToken: {tok}}, a.cfg.Token) {
		return // not our cluster: say nothing
	}
	_ = c.SetReadDeadline(time.Time{})
	bw.WriteByte('K')
	if bw.Flush() != nil {
		return
	}
	for {
		req, err := wire.ReadRequest(br)
		if err != nil {
			return
		}
		if err := a.wireInvoke(req, bw); err != nil {
			return
		}
	}
}

// wireInvoke proxies one framed request to its instance and writes the
// answer; an error means the connection is unusable.
func (a *Agent) wireInvoke(req *wire.Request, bw *bufio.Writer) error {
	fn := req.Header.Get(httpx.HeaderFunction)
	inst := a.instance(req.Target)
	if inst == nil || !inst.Begin() {
		return wireError(bw, http.StatusServiceUnavailable, "instance_gone", "instance "+req.Target+" is not serving on node "+a.cfg.ID+"; the gateway retries elsewhere")
	}
	defer inst.End()
	ctx := context.Background()
	if ns, err := strconv.ParseInt(req.Header.Get(HeaderDeadline), 10, 64); err == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, ns))
		defer cancel()
	}
	req.Header.Del(HeaderDeadline)
	req.Header.Del(httpx.HeaderToken) // the cluster token never reaches an instance
	start := time.Now()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.Addr()+"/", bytes.NewReader(req.Body))
	if err != nil {
		return wireError(bw, http.StatusBadRequest, "bad_request", err.Error())
	}
	hreq.Header = req.Header
	hreq.ContentLength = int64(len(req.Body))
	// A reference in place of the body (see handleInvoke).
	p, ok, err := a.deref(ctx, hreq.Header, fn)
	if err != nil {
		status, code := refpass.Status(err)
		return wireError(bw, status, code, err.Error())
	}
	if ok {
		defer p.Close()
		hreq.Body, hreq.ContentLength = deliverable(p), p.Ref.Size
	}
	caller := req.Header.Get(httpx.HeaderCaller)
	resp, err := a.toInst.RoundTrip(hreq)
	if err == nil {
		if rerr := a.refAnswer(ctx, resp, fn, caller); rerr != nil {
			resp.Body.Close()
			status, code := refpass.Status(rerr)
			return wireError(bw, status, code, rerr.Error())
		}
	}
	if err != nil {
		msg := fmt.Sprintf("function %s instance %s on node %s failed: %v", fn, req.Target, a.cfg.ID, err)
		if exit := exitAfterFailure(inst); exit != "" {
			msg += "; the instance exited: " + exit + " (see `handoff logs " + fn + "`)"
		}
		a.metrics.observeInvoke(fn, http.StatusBadGateway, time.Since(start), int64(len(req.Body)), 0)
		return wireError(bw, http.StatusBadGateway, "instance_failed", msg)
	}
	defer resp.Body.Close()
	h := http.Header{}
	httpx.CopyHeaders(h, resp.Header)
	if err := wire.WriteAnswerHead(bw, resp.StatusCode, h); err != nil {
		return err
	}
	body := wire.NewBodyWriter(bw)
	out, err := httpx.Copy(body, resp.Body)
	a.metrics.observeInvoke(fn, resp.StatusCode, time.Since(start), int64(len(req.Body)), out)
	if err != nil {
		var werr *net.OpError
		if errors.As(err, &werr) && werr.Op == "write" {
			return err // the gateway went away
		}
		return body.Abort(fmt.Sprintf("function %s instance %s broke off its answer: %v", fn, req.Target, err))
	}
	return body.Close()
}

// wireError answers with a JSON error body, as the HTTP paths do.
func wireError(bw *bufio.Writer, status int, code, msg string) error {
	var b bytes.Buffer
	rec := &bufferWriter{h: http.Header{}, b: &b}
	httpx.WriteError(rec, status, code, msg)
	if err := wire.WriteAnswerHead(bw, status, rec.h); err != nil {
		return err
	}
	body := wire.NewBodyWriter(bw)
	body.Write(b.Bytes())
	return body.Close()
}

// bufferWriter is the least http.ResponseWriter that WriteError needs.
type bufferWriter struct {
	h http.Header
	b *bytes.Buffer
}

func (w *bufferWriter) Header() http.Header         { return w.h }
func (w *bufferWriter) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w *bufferWriter) WriteHeader(int)             {}

// Direct is where an instance built with the SDK serves the gateway's
// framed protocol itself, and the secret that opens a connection to it. The
// agent makes both at each start and tells only the control plane (in the
// answer to the start, over the cluster-token API); the instance gets them
// in $HANDOFF_WIRE and $HANDOFF_WIRE_SECRET. A program that does not serve
// there (any plain HTTP function) simply refuses the connection, and the
// gateway goes through this agent instead.
type Direct struct {
	Addr   string `json:"addr"`
	Secret string `json:"secret"`
}

// directFor picks a framed address on the host of the agent's own wire
// listener (which the gateway reaches) and a fresh secret, and returns them
// with the environment that hands them to the instance.
func (a *Agent) directFor() (*Direct, []string, error) {
	host, _, err := net.SplitHostPort(a.wireLn.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: pick a framed port for the instance: %w", a.cfg.ID, err)
	}
	addr := l.Addr().String()
	l.Close()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, nil, err
	}
	d := &Direct{Addr: addr, Secret: hex.EncodeToString(b[:])}
	return d, []string{"HANDOFF_WIRE=" + d.Addr, "HANDOFF_WIRE_SECRET=" + d.Secret}, nil
}
