package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/internal/prefault"
)

// A leased executor ($HANDOFF_LEASE set by the node agent) takes direct
// calls besides HTTP: over TCP on $HANDOFF_DIRECT_HOST, and from its own
// node over a shared-memory ring set up through $HANDOFF_DIRECT_SOCK. The
// same handler serves both paths. The lease holder's token is checked with
// the node agent once per connection.

// RingSetup is the message a client sends on an executor's direct socket
// to get a shared-memory ring (the executor answers with the ring's memfd).
type RingSetup struct {
	Size int `json:"size"` // bytes per direction; 0: the executor's default
}

const defaultRing = 1 << 20

// executor is the running direct side of a leased instance.
type executor struct {
	h     direct.Handler
	index int
	mode  shm.Mode
	hot   time.Duration

	busy        atomic.Int64 // ns in handlers
	invocations atomic.Uint64
	mu          sync.Mutex               // guards conns
	conns       map[poller]time.Duration // connections that poll, by poll time reported
	reportedHot time.Duration
}

// startDirect serves direct calls until ctx is done when this instance is
// a leased executor; it does nothing otherwise.
func startDirect(ctx context.Context, raw Handler, h http.Handler) error {
	if os.Getenv("HANDOFF_LEASE") == "" {
		return nil
	}
	index, _ := strconv.Atoi(os.Getenv("HANDOFF_EXECUTOR"))
	hot, _ := time.ParseDuration(os.Getenv("HANDOFF_HOT_POLL"))
	e := &executor{index: index, hot: hot, conns: map[poller]time.Duration{}}
	switch os.Getenv("HANDOFF_DIRECT_MODE") {
	case "hot":
		e.mode = shm.Hot
	case "warm":
		e.mode = shm.Warm
	default:
		e.mode = shm.Auto
	}
	if e.mode != shm.Warm {
		// A polling executor answers in microseconds, so a page
		// fault on the way is its tail: have the heap resident first.
		prefault.Heap(16 << 20)
	}
	fn := direct.Handler(raw)
	if raw == nil {
		fn = httpHandler(h)
	}
	e.h = func(ctx context.Context, in []byte) ([]byte, error) {
		start := time.Now()
		out, err := fn(ctx, in)
		e.busy.Add(int64(time.Since(start)))
		e.invocations.Add(1)
		return out, err
	}
	host := os.Getenv("HANDOFF_DIRECT_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	tl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("sdk: direct calls: %w", err)
	}
	sock := os.Getenv("HANDOFF_DIRECT_SOCK")
	_ = os.Remove(sock)
	ul, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		tl.Close()
		return fmt.Errorf("sdk: direct calls: %w", err)
	}
	go func() { <-ctx.Done(); tl.Close(); ul.Close() }()
	go e.acceptTCP(ctx, tl)
	go e.acceptUnix(ctx, ul)
	go e.report(ctx)
	return localPost(ctx, "/v1/direct", map[string]string{"tcp": tl.Addr().String()})
}

func (e *executor) config() direct.ServerConfig {
	return direct.ServerConfig{
		Check: func(token string, _ int) error {
			return localPost(context.Background(), "/v1/leases/check", map[string]string{"token": token})
		},
		Deref: deref,
	}
}

// deref reads a call's input by reference, as this function: mapped (no
// copy on the holder's node; pulled here once from another), or read
// through the local API where the descriptor socket is missing.
func deref(ctx context.Context, ref string) ([]byte, func(), error) {
	m, err := Map(ctx, ref)
	if err == nil {
		return m.Bytes(), func() { m.Close() }, nil
	}
	if !errors.Is(err, ErrNoFD) {
		return nil, nil, err
	}
	b, err := Get(ctx, ref)
	return b, func() {}, err
}

func (e *executor) acceptTCP(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		go e.serveTCP(ctx, c)
	}
}

// poller is a connection that busy-polls and counts the time it spent so.
type poller interface{ PollTime() time.Duration }

// serveTCP serves one client over TCP. A hot executor busy-polls its
// socket as it does a ring (for as long as the mode says), so a call
// costs no wake-up of a sleeping thread.
func (e *executor) serveTCP(ctx context.Context, c net.Conn) {
	var spin time.Duration
	switch e.mode {
	case shm.Hot:
		spin = -1
	case shm.Auto:
		spin = e.hot
		if spin <= 0 {
			spin = shm.DefaultHot
		}
	}
	conn := direct.NewTCPConn(c, direct.TCPOptions{Batch: true, Spin: spin})
	e.serve(ctx, conn, conn)
}

// serve serves conn, counting the time p spends polling.
func (e *executor) serve(ctx context.Context, conn direct.Conn, p poller) {
	e.mu.Lock()
	e.conns[p] = 0
	e.mu.Unlock()
	_ = direct.Serve(ctx, conn, e.config(), e.h)
	e.mu.Lock()
	e.reportedHot += p.PollTime() - e.conns[p]
	delete(e.conns, p)
	e.mu.Unlock()
}

func (e *executor) acceptUnix(ctx context.Context, ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go e.ring(ctx, c)
	}
}

// ring sets up a shared-memory ring for a client on this node and serves
// it; the socket stays open as the client's sign of life.
func (e *executor) ring(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	var req RingSetup
	if f, err := fdpass.Recv(c, &req); err != nil {
		return
	} else if f != nil {
		f.Close()
	}
	size := req.Size
	if size <= 0 {
		size = defaultRing
	}
	f, err := shm.New(size)
	if err != nil {
		_ = fdpass.Send(c, fdpass.Response{Code: "ring_failed", Error: err.Error()}, nil)
		return
	}
	defer f.Close()
	opts := shm.Options{Mode: e.mode, Hot: e.hot}
	if pid := peerPID(c); pid > 0 {
		if p, err := shm.WatchProcess(pid); err == nil {
			defer p.Close()
			opts.Alive = p.Alive
		}
	}
	conn, err := shm.Open(f, shm.Executor, opts)
	if err != nil {
		_ = fdpass.Send(c, fdpass.Response{Code: "ring_failed", Error: err.Error()}, nil)
		return
	}
	if err := fdpass.Send(c, fdpass.Response{Size: int64(conn.Size())}, f); err != nil {
		conn.Close()
		return
	}
	e.serve(ctx, conn, conn)
}

// report sends the executor's accounting to its node agent every second.
func (e *executor) report(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var busy int64
	var calls uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, n := e.busy.Load(), e.invocations.Load()
		e.mu.Lock()
		hot := e.reportedHot
		e.reportedHot = 0
		for c, seen := range e.conns {
			if now := c.PollTime(); now > seen { // see PollTime: skip a sample that ran ahead
				hot += now - seen
				e.conns[c] = now
			}
		}
		e.mu.Unlock()
		if b == busy && n == calls && hot == 0 {
			continue
		}
		_ = localPost(ctx, "/v1/leases/stats", map[string]any{"busyNs": b - busy, "hotPollingNs": int64(hot), "invocations": n - calls})
		busy, calls = b, n
	}
}

// localPost posts a JSON body to the node agent's local API and wants 2xx.
func localPost(ctx context.Context, path string, body any) error {
	c, err := apiClient()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://handoff"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("node agent refused %s: %s %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// httpHandler runs an http.Handler for a direct call: POST / with the
// payload as body; a non-2xx answer is an error.
func httpHandler(h http.Handler) direct.Handler {
	return func(ctx context.Context, in []byte) ([]byte, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(in))
		if err != nil {
			return nil, err
		}
		r.ContentLength = int64(len(in))
		w := &memWriter{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(w, r)
		if w.status/100 != 2 {
			return nil, fmt.Errorf("status %d: %s", w.status, bytes.TrimSpace(w.body.Bytes()))
		}
		return w.body.Bytes(), nil
	}
}

// memWriter is an http.ResponseWriter into memory.
type memWriter struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }
func (w *memWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
}
func (w *memWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.body.Write(p)
}
