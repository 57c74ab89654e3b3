package node

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/lease"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/supervisor"
)

// Leases (rFaaS): a client asks any node agent for executors of a function,
// and calls them directly afterwards, bypassing the gateway. The node agent
// grants from its own capacity (package lease, the pure core), starts the
// executors as ordinary instances with a direct-call port, and reclaims
// them at expiry. No central scheduler is on the path: a node that is full
// names a peer that has room, from the capacities the control plane
// relays with heartbeats.

// Environment of a leased executor, besides the instance contract.
const (
	envLease      = "HANDOFF_LEASE"       // the lease id
	envExecutor   = "HANDOFF_EXECUTOR"    // the executor's index in its lease
	envDirectSock = "HANDOFF_DIRECT_SOCK" // Unix socket for same-node (shared-memory) set-up
	envDirectHost = "HANDOFF_DIRECT_HOST" // host to listen on for direct calls over TCP
	envDirectMode = "HANDOFF_DIRECT_MODE" // hot, warm or auto
	envHotPoll    = "HANDOFF_HOT_POLL"    // auto mode: busy-poll after a call
)

// leaser is a node agent's side of leases.
type leaser struct {
	a *Agent

	mu     sync.Mutex // guards all following fields
	m      *lease.Manager
	grants map[string]*grant // by lease id
}

// grant is what the agent keeps about a lease besides the core's view.
type grant struct {
	token    string // the holder's secret; executors check it through the agent
	function string
	execs    map[int]*executor
}

// executor is one leased instance.
type executor struct {
	id        string // the instance id
	inst      *supervisor.Instance
	tcp, unix string        // where it takes direct calls
	reported  chan struct{} // closed when the executor said where it listens
}

func newLeaser(a *Agent) (*leaser, error) {
	m, err := lease.New(lease.Config{
		Capacity: lease.Resources{
			MilliCores: int64(runtime.NumCPU()) * 1000,
			Memory:     memTotal() / 2,
			Executors:  64,
		},
		IDs: randomID,
	})
	if err != nil {
		return nil, err
	}
	return &leaser{a: a, m: m, grants: map[string]*grant{}}, nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// adminOK admits lease requests with the admin token (leases start code
// and hold capacity, as deploys do).
func (a *Agent) adminOK(r *http.Request) bool {
	if a.cfg.AdminToken == "" {
		return false
	}
	want := []byte("Bearer " + a.cfg.AdminToken)
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1
}

func (l *leaser) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/leases", l.handleGrant)
	mux.HandleFunc("GET /v1/leases", l.handleList)
	mux.HandleFunc("POST /v1/leases/{id}/renew", l.handleRenew)
	mux.HandleFunc("POST /v1/leases/{id}/topup", l.handleTopUp)
	mux.HandleFunc("DELETE /v1/leases/{id}", l.handleRelease)
	mux.HandleFunc("POST /v1/leases/{id}/refs", l.handleRef)
}

// maxLeaseRefReads bounds the reads a lease's input may allow (one per
// executor of a vector call, or per call that reuses it).
const maxLeaseRefReads = 1 << 16

// handleRef keeps a call's input for the lease's executors in a node
// buffer and answers with a reference only the lease's function may read,
// for ?reads= reads (default 1), until the lease's current end: inputs over
// the direct protocol's inline limit travel so (direct.FlagRef). The
// executors on this node map the buffer without a copy.
func (l *leaser) handleRef(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l.mu.Lock()
	ls, err := l.m.Get(time.Now(), id)
	l.mu.Unlock()
	if err != nil {
		writeLeaseError(w, err)
		return
	}
	if ls.State >= lease.Draining {
		writeLeaseError(w, fmt.Errorf("%w: lease %s is %s; acquire a new one", lease.ErrExpired, id, ls.State))
		return
	}
	if l.a.refs == nil {
		writeRefError(w, fmt.Errorf("%w: node %s does not run reference passing", refpass.ErrUnreachable, l.a.cfg.ID))
		return
	}
	reads := uint64(1)
	if s := r.URL.Query().Get("reads"); s != "" {
		if reads, err = strconv.ParseUint(s, 10, 32); err != nil || reads == 0 || reads > maxLeaseRefReads {
			writeLeaseError(w, fmt.Errorf("%w: reads=%q: give a whole number from 1 to %d", lease.ErrInvalid, s, maxLeaseRefReads))
			return
		}
	}
	o := refpass.Options{Issuer: "lease-" + id, Readers: []string{ls.Function}, Reads: uint32(reads), TTL: max(time.Until(ls.Expires), time.Second)}
	tok, info, err := l.a.refs.Put(r.Context(), r.Body, r.ContentLength, o)
	if err != nil {
		writeRefError(w, err)
		return
	}
	l.a.metrics.bytes.WithLabelValues("ref", "out").Add(float64(info.Size))
	httpx.WriteJSON(w, http.StatusCreated, PutResult{Ref: tok, Size: info.Size, Checksum: info.Checksum, Expires: info.Expires.Unix()})
}

func writeLeaseError(w http.ResponseWriter, err error) {
	var rd *lease.Redirect
	switch {
	case errors.As(err, &rd):
		httpx.WriteJSON(w, http.StatusConflict, api.LeaseRedirect{Code: "lease_redirect", Error: err.Error(), Node: rd.Node, Addr: rd.Addr})
	case errors.Is(err, lease.ErrInvalid):
		httpx.WriteError(w, http.StatusBadRequest, "lease_invalid", err.Error())
	case errors.Is(err, lease.ErrNoCapacity):
		w.Header().Set("Retry-After", "1")
		httpx.WriteError(w, http.StatusServiceUnavailable, "lease_busy", err.Error())
	case errors.Is(err, lease.ErrUnsatisfiable):
		httpx.WriteError(w, http.StatusUnprocessableEntity, "lease_unsatisfiable", err.Error())
	case errors.Is(err, lease.ErrUnknownLease):
		httpx.WriteError(w, http.StatusNotFound, "lease_unknown", err.Error())
	case errors.Is(err, lease.ErrExpired):
		httpx.WriteError(w, http.StatusGone, "lease_ended", err.Error())
	default:
		httpx.WriteError(w, http.StatusInternalServerError, "lease_failed", err.Error())
	}
}

// request turns the API's request into the core's, with defaults.
func (l *leaser) request(req api.LeaseRequest) (lease.Request, error) {
	out := lease.Request{Function: req.Function, Executors: req.Executors, MilliCores: req.MilliCores, Memory: req.Memory}
	if out.MilliCores == 0 {
		out.MilliCores = 1000
	}
	if out.Memory == 0 {
		out.Memory = 128 << 20
	}
	var err error
	if out.Duration, err = time.ParseDuration(req.Duration); err != nil {
		return out, fmt.Errorf("%w: duration %q: give one such as 30s or 5m", lease.ErrInvalid, req.Duration)
	}
	if out.Mode, err = lease.ParseMode(req.Mode); err != nil && req.Mode != "" {
		return out, err
	}
	if req.HotPoll != "" {
		if out.HotPoll, err = time.ParseDuration(req.HotPoll); err != nil {
			return out, fmt.Errorf("%w: hotPoll %q: give a duration such as 50ms", lease.ErrInvalid, req.HotPoll)
		}
	}
	return out, nil
}

func (l *leaser) handleGrant(w http.ResponseWriter, r *http.Request) {
	var req api.LeaseRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "lease_invalid", "lease request: "+err.Error())
		return
	}
	lr, err := l.request(req)
	if err != nil {
		writeLeaseError(w, err)
		return
	}
	// The function must exist before capacity is taken for it.
	start, err := l.a.startRequest(r.Context(), lr.Function)
	if err != nil {
		httpx.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	l.mu.Lock()
	ls, err := l.m.Grant(time.Now(), lr)
	if err == nil {
		l.grants[ls.ID] = &grant{token: randomID() + randomID(), function: lr.Function, execs: map[int]*executor{}}
	}
	l.mu.Unlock()
	if err != nil {
		writeLeaseError(w, err)
		return
	}
	start.Function.Memory = spec.Bytes(lr.Memory)
	var idx []int
	for _, e := range ls.Executors {
		idx = append(idx, e.Index)
	}
	if err := l.startExecutors(r.Context(), ls, start, idx); err != nil {
		l.release(ls.ID)
		httpx.WriteError(w, http.StatusUnprocessableEntity, "start_failed", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, l.grantAnswer(ls.ID))
}

// startExecutors starts the given executors of a lease and waits until each
// has said where it takes direct calls.
func (l *leaser) startExecutors(ctx context.Context, ls lease.Lease, start StartRequest, indexes []int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(indexes))
	for i, ix := range indexes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.startExecutor(ctx, ls, start, ix)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *leaser) startExecutor(ctx context.Context, ls lease.Lease, start StartRequest, ix int) error {
	id := ls.ID[:12] + "-" + strconv.Itoa(ix)
	sock := filepath.Join(l.a.cfg.Dir, "direct", id+".sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(l.a.Addr())
	ex := &executor{id: id, unix: sock, reported: make(chan struct{})}
	l.mu.Lock()
	g := l.grants[ls.ID]
	if g == nil {
		l.mu.Unlock()
		return fmt.Errorf("lease %s ended while its executors started", ls.ID)
	}
	g.execs[ix] = ex
	l.mu.Unlock()
	env := []string{
		envLease + "=" + ls.ID, envExecutor + "=" + strconv.Itoa(ix),
		envDirectSock + "=" + sock, envDirectHost + "=" + host,
		envDirectMode + "=" + ls.Mode.String(), envHotPoll + "=" + ls.HotPoll.String(),
	}
	inst, err := l.a.startInstance(ctx, id, start, env, func(s supervisor.State) {
		// A leased executor is not restarted behind its holder's back: its
		// connections broke, so it is lost; the holder may top up.
		if s == supervisor.Restarting {
			go l.lost(ls.ID, ix, "the executor exited")
		}
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	ex.inst = inst
	l.mu.Unlock()
	select {
	case <-ex.reported:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("executor %d of lease %s started but never opened its direct port; is %s built with the Handoff SDK?", ix, ls.ID, start.Function.Name)
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	err = l.m.ExecutorUp(ls.ID, ix)
	l.mu.Unlock()
	return err
}

// lost takes a dead executor out of its lease and stops what is left of it.
func (l *leaser) lost(id string, ix int, reason string) {
	l.mu.Lock()
	_ = l.m.ExecutorLost(time.Now(), id, ix, reason)
	var ex *executor
	if g := l.grants[id]; g != nil {
		ex = g.execs[ix]
	}
	l.mu.Unlock()
	if ex != nil && ex.inst != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ex.inst.Stop(ctx)
	}
	l.a.log.Warn("leased executor lost", "lease", id, "executor", ix, "reason", reason)
}

func (l *leaser) grantAnswer(id string) api.LeaseGrant {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, _ := l.m.Get(time.Now(), id)
	g := l.grants[id]
	out := api.LeaseGrant{ID: id, Node: l.a.cfg.ID, Function: ls.Function, Mode: ls.Mode.String(), Expires: ls.Expires}
	if g != nil {
		out.Token = g.token
		out.Executors = executors(ls, g)
	}
	return out
}

func executors(ls lease.Lease, g *grant) []api.LeaseExecutor {
	var out []api.LeaseExecutor
	for _, e := range ls.Executors {
		le := api.LeaseExecutor{Index: e.Index, State: e.State.String()}
		if ex := g.execs[e.Index]; ex != nil && e.State == lease.Up {
			le.TCP, le.Unix = ex.tcp, ex.unix
		}
		out = append(out, le)
	}
	return out
}

func (l *leaser) handleList(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []api.LeaseInfo{}
	for _, ls := range l.m.Leases(time.Now()) {
		info := api.LeaseInfo{ID: ls.ID, Node: l.a.cfg.ID, Function: ls.Function, State: ls.State.String(), Mode: ls.Mode.String(),
			Expires: ls.Expires, Allocated: ls.Allocated, Busy: ls.Busy, HotPolling: ls.HotPolling, Invocations: ls.Invocations}
		if g := l.grants[ls.ID]; g != nil {
			info.Executors = executors(ls, g)
			for i, e := range info.Executors {
				if ex := g.execs[e.Index]; ex != nil && ex.inst != nil {
					info.Executors[i].PID = ex.inst.Info().PID
				}
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (l *leaser) handleRenew(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Duration string `json:"duration"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body)
	d, err := time.ParseDuration(body.Duration)
	if err != nil {
		writeLeaseError(w, fmt.Errorf("%w: duration %q: give one such as 30s", lease.ErrInvalid, body.Duration))
		return
	}
	l.mu.Lock()
	_, err = l.m.Renew(time.Now(), r.PathValue("id"), d)
	l.mu.Unlock()
	if err != nil {
		writeLeaseError(w, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, l.grantAnswer(r.PathValue("id")))
}

func (l *leaser) handleTopUp(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Executors int `json:"executors"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body)
	id := r.PathValue("id")
	l.mu.Lock()
	slots, err := l.m.TopUp(time.Now(), id, body.Executors)
	ls, _ := l.m.Get(time.Now(), id)
	l.mu.Unlock()
	if err != nil {
		writeLeaseError(w, err)
		return
	}
	start, err := l.a.startRequest(r.Context(), ls.Function)
	if err != nil {
		httpx.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	start.Function.Memory = spec.Bytes(ls.Memory)
	var idx []int
	for _, s := range slots {
		idx = append(idx, s.Index)
	}
	if err := l.startExecutors(r.Context(), ls, start, idx); err != nil {
		httpx.WriteError(w, http.StatusUnprocessableEntity, "start_failed", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, l.grantAnswer(id))
}

func (l *leaser) handleRelease(w http.ResponseWriter, r *http.Request) {
	if err := l.release(r.PathValue("id")); err != nil {
		writeLeaseError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// release ends a lease now and reclaims its executors in the background.
func (l *leaser) release(id string) error {
	l.mu.Lock()
	rc, err := l.m.Release(time.Now(), id)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	go l.reclaim(rc)
	return nil
}

// reclaim stops a lease's executors (letting calls in flight finish unless
// overdue) and gives their capacity back.
func (l *leaser) reclaim(rc lease.Reclaim) {
	l.a.log.Info("reclaiming lease", "lease", rc.ID, "function", rc.Function, "reason", rc.Reason, "overdue", rc.Overdue)
	l.mu.Lock()
	g := l.grants[rc.ID]
	var insts []*supervisor.Instance
	if g != nil {
		for _, ex := range g.execs {
			if ex.inst != nil {
				insts = append(insts, ex.inst)
			}
		}
	}
	l.mu.Unlock()
	grace := 10 * time.Second
	if rc.Overdue {
		grace = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() { defer wg.Done(); _ = in.Stop(ctx) }()
	}
	wg.Wait()
	l.mu.Lock()
	_, _ = l.m.Reclaimed(time.Now(), rc.ID)
	delete(l.grants, rc.ID)
	l.mu.Unlock()
}

// run reclaims expired leases until ctx is done.
func (l *leaser) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		rcs := l.m.Tick(time.Now())
		l.mu.Unlock()
		for _, rc := range rcs {
			go l.reclaim(rc)
		}
	}
}

// capacity is what the agent gossips through the control plane.
func (l *leaser) capacity() lease.Capacity {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.Capacity()
}

// setPeers takes the other agents' capacities from the directory.
func (l *leaser) setPeers(peers []LeasePeer) {
	now := time.Now()
	var pcs []lease.PeerCapacity
	for _, p := range peers {
		if p.Node == l.a.cfg.ID {
			continue
		}
		pcs = append(pcs, lease.PeerCapacity{Node: p.Node, Addr: p.Addr, Capacity: p.Capacity, AsOf: now})
	}
	l.mu.Lock()
	l.m.SetPeers(now, pcs)
	l.mu.Unlock()
}

// Local API of executors (their own sockets).

// executorOf finds the executor behind an instance's local socket.
func (l *leaser) executorOf(instance string) (leaseID string, ix int, g *grant, ex *executor) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, gr := range l.grants {
		for i, e := range gr.execs {
			if e.id == instance {
				return id, i, gr, e
			}
		}
	}
	return "", 0, nil, nil
}

// handleDirect records where an executor takes direct calls.
func (l *leaser) handleDirect(w http.ResponseWriter, r *http.Request, instance string) {
	var body struct {
		TCP string `json:"tcp"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body); err != nil || body.TCP == "" {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", `give {"tcp": "host:port"}`)
		return
	}
	_, _, _, ex := l.executorOf(instance)
	if ex == nil {
		httpx.WriteError(w, http.StatusForbidden, "not_an_executor", "instance "+instance+" is not a leased executor")
		return
	}
	l.mu.Lock()
	ex.tcp = body.TCP
	select {
	case <-ex.reported:
	default:
		close(ex.reported)
	}
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// handleCheck answers an executor asking whether a caller's token is its
// lease's: 204 yes, 403 no.
func (l *leaser) handleCheck(w http.ResponseWriter, r *http.Request, instance string) {
	var body struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body)
	id, _, g, _ := l.executorOf(instance)
	if g == nil || subtle.ConstantTimeCompare([]byte(body.Token), []byte(g.token)) != 1 {
		httpx.WriteError(w, http.StatusForbidden, "lease_refused", "the token is not the one of the lease this executor serves")
		return
	}
	l.mu.Lock()
	ls, err := l.m.Get(time.Now(), id)
	l.mu.Unlock()
	if err != nil || ls.State == lease.Draining {
		httpx.WriteError(w, http.StatusForbidden, "lease_ended", "the lease has ended; acquire a new one")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleStats adds an executor's accounting since its last report.
func (l *leaser) handleStats(w http.ResponseWriter, r *http.Request, instance string) {
	var body struct {
		BusyNs       int64  `json:"busyNs"`
		HotPollingNs int64  `json:"hotPollingNs"`
		Invocations  uint64 `json:"invocations"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	id, ix, g, _ := l.executorOf(instance)
	if g == nil {
		httpx.WriteError(w, http.StatusForbidden, "not_an_executor", "instance "+instance+" is not a leased executor")
		return
	}
	l.mu.Lock()
	_ = l.m.Busy(id, ix, time.Duration(body.BusyNs))
	_ = l.m.HotPolled(id, ix, time.Duration(body.HotPollingNs))
	_ = l.m.Invocations(id, ix, body.Invocations)
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// LeasePeer is one agent's lease capacity as the directory relays it.
type LeasePeer struct {
	Node string `json:"node"`
	Addr string `json:"addr"` // its node API, where lease requests go
	lease.Capacity
}

// startRequest asks the control plane how to start an instance of fn.
func (a *Agent) startRequest(ctx context.Context, fn string) (StartRequest, error) {
	var out StartRequest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.ControlURL+"/v1/nodes/functions/"+fn, nil)
	if err != nil {
		return out, err
	}
	httpx.SetToken(req.Header, a.cfg.Token)
	resp, err := a.toCtl.RoundTrip(req)
	if err != nil {
		return out, fmt.Errorf("node %s could not ask the control plane about %s: %w", a.cfg.ID, fn, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("function %s is not deployed; deploy it before leasing executors of it", fn)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	return out, err
}
