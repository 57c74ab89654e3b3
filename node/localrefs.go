package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/ref"
	"github.com/handoff-dev/handoff/refpass"
)

// PutResult answers POST /v1/refs on the local API.
type PutResult struct {
	Ref      string `json:"ref"`
	Size     int64  `json:"size"`
	Checksum uint32 `json:"checksum"`
	Expires  int64  `json:"expires"` // Unix seconds
}

// handlePutRef keeps the request body in a node buffer and answers with a
// reference to it, scoped by the query (readers, reads, ttl).
func (a *Agent) handlePutRef(w http.ResponseWriter, r *http.Request, caller string) {
	if a.refs == nil {
		writeRefError(w, fmt.Errorf("%w: node %s does not run reference passing", refpass.ErrUnreachable, a.cfg.ID))
		return
	}
	o, err := parseScope(r.URL.Query(), readerName(caller))
	if err != nil {
		writeRefError(w, err)
		return
	}
	tok, info, err := a.refs.Put(r.Context(), r.Body, r.ContentLength, o)
	if err != nil {
		writeRefError(w, err)
		return
	}
	a.metrics.bytes.WithLabelValues("ref", "out").Add(float64(info.Size))
	httpx.WriteJSON(w, http.StatusCreated, PutResult{Ref: tok, Size: info.Size, Checksum: info.Checksum, Expires: info.Expires.Unix()})
}

// handleGetRef streams the payload of a reference to the calling function,
// pulling it from its holder when it lives on another node.
func (a *Agent) handleGetRef(w http.ResponseWriter, r *http.Request, caller string) {
	if a.refs == nil {
		writeRefError(w, fmt.Errorf("%w: node %s does not run reference passing", refpass.ErrUnreachable, a.cfg.ID))
		return
	}
	p, err := a.refs.Open(r.Context(), r.PathValue("token"), readerName(caller))
	if err != nil {
		writeRefError(w, err)
		return
	}
	defer p.Close()
	a.metrics.bytes.WithLabelValues("ref", "in").Add(float64(p.Ref.Size))
	w.Header().Set("Content-Length", strconv.FormatInt(p.Ref.Size, 10))
	if !p.Ref.Deferred { // a deferred checksum is not known here without a pass over the bytes
		w.Header().Set(refpass.HeaderChecksum, fmt.Sprintf("%08x", p.Ref.Checksum))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, p)
}

// fdSocket serves the descriptor-passing side of an instance's local API on
// a seqpacket socket of its own (package fdpass): "put" adopts a memfd the
// instance filled, "get" hands the instance a descriptor of a payload. Same
// node, no copy: 1 GiB changes hands in microseconds.
//
// Each connection is served by a goroutine waiting in a blocking recvmsg
// (fdpass.Conn), so a request wakes its thread directly rather than
// through the runtime's poller: the wake-up is most of an exchange. The
// cost is a thread per open connection (the SDK keeps a few per instance);
// stop ends them all.
func (a *Agent) fdSocket(path, caller, instance string) (stop func(), err error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("descriptor socket for %s: %w", caller, err)
	}
	var mu sync.Mutex // guards conns and stopped
	conns := map[*fdpass.Conn]bool{}
	stopped := false
	go func() {
		for {
			uc, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			f, err := uc.File() // a blocking duplicate, for fdpass.Conn
			uc.Close()
			if err != nil {
				a.log.Warn("descriptor socket: taking a connection", "function", caller, "err", err)
				continue
			}
			c, err := fdpass.NewConn(f)
			if err != nil {
				a.log.Warn("descriptor socket: taking a connection", "function", caller, "err", err)
				continue
			}
			mu.Lock()
			if stopped {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			go func() {
				a.serveFD(c, caller, instance)
				// Leave the set before closing, so that stop never shuts
				// down a descriptor number already reused.
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	return func() {
		ln.Close()
		os.Remove(path)
		mu.Lock()
		stopped = true
		for c := range conns {
			c.Shutdown() // its goroutine's Recv returns io.EOF
		}
		mu.Unlock()
	}, nil
}

// serveFD answers c's requests, one at a time, until the instance hangs up
// or sends something malformed.
func (a *Agent) serveFD(c *fdpass.Conn, caller, instance string) {
	for {
		var req fdpass.Request
		f, err := c.Recv(&req)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = c.Send(fdResponse(err), nil)
			}
			return
		}
		var resp fdpass.Response
		var out *os.File
		var release io.Closer // what keeps out open until it is sent
		if req.Op == "task" || req.Op == "port" {
			if f != nil {
				f.Close()
			}
			resp, out = a.runs.fdRequest(req, instance)
			if out != nil {
				release = out
			}
		} else {
			resp, out, release = a.fdRequest(req, f, caller)
		}
		// sendmsg gives the instance its own reference to out's file, so
		// it may close as soon as the answer is sent.
		err = c.Send(resp, out)
		if release != nil {
			release.Close()
		}
		if err != nil {
			return
		}
	}
}

// fdRequest answers a "put" or a "get". The answer's descriptor, if any,
// stays valid until release is closed.
func (a *Agent) fdRequest(req fdpass.Request, f *os.File, caller string) (_ fdpass.Response, out *os.File, release io.Closer) {
	if a.refs == nil {
		if f != nil {
			f.Close()
		}
		return fdResponse(fmt.Errorf("%w: node %s does not run reference passing", refpass.ErrUnreachable, a.cfg.ID)), nil, nil
	}
	switch req.Op {
	case "put":
		if f == nil {
			return fdResponse(fmt.Errorf("%w: a put must carry the memfd holding the payload", ref.ErrInvalid)), nil, nil
		}
		o := refpass.Options{Issuer: readerName(caller), Readers: req.Readers, Reads: req.Reads, TTL: time.Duration(req.TTLMillis) * time.Millisecond}
		sum := &req.Checksum
		if req.Deferred {
			sum = nil
		}
		tok, info, err := a.refs.Adopt(f, req.Size, sum, o)
		if err != nil {
			return fdResponse(err), nil, nil
		}
		a.metrics.bytes.WithLabelValues("ref", "out").Add(float64(info.Size))
		return fdpass.Response{Ref: tok, Size: info.Size, Checksum: info.Checksum, Expires: info.Expires.Unix()}, nil, nil
	case "get":
		if f != nil {
			f.Close()
		}
		return a.fdGet(req.Ref, caller)
	}
	if f != nil {
		f.Close()
	}
	return fdResponse(fmt.Errorf("%w: unknown op %q; use put or get", ref.ErrInvalid, req.Op)), nil, nil
}

// fdGet answers a get with a read-only descriptor of the payload: the
// holder's own buffer when it is here, else a local copy pulled from the
// holder first (a mapping needs local memory). The descriptor is the
// buffer reader's own, passed as it is (no dup): release closes the read
// once the answer is sent.
func (a *Agent) fdGet(token, caller string) (fdpass.Response, *os.File, io.Closer) {
	// Fetch lands a payload held elsewhere in this node's store first (one
	// pass, checked), so the payload always has a descriptor.
	p, err := a.refs.Fetch(a.ctx, token, readerName(caller))
	if err != nil {
		return fdResponse(err), nil, nil
	}
	a.metrics.bytes.WithLabelValues("ref", "in").Add(float64(p.Ref.Size))
	resp := fdpass.Response{Size: p.Ref.Size, Checksum: p.Ref.Checksum, Deferred: p.Ref.Deferred, Expires: p.Ref.Expires.Unix()}
	return resp, p.File(), p
}

func fdResponse(err error) fdpass.Response {
	_, code := refpass.Status(err)
	return fdpass.Response{Code: code, Error: err.Error()}
}
