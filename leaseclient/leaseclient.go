// Package leaseclient leases executors of a function from Handoff's node
// agents and calls them directly, bypassing the gateway (rFaaS's model on
// commodity machines): over a shared-memory ring when the executor is on
// this machine, over TCP otherwise.
//
// # Usage
//
//	c := &leaseclient.Client{Node: "http://127.0.0.1:40001", Token: adminToken}
//	l, err := c.Acquire(ctx, api.LeaseRequest{Function: "echo", Executors: 2, Duration: "1m", Mode: "hot"})
//	...
//	defer l.Release(context.Background())
//	out, err := l.Call(ctx, []byte("hello"))      // one executor, round robin
//	f, err := l.Go([]byte("hello"))                // pipelined; f.Wait(ctx)
//	outs, err := l.All(ctx, []byte("hello"))       // every executor at once
//
// A lease lasts its duration; Renew extends it. An executor that dies fails
// its calls in flight at once (direct.ErrExecutorLost); TopUp replaces it.
package leaseclient

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/direct"
	"github.com/handoff-dev/handoff/direct/shm"
	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/internal/prefault"
)

// PrefaultHeap is how much of the Go heap a process makes resident, once,
// when it first acquires a lease whose calls poll (mode hot or auto), so
// that its first calls do not fault fresh pages in (tens of µs each in a
// VM: the tail of a hot call's latency).
const PrefaultHeap = 16 << 20

// ErrRedirected means the node named another node that can grant the
// lease, and that one could not either.
var ErrRedirected = errors.New("leaseclient: redirected")

// Client asks node agents for leases.
type Client struct {
	Node  string       // a node agent's base URL, e.g. http://127.0.0.1:40001
	Token string       // the admin token
	HTTP  *http.Client // default http.DefaultClient
	// TCPOnly skips the shared-memory ring even for executors on this
	// machine.
	TCPOnly bool
	// RingSize is the ring size per direction for same-machine executors
	// (0: the executor's default, 1 MiB).
	RingSize int
	// TCPSpin is how long a caller waiting for a result over TCP
	// busy-polls the socket before it sleeps: 0 picks by the lease's
	// mode (hot: until the result comes, as a hot executor does; auto:
	// 1 ms, longer than a small call takes; warm: never), negative
	// never spins.
	TCPSpin time.Duration
	// RefAbove is the largest input a call carries inline; a larger one
	// goes by reference: put in a buffer of the lease's node (one HTTP
	// upload), readable by the lease's function only, and read by the
	// executor through its node, mapped without a copy there. 0 means
	// direct.MaxPayload, the protocol's limit.
	RefAbove int
}

func (c *Client) refAbove() int {
	if c.RefAbove > 0 {
		return min(c.RefAbove, direct.MaxPayload)
	}
	return direct.MaxPayload
}

// tcpSpin is the client side's direct.TCPOptions.Spin for a lease in mode.
func (c *Client) tcpSpin(mode string) time.Duration {
	switch {
	case c.TCPSpin > 0:
		return c.TCPSpin
	case c.TCPSpin < 0:
		return 0
	}
	switch mode {
	case "hot":
		return -1
	case "warm":
		return 0
	}
	return time.Millisecond
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) do(ctx context.Context, method, base, path string, in, out any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, raw, err
		}
	}
	return resp.StatusCode, raw, nil
}

// apiError turns a node's error answer into an error.
func apiError(op string, status int, raw []byte) error {
	var e struct{ Code, Error string }
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("leaseclient: %s: %s (%d %s)", op, e.Error, status, e.Code)
	}
	return fmt.Errorf("leaseclient: %s: status %d: %s", op, status, bytes.TrimSpace(raw))
}

// Acquire asks for a lease and connects to every executor. A node without
// room names a peer that has some; Acquire follows that once.
func (c *Client) Acquire(ctx context.Context, req api.LeaseRequest) (*Lease, error) {
	base := c.Node
	for hop := 0; ; hop++ {
		var g api.LeaseGrant
		status, raw, err := c.do(ctx, http.MethodPost, base, "/v1/leases", req, &g)
		if err != nil {
			return nil, fmt.Errorf("leaseclient: acquire from %s: %w", base, err)
		}
		if status == http.StatusConflict && hop == 0 {
			var rd api.LeaseRedirect
			if json.Unmarshal(raw, &rd) == nil && rd.Addr != "" {
				base = "http://" + rd.Addr
				continue
			}
		}
		if status != http.StatusCreated {
			err := apiError("acquire", status, raw)
			if hop > 0 {
				err = fmt.Errorf("%w: %w", ErrRedirected, err)
			}
			return nil, err
		}
		if g.Mode != "warm" {
			// Calls that poll are worth microseconds: have this
			// process's heap resident before the first (see
			// package prefault).
			prefault.Heap(PrefaultHeap)
		}
		l := &Lease{c: c, base: base, grant: g, execs: make([]*direct.Client, len(g.Executors))}
		if err := l.connect(ctx); err != nil {
			l.Release(context.Background())
			return nil, err
		}
		return l, nil
	}
}

// Lease is a granted lease with a connection to each executor.
type Lease struct {
	c    *Client
	base string // the granting node

	mu    sync.Mutex // guards grant and execs
	grant api.LeaseGrant
	execs []*direct.Client
	next  atomic.Uint64
}

// Grant is the lease as the node last described it.
func (l *Lease) Grant() api.LeaseGrant {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.grant
}

func (l *Lease) connect(ctx context.Context) error {
	l.mu.Lock()
	g := l.grant
	l.mu.Unlock()
	execs := make([]*direct.Client, len(g.Executors))
	var errs []error
	for i, e := range g.Executors {
		if e.State != "up" {
			continue
		}
		dc, err := l.c.dial(ctx, g, e)
		if err != nil {
			errs = append(errs, fmt.Errorf("executor %d: %w", e.Index, err))
			continue
		}
		execs[i] = dc
	}
	l.mu.Lock()
	for _, old := range l.execs {
		if old != nil {
			old.Close()
		}
	}
	l.execs = execs
	l.mu.Unlock()
	return errors.Join(errs...)
}

// dial connects to one executor: a ring when its socket is on this
// machine, else TCP.
func (c *Client) dial(ctx context.Context, g api.LeaseGrant, e api.LeaseExecutor) (*direct.Client, error) {
	if !c.TCPOnly && e.Unix != "" {
		if _, err := os.Stat(e.Unix); err == nil {
			return c.dialRing(ctx, g, e)
		}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", e.TCP)
	if err != nil {
		return nil, err
	}
	nc.(*net.TCPConn).SetNoDelay(true)
	return direct.Handshake(direct.NewTCPConn(nc, direct.TCPOptions{Batch: true, Spin: c.tcpSpin(g.Mode)}), g.Token, e.Index)
}

func (c *Client) dialRing(ctx context.Context, g api.LeaseGrant, e api.LeaseExecutor) (*direct.Client, error) {
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: e.Unix, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	if err := fdpass.Send(uc, struct {
		Size int `json:"size"`
	}{c.RingSize}, nil); err != nil {
		uc.Close()
		return nil, err
	}
	var resp fdpass.Response
	f, err := fdpass.Recv(uc, &resp)
	if err != nil || f == nil {
		uc.Close()
		if err == nil {
			err = fmt.Errorf("executor refused a ring: %s", resp.Error)
		}
		return nil, err
	}
	defer f.Close()
	mode := shm.Auto
	switch g.Mode {
	case "hot":
		mode = shm.Hot
	case "warm":
		mode = shm.Warm
	}
	// The socket stays open: it is how each side sees the other die.
	conn, err := shm.Open(f, shm.Client, shm.Options{Mode: mode, Alive: socketAlive(uc)})
	if err != nil {
		uc.Close()
		return nil, err
	}
	dc, err := direct.Handshake(&ringConn{Conn: conn, sock: uc}, g.Token, e.Index)
	if err != nil {
		return nil, err
	}
	return dc, nil
}

// ringConn closes the set-up socket with the ring.
type ringConn struct {
	*shm.Conn
	sock *net.UnixConn
}

func (r *ringConn) Close() error {
	err := r.Conn.Close()
	r.sock.Close()
	return err
}

// socketAlive reports whether the executor still holds its end of the
// set-up socket: a peek that finds EOF means it died.
func socketAlive(c *net.UnixConn) func() bool {
	return func() bool {
		raw, err := c.SyscallConn()
		if err != nil {
			return false
		}
		alive := true
		_ = raw.Read(func(fd uintptr) bool {
			alive = peekAlive(int(fd))
			return true
		})
		return alive
	}
}

// Executors are the connected executors, by index in the grant (nil where
// one is not up).
func (l *Lease) Executors() []*direct.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*direct.Client(nil), l.execs...)
}

func (l *Lease) pick() (*direct.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.execs)
	for i := 0; i < n; i++ {
		if c := l.execs[int(l.next.Add(1))%n]; c != nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: lease %s has no executor up; TopUp or acquire a new lease", direct.ErrExecutorLost, l.grant.ID)
}

// Call invokes one executor (round robin) and waits for its answer. An
// input over Client.RefAbove goes by reference.
func (l *Lease) Call(ctx context.Context, payload []byte) ([]byte, error) {
	c, err := l.pick()
	if err != nil {
		return nil, err
	}
	if len(payload) <= l.c.refAbove() {
		return c.Call(ctx, payload)
	}
	ref, err := l.PutInput(ctx, payload, 1)
	if err != nil {
		return nil, err
	}
	return c.CallRef(ctx, ref)
}

// Go invokes one executor (round robin) without waiting: pipelined. An
// input over Client.RefAbove is uploaded to the lease's node first.
func (l *Lease) Go(payload []byte) (*direct.Future, error) {
	c, err := l.pick()
	if err != nil {
		return nil, err
	}
	if len(payload) <= l.c.refAbove() {
		return c.Go(payload), nil
	}
	ref, err := l.PutInput(context.Background(), payload, 1)
	if err != nil {
		return nil, err
	}
	return c.GoRef(ref), nil
}

// All invokes every executor with payload in parallel (a vector call). An
// input over Client.RefAbove is uploaded once, with a read per executor.
func (l *Lease) All(ctx context.Context, payload []byte) ([][]byte, error) {
	var live []*direct.Client
	for _, c := range l.Executors() {
		if c != nil {
			live = append(live, c)
		}
	}
	if len(payload) <= l.c.refAbove() || len(live) == 0 {
		return direct.All(ctx, live, payload)
	}
	ref, err := l.PutInput(ctx, payload, len(live))
	if err != nil {
		return nil, err
	}
	return direct.AllRef(ctx, live, ref)
}

// PutInput keeps payload in a buffer of the lease's node and returns a
// reference to it that the lease's function may read reads times, until
// the lease ends: pass it to direct.Client.CallRef or GoRef. Call, Go
// and All do this for inputs over Client.RefAbove.
func (l *Lease) PutInput(ctx context.Context, payload []byte, reads int) (string, error) {
	id := l.Grant().ID
	url := fmt.Sprintf("%s/v1/leases/%s/refs?reads=%d", strings.TrimSuffix(l.base, "/"), id, reads)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+l.c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := l.c.http().Do(req)
	if err != nil {
		return "", fmt.Errorf("leaseclient: put a %d-byte input for lease %s: %w", len(payload), id, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", apiError("put input", resp.StatusCode, raw)
	}
	var out struct {
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Ref == "" {
		return "", fmt.Errorf("leaseclient: put input: the node answered %q", bytes.TrimSpace(raw))
	}
	return out.Ref, nil
}

// Renew extends the lease to d from now.
func (l *Lease) Renew(ctx context.Context, d time.Duration) error {
	var g api.LeaseGrant
	status, raw, err := l.c.do(ctx, http.MethodPost, l.base, "/v1/leases/"+l.Grant().ID+"/renew", map[string]string{"duration": d.String()}, &g)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return apiError("renew", status, raw)
	}
	l.mu.Lock()
	l.grant.Expires = g.Expires
	l.mu.Unlock()
	return nil
}

// TopUp replaces n lost executors and connects to the new ones.
func (l *Lease) TopUp(ctx context.Context, n int) error {
	var g api.LeaseGrant
	status, raw, err := l.c.do(ctx, http.MethodPost, l.base, "/v1/leases/"+l.Grant().ID+"/topup", map[string]int{"executors": n}, &g)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return apiError("top up", status, raw)
	}
	g.Token = l.Grant().Token
	l.mu.Lock()
	l.grant = g
	l.mu.Unlock()
	return l.connect(ctx)
}

// Release ends the lease and closes the connections.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	for _, c := range l.execs {
		if c != nil {
			c.Close()
		}
	}
	l.execs = nil
	l.mu.Unlock()
	status, raw, err := l.c.do(ctx, http.MethodDelete, l.base, "/v1/leases/"+l.Grant().ID, nil, nil)
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return apiError("release", status, raw)
	}
	return nil
}
