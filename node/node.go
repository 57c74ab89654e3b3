// Package node is the node agent: one per machine, it runs function instances
// as supervised processes, proxies their invocations, and serves the local API
// through which instances call other functions.
//
// The agent is driven by the control plane over its HTTP API (authenticated
// with the cluster token); instances reach it over a Unix socket whose path is
// in their $HANDOFF_API.
package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/lease"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/spread"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/xfer"
)

// Config configures a node agent.
type Config struct {
	ID         string // node id, e.g. "n1"
	Listen     string // address of the node API, e.g. "127.0.0.1:0"
	Dir        string // state directory: logs, the local API socket
	ControlURL string // the control plane's base URL, e.g. "http://127.0.0.1:7070"
	Token      string // the cluster token shared with the control plane
	Logger     *slog.Logger
	// Heartbeat is how often the agent reports to the control plane (default 1s).
	Heartbeat time.Duration
	// WireListen is the address of the framed invocation port (package
	// wire); default 127.0.0.1:0.
	WireListen string

	// InlineMax is the largest body that travels inline between functions;
	// larger ones are passed by reference (default xfer.DefaultInlineMax).
	InlineMax int64
	// BufferMemory is the memory budget of the node's payload buffers
	// (default: a quarter of the machine's memory).
	BufferMemory int64
	// SpillDir receives buffers that find no memory (default Dir/spill);
	// "-" turns spilling off, so a full budget is an error after a wait.
	SpillDir string
	// TLS is the node's cluster identity (package pki). Without it the node
	// neither serves nor makes pulls: references only work on this node.
	TLS pki.Files
	// PeerListen is the address of the mutual-TLS peer listener where other
	// members pull buffers (default 127.0.0.1:0).
	PeerListen string
	// AdminToken admits lease requests (Authorization: Bearer); empty
	// turns leases off on this node.
	AdminToken string
	// PeerEncrypt keeps payloads inside TLS between nodes. Off, they travel
	// in the clear (sendfile) once TLS has authenticated both ends: right
	// for loopback and private networks, twice as fast (see peerlink).
	PeerEncrypt bool
	// StoreMemory is the memory budget of the node's share of the store
	// (default: an eighth of the machine's memory); it spills to Dir.
	StoreMemory int64
	// S3Listen is the address of the node's S3-compatible API (default
	// 127.0.0.1:0).
	S3Listen string
	// NoStoreMount leaves the store unmounted (see mount.go).
	NoStoreMount bool
	// CSIEndpoint, if set, serves the CSI driver over the cluster store
	// on this socket (unix:///path; "default": Dir/csi.sock). See csi.go.
	CSIEndpoint string
	// Version is the binary's version, as CSI reports it.
	Version string

	// ParkBudget is how many parked processes (SDK functions waiting,
	// started, for their next instance; see park below) the agent keeps at
	// most (0: DefaultParkBudget). NoPark turns parking off: every
	// instance is a fresh fork and exec.
	ParkBudget int
	NoPark     bool
}

// StartRequest is the body of PUT /v1/instances/{id}.
type StartRequest struct {
	Function spec.Function `json:"function"`
	// Binary replaces Function.Run.Command when the control plane built the
	// function from a Go package.
	Binary string `json:"binary,omitempty"`
}

// Heartbeat is what a node agent reports to the control plane.
type Heartbeat struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Boot     string `json:"boot"` // changes every time the agent starts
	WireAddr string `json:"wireAddr,omitempty"`
	S3Addr   string `json:"s3Addr,omitempty"` // the node's S3-compatible API
	// StoreMount is where the node mounts the store, or "off: why".
	StoreMount string `json:"storeMount,omitempty"`
	// Holder is the name this agent incarnation signs references with
	// (its id and boot), PeerAddr where members pull from it, Adopted the
	// holders whose buffers it took over from draining members.
	Holder   string   `json:"holder,omitempty"`
	PeerAddr string   `json:"peerAddr,omitempty"`
	Adopted  []string `json:"adopted,omitempty"`
	// Leases is the agent's lease capacity, relayed to the other agents
	// for redirects (nil when leases are off).
	Leases    *lease.Capacity `json:"leases,omitempty"`
	Instances []api.Instance  `json:"instances"`
	RSS       int64           `json:"rss"` // the agent's own resident memory
}

// Directory answers a heartbeat: where each holder's buffers are pulled
// from (holder name → peer address), adopted holders included.
type Directory struct {
	Peers map[string]string `json:"peers"`
	// Leases are the agents' lease capacities, for redirects.
	Leases []LeasePeer `json:"leases,omitempty"`
}

// Agent is a running node agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	boot    string
	metrics *metrics
	toInst  http.RoundTripper // to instances on this node (httpx.Hybrid)
	toCtl   http.RoundTripper // to the control plane (httpx.Hybrid)
	policy  xfer.Policy
	refs    *refpass.Service // nil when buffers cannot be made here
	leases  *leaser
	runs    *runs
	link    *peerlink.Client // streams to other members; nil without a cluster identity
	store   *local.Store     // the cluster store, as this node serves it
	tier    *spread.Tier     // this node's store blocks, which peers read
	s3      http.Handler     // the S3-compatible API over store
	// mountDir is where the store is mounted ("" when it is not: mountErr
	// says why); both are set before instances start.
	mountDir, mountErr string
	views              *storeViews     // per-grants views of the store for instances (mount.go)
	member             *pki.Member     // the cluster identity, nil without Config.TLS
	holder             string          // the holder name in references this agent signs
	ctx                context.Context // done when Run stops

	ln      net.Listener
	localLn net.Listener
	wireLn  net.Listener
	peerLn  net.Listener // nil without a cluster identity
	s3Ln    net.Listener

	mu        sync.Mutex // guards all following fields
	instances map[string]*supervisor.Instance
	starting  map[string]bool // ids reserved by a start in progress
	closing   bool
	sockets   uint64               // instance sockets made, for their names
	parked    map[string]*parkSlot // by function name
	parkSeq   uint64               // parked processes made, for their names
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.ID == "" || cfg.Dir == "" || cfg.ControlURL == "" || cfg.Token == "" {
		return nil, errors.New("node: ID, Dir, ControlURL and Token are required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.ID),
		boot:      fmt.Sprintf("%d", time.Now().UnixNano()),
		metrics:   newMetrics(cfg.ID),
		toInst:    httpx.NewHybrid(),
		toCtl:     httpx.NewHybrid(),
		instances: make(map[string]*supervisor.Instance),
		starting:  make(map[string]bool),
		parked:    make(map[string]*parkSlot),
		ctx:       context.Background(),
	}
	a.holder = holderName(cfg.ID, a.boot)
	if err := a.setupRefs(); err != nil {
		return nil, err
	}
	l, err := newLeaser(a)
	if err != nil {
		return nil, err
	}
	a.leases = l
	a.runs = newRuns(a)
	if err := a.setupStore(); err != nil {
		return nil, err
	}
	if a.member != nil {
		a.link = &peerlink.Client{TLS: a.member.ClientConfig(""), Clear: !cfg.PeerEncrypt}
	}
	return a, nil
}

// SocketPath is the local API's Unix socket.
func (a *Agent) SocketPath() string { return filepath.Join(a.cfg.Dir, "api.sock") }

// Addr is the node API's address once Run has started listening.
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Listen opens the node API and local API listeners. Run calls it if needed.
func (a *Agent) Listen() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("node %s: listen on %s: %w", a.cfg.ID, a.cfg.Listen, err)
	}
	_ = os.Remove(a.SocketPath())
	lln, err := net.Listen("unix", a.SocketPath())
	if err != nil {
		ln.Close()
		return fmt.Errorf("node %s: local API socket: %w", a.cfg.ID, err)
	}
	wl := a.cfg.WireListen
	if wl == "" {
		wl = "127.0.0.1:0"
	}
	wln, err := net.Listen("tcp", wl)
	if err != nil {
		ln.Close()
		lln.Close()
		return fmt.Errorf("node %s: wire listener: %w", a.cfg.ID, err)
	}
	a.ln, a.localLn, a.wireLn = ln, lln, wln
	if a.member != nil {
		pl := a.cfg.PeerListen
		if pl == "" {
			pl = "127.0.0.1:0"
		}
		pln, err := net.Listen("tcp", pl)
		if err != nil {
			ln.Close()
			lln.Close()
			wln.Close()
			return fmt.Errorf("node %s: peer listener: %w", a.cfg.ID, err)
		}
		a.peerLn = pln
	}
	sl := a.cfg.S3Listen
	if sl == "" {
		sl = "127.0.0.1:0"
	}
	sln, err := net.Listen("tcp", sl)
	if err != nil {
		ln.Close()
		lln.Close()
		wln.Close()
		if a.peerLn != nil {
			a.peerLn.Close()
		}
		return fmt.Errorf("node %s: S3 listener on %s: %w", a.cfg.ID, sl, err)
	}
	a.s3Ln = sln
	return nil
}

// Run serves until ctx is done, then stops every instance (draining each) and
// returns.
func (a *Agent) Run(ctx context.Context) error {
	if a.ln == nil {
		if err := a.Listen(); err != nil {
			return err
		}
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	a.ctx = runCtx
	api := &http.Server{Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	local := &http.Server{Handler: a.localHandler("", ""), ReadHeaderTimeout: 10 * time.Second}
	// Mount before serving: instance starts read where it is mounted.
	unmount := a.mountStore()
	defer unmount()
	errc := make(chan error, 5)
	go func() { errc <- api.Serve(a.ln) }()
	go func() { errc <- local.Serve(a.localLn) }()
	go a.serveWire()
	var peer *peerlink.Server
	if a.peerLn != nil {
		peer = a.refs.Server(!a.cfg.PeerEncrypt)
		peer.Streams = a.runs
		peer.Blocks = a.tier
		go func() { errc <- peer.Serve(a.peerLn) }()
	}
	stopSweep := a.sweepBuffers()
	defer stopSweep()
	stopS3 := a.serveS3()
	defer stopS3()
	if stopCSI, err := a.serveCSI(errc); err != nil {
		errc <- err
	} else if stopCSI != nil {
		defer stopCSI()
	}
	go a.leases.run(runCtx)
	go a.runs.sweep(runCtx)
	a.log.Info("node agent serving", "addr", a.Addr(), "socket", a.SocketPath())

	hbDone := make(chan struct{})
	go func() { defer close(hbDone); a.heartbeats(ctx) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	a.unparkAll()
	a.stopAll(30 * time.Second)
	a.handOffBuffers()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = local.Shutdown(sctx)
	_ = api.Shutdown(sctx)
	if peer != nil {
		a.peerLn.Close()
		peer.Close()
	}
	a.wireLn.Close()
	cancelRun()
	if a.refs != nil {
		_ = a.refs.Store().Close()
	}
	<-hbDone
	os.Remove(a.SocketPath())
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (a *Agent) stopAll(grace time.Duration) {
	a.mu.Lock()
	insts := make([]*supervisor.Instance, 0, len(a.instances))
	for _, in := range a.instances {
		insts = append(insts, in)
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() { defer wg.Done(); _ = in.Stop(ctx) }()
	}
	wg.Wait()
}

func (a *Agent) authorized(r *http.Request) bool {
	return httpx.HasToken(r.Header, a.cfg.Token)
}

func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/instances/{id}", a.handleStart)
	mux.HandleFunc("DELETE /v1/instances/{id}", a.handleStop)
	mux.HandleFunc("GET /v1/instances", a.handleList)
	mux.HandleFunc("POST /v1/invoke/{id}", a.handleInvoke)
	mux.HandleFunc("GET /v1/logs/{function}", a.handleLogs)
	mux.HandleFunc("GET /v1/parked", a.handleListParked)
	mux.HandleFunc("PUT /v1/parked/{function}", a.handleRepark)
	mux.HandleFunc("DELETE /v1/parked/{function}", a.handleUnpark)
	// The gateway stores uploads over the inline limit here (issuer "client").
	mux.HandleFunc("POST /v1/refs", func(w http.ResponseWriter, r *http.Request) { a.handlePutRef(w, r, "") })
	a.runs.routes(mux)
	leaseMux := http.NewServeMux()
	a.leases.routes(leaseMux)
	metricsH := a.metrics.handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && r.Method == http.MethodGet {
			metricsH.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/leases") {
			if !a.adminOK(r) {
				httpx.WriteError(w, http.StatusUnauthorized, "unauthenticated", "lease requests need the admin token (Authorization: Bearer, from admin.token in the state directory of `handoff up`)")
				return
			}
			leaseMux.ServeHTTP(w, r)
			return
		}
		if !a.authorized(r) {
			httpx.WriteError(w, http.StatusUnauthorized, "unauthenticated", "node API calls need the cluster token; only the control plane may call this node")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *Agent) handleStart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req StartRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "start request: "+err.Error())
		return
	}
	// An SDK instance also serves the gateway's framed protocol on an
	// address of its own, behind a secret of its own (see wire.go).
	direct, env, err := a.directFor()
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "start_failed", err.Error())
		return
	}
	inst, err := a.startInstance(r.Context(), id, req, env, nil)
	if err != nil {
		var se *startError
		if errors.As(err, &se) {
			httpx.WriteError(w, se.status, se.code, se.msg)
			return
		}
		httpx.WriteError(w, http.StatusInternalServerError, "start_failed", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, StartAnswer{Instance: toAPI(inst.Info()), Direct: direct})
}

// StartAnswer is the answer to PUT /v1/instances/{id}: the instance, and
// where the gateway may send it small invocations itself.
type StartAnswer struct {
	api.Instance
	Direct *Direct `json:"direct,omitempty"`
}

// startError is a failed start with the status and code to answer with.
type startError struct {
	status    int
	code, msg string
}

func (e *startError) Error() string { return e.msg }

// startInstance starts instance id of req's function and keeps it until it
// stops: as the control plane asks (handleStart), or as a leased executor.
// env adds variables; onState, if set, sees every state change after the
// agent's own bookkeeping.
func (a *Agent) startInstance(ctx context.Context, id string, req StartRequest, env []string, onState func(supervisor.State)) (*supervisor.Instance, error) {
	fn := req.Function
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return nil, &startError{http.StatusServiceUnavailable, "node_closing", "node " + a.cfg.ID + " is shutting down; place the instance elsewhere"}
	}
	if _, dup := a.instances[id]; dup || a.starting[id] {
		a.mu.Unlock()
		return nil, &startError{http.StatusConflict, "instance_exists", "instance " + id + " already runs on node " + a.cfg.ID}
	}
	// Reserve the id for the length of the start, so that a concurrent start
	// of the same id gets 409 instead of a second process that nothing
	// tracks or stops.
	a.starting[id] = true
	a.mu.Unlock()
	unreserve := func() {
		a.mu.Lock()
		delete(a.starting, id)
		a.mu.Unlock()
	}
	if err := spec.CheckName(fn.Name); err != nil || !validID(id) {
		unreserve()
		return nil, &startError{http.StatusBadRequest, "bad_request", fmt.Sprintf("start request: function %q or instance id %q is not a valid name", fn.Name, id)}
	}
	sock, fdSock, stopAPI, err := a.instanceAPI(fn.Name, id)
	if err != nil {
		unreserve()
		return nil, err
	}

	command := fn.Run.Command
	if req.Binary != "" {
		command = req.Binary
	}
	vars := append(a.functionVars(fn), "HANDOFF_FD="+fdSock)
	vars = append(vars, env...)
	cfg := supervisor.Config{
		ID:           id,
		Function:     fn.Name,
		Node:         a.cfg.ID,
		Command:      command,
		Args:         fn.Run.Args,
		Dir:          fn.Run.Dir,
		Env:          vars,
		APISocket:    sock,
		Memory:       int64(fn.Memory),
		CgroupParent: "handoff/" + a.cfg.ID,
		LogPath:      filepath.Join(a.cfg.Dir, "logs", fn.Name, id+".log"),
		Logger:       a.log,
		OnState: func(id string, s supervisor.State) {
			a.metrics.instanceState(fn.Name, s)
			if onState != nil {
				onState(s)
			}
		},
	}
	start := time.Now()
	key, pcfg := a.parkConfig(req)
	var inst *supervisor.Instance
	err = nil
	if pk := a.takeParked(fn.Name, key); pk != nil {
		inst, err = pk.Activate(ctx, cfg)
		if err != nil {
			a.log.Warn("parked process could not become the instance; starting a new process", "function", fn.Name, "instance", id, "err", err)
			inst = nil
		}
	}
	if inst == nil {
		inst, err = supervisor.Start(ctx, cfg)
	}
	if err != nil {
		stopAPI()
		unreserve()
		a.metrics.startFailures.WithLabelValues(fn.Name).Inc()
		return nil, &startError{http.StatusUnprocessableEntity, "start_failed", fmt.Sprintf("function %s could not start on node %s: %v", fn.Name, a.cfg.ID, err)}
	}
	a.metrics.coldStart.WithLabelValues(fn.Name).Observe(time.Since(start).Seconds())
	a.mu.Lock()
	delete(a.starting, id)
	if a.closing {
		// Run's stopAll has already taken its list of instances: this one
		// would outlive the agent.
		a.mu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = inst.Stop(sctx)
		stopAPI()
		return nil, &startError{http.StatusServiceUnavailable, "node_closing", "node " + a.cfg.ID + " is shutting down; place the instance elsewhere"}
	}
	a.instances[id] = inst
	a.mu.Unlock()
	// The next instance of an SDK function here starts from a parked
	// process, made once this one has had its first requests.
	time.AfterFunc(parkDelay, func() {
		if inst.Announced() && inst.State() == supervisor.Ready {
			a.park(fn.Name, key, pcfg, 0)
		}
	})
	go func() {
		<-inst.Wait()
		stopAPI()
		a.mu.Lock()
		if a.instances[id] == inst {
			delete(a.instances, id)
		}
		a.mu.Unlock()
	}()
	return inst, nil
}

func (a *Agent) instance(id string) *supervisor.Instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.instances[id]
}

func (a *Agent) handleStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	inst := a.instance(id)
	if inst == nil {
		httpx.WriteError(w, http.StatusNotFound, "no_instance", "instance "+id+" does not run on node "+a.cfg.ID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := inst.Stop(ctx); err != nil {
		a.log.Warn("stop instance", "instance", id, "err", err)
	}
	a.mu.Lock()
	delete(a.instances, id)
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) infos() []api.Instance {
	a.mu.Lock()
	insts := make([]*supervisor.Instance, 0, len(a.instances))
	for _, in := range a.instances {
		insts = append(insts, in)
	}
	a.mu.Unlock()
	out := make([]api.Instance, 0, len(insts))
	for _, in := range insts {
		out = append(out, toAPI(in.Info()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, a.infos())
}

// handleInvoke is the per-instance proxy: it counts the request against the
// instance (so a drain waits for it) and streams it through.
func (a *Agent) handleInvoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	inst := a.instance(id)
	if inst == nil || !inst.Begin() {
		httpx.WriteError(w, http.StatusServiceUnavailable, "instance_gone", "instance "+id+" is not serving on node "+a.cfg.ID+"; the gateway retries elsewhere")
		return
	}
	defer inst.End()
	fn := r.Header.Get(httpx.HeaderFunction) // set by the gateway; Info() would read /proc
	caller := r.Header.Get(httpx.HeaderCaller)
	start := time.Now()
	// A reference in place of the body: pull the bytes (from this node's
	// buffers or the holder's) while they are delivered.
	p, ok, err := a.deref(r.Context(), r.Header, fn)
	if err != nil {
		status, _ := refpass.Status(err)
		writeRefError(w, err)
		a.metrics.observeInvoke(fn, status, time.Since(start), 0, 0)
		return
	}
	if ok {
		defer p.Close()
		r.Body, r.ContentLength = deliverable(p), p.Ref.Size
	}
	status, in, out, err := httpx.ForwardVia(w, r, a.toInst, "http://"+inst.Addr()+"/", func(h http.Header) {
		h.Del(httpx.HeaderToken) // the cluster token never reaches an instance
	}, func(resp *http.Response) error { return a.refAnswer(r.Context(), resp, fn, caller) })
	if errors.Is(err, httpx.ErrUpstream) && isRefError(errors.Unwrap(err)) {
		status, _ = refpass.Status(errors.Unwrap(err))
		writeRefError(w, errors.Unwrap(err))
	} else if errors.Is(err, httpx.ErrUpstream) {
		status = http.StatusBadGateway
		msg := fmt.Sprintf("function %s instance %s on node %s failed: %v", fn, id, a.cfg.ID, errors.Unwrap(err))
		if exit := exitAfterFailure(inst); exit != "" {
			msg += "; the instance exited: " + exit + " (see `handoff logs " + fn + "`)"
		}
		httpx.WriteError(w, status, "instance_failed", msg)
	}
	a.metrics.observeInvoke(fn, status, time.Since(start), in, out)
}

// exitAfterFailure waits briefly for the supervisor to notice that an
// instance died under a request, so the caller learns why (an OOM kill names
// the memory limit); "" if it still runs.
func exitAfterFailure(inst *supervisor.Instance) string {
	deadline := time.Now().Add(250 * time.Millisecond)
	for {
		if st := inst.State(); st != supervisor.Ready && st != supervisor.Draining {
			return inst.Info().LastExit
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handleLogs returns the logs of every instance of a function on this node,
// oldest instance first, each prefixed with a header line.
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	fn := r.PathValue("function")
	if err := spec.CheckName(fn); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_name", err.Error())
		return
	}
	dir := filepath.Join(a.cfg.Dir, "logs", fn)
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(files)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, f := range files {
		what := "instance"
		if strings.HasPrefix(filepath.Base(f), "parked.") {
			what = "parked process"
		}
		fmt.Fprintf(w, "==> node %s %s %s <==\n", a.cfg.ID, what, trimExt(filepath.Base(f)))
		if fh, err := os.Open(f); err == nil {
			_, _ = httpx.Copy(w, fh)
			fh.Close()
		}
	}
}

// validID reports whether id can name an instance (and its log file).
func validID(id string) bool {
	if id == "" || len(id) > 80 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func trimExt(s string) string { return s[:len(s)-len(filepath.Ext(s))] }

func toAPI(i supervisor.Info) api.Instance {
	return api.Instance{
		ID: i.ID, Function: i.Function, PID: i.PID, Addr: i.Addr, State: i.State.String(),
		Restarts: i.Restarts, StartedAt: i.StartedAt, ColdStart: i.ColdStart, MemoryBytes: i.MemoryBytes,
		LastExit: i.LastExit, MemoryLimitEnforced: i.MemoryLimitEnforced,
	}
}

// Parking. A fresh Go instance spends 10-25 ms here between exec and the
// end of its package initialisation, more than the cold-start budget. So
// the agent keeps, for each SDK function that has run on this node, one
// parked process (supervisor.Park): started with the function's own
// environment, waiting inside sdk.Serve for its activation. The next start
// of that function (scale from zero, scale up) activates it instead of
// forking (supervisor.Parked.Activate: instance environment, cgroup, log),
// and the agent parks a new one once the instance has served a moment.
//
// Rules: only functions whose instances announced themselves on the ready
// pipe (the SDK does) are parked; a parked process is keyed on the start
// request (spec, binary path) and the binary's size, time and inode, so a
// redeployed function's old process is killed, never activated; at most
// ParkBudget are kept, the longest-parked one making room; one that dies
// is replaced (three deaths in a row and the function is not parked again
// until its next instance starts); parked processes serve nothing, are not
// instances (not listed, not in heartbeats) and are killed when the agent
// stops. The control plane asks for a redeployed function's new version
// (PUT /v1/parked/{function}) and drops a removed one's
// (DELETE /v1/parked/{function}).

// DefaultParkBudget is the default of Config.ParkBudget.
const DefaultParkBudget = 8

const (
	// parkDelay is how long after an instance's start its function is
	// parked again, so the new process's start-up does not compete with
	// the instance's first requests.
	parkDelay = 200 * time.Millisecond
	// parkTimeout bounds how long a process may take to park.
	parkTimeout = 30 * time.Second
	// maxParkDeaths is how many parked processes of one function may die
	// in a row before the agent stops parking it.
	maxParkDeaths = 3
)

// parkSlot is the parked process of one function. Its fields are guarded
// by Agent.mu.
type parkSlot struct {
	key   string
	cfg   supervisor.Config
	pk    *supervisor.Parked // nil while Park runs
	since time.Time
}

// ParkedInfo describes a parked process in GET /v1/parked.
type ParkedInfo struct {
	Function string    `json:"function"`
	PID      int       `json:"pid"`    // 0 while it starts
	Parked   bool      `json:"parked"` // it waits for its activation
	Since    time.Time `json:"since"`
}

// functionVars is the environment every process of fn gets, parked or
// started: the spec's variables, then its store credential and mount.
func (a *Agent) functionVars(fn spec.Function) []string {
	vars := make([]string, 0, len(fn.Env)+8)
	for k, v := range fn.Env {
		vars = append(vars, k+"="+v)
	}
	sort.Strings(vars)
	vars = append(vars, a.storeEnv(fn)...)
	return append(vars, a.mountEnv(fn)...)
}

// parkConfig returns the key parked processes of req are matched on and
// the configuration of a parked process for it: the function's own
// environment, nothing per instance.
func (a *Agent) parkConfig(req StartRequest) (string, supervisor.Config) {
	fn := req.Function
	command := fn.Run.Command
	if req.Binary != "" {
		command = req.Binary
	}
	h := sha256.New()
	json.NewEncoder(h).Encode(req)
	path := command
	if !filepath.IsAbs(path) && fn.Run.Dir != "" && strings.Contains(path, "/") {
		path = filepath.Join(fn.Run.Dir, path)
	}
	if st, err := os.Stat(path); err == nil {
		fmt.Fprintf(h, "%s %d %d", path, st.Size(), st.ModTime().UnixNano())
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(h, " %d", sys.Ino)
		}
	}
	vars := a.functionVars(fn)
	return hex.EncodeToString(h.Sum(nil)), supervisor.Config{
		Function:     fn.Name,
		Node:         a.cfg.ID,
		Command:      command,
		Args:         fn.Run.Args,
		Dir:          fn.Run.Dir,
		Env:          vars,
		Memory:       int64(fn.Memory),
		CgroupParent: "handoff/" + a.cfg.ID,
		Logger:       a.log,
	}
}

// takeParked hands over fn's parked process if it was parked from key; a
// parked process of another version is killed.
func (a *Agent) takeParked(fn, key string) *supervisor.Parked {
	a.mu.Lock()
	s := a.parked[fn]
	if s == nil || s.pk == nil {
		a.mu.Unlock()
		return nil
	}
	delete(a.parked, fn)
	a.mu.Unlock()
	if s.key != key {
		a.log.Info("function changed: killing its parked process", "function", fn, "pid", s.pk.PID())
		go s.pk.Kill()
		return nil
	}
	return s.pk
}

// park keeps a parked process of fn made from cfg, unless one of the same
// key is there already; one of another key is replaced. deaths counts the
// parked processes of fn that died in a row.
func (a *Agent) park(fn, key string, cfg supervisor.Config, deaths int) {
	budget := a.cfg.ParkBudget
	if budget <= 0 {
		budget = DefaultParkBudget
	}
	var kill []*supervisor.Parked
	a.mu.Lock()
	if a.cfg.NoPark || a.closing {
		a.mu.Unlock()
		return
	}
	if s := a.parked[fn]; s != nil {
		if s.key == key {
			a.mu.Unlock()
			return
		}
		delete(a.parked, fn)
		kill = append(kill, s.pk)
	}
	for len(a.parked) >= budget {
		oldest := ""
		for name, s := range a.parked {
			if oldest == "" || s.since.Before(a.parked[oldest].since) {
				oldest = name
			}
		}
		kill = append(kill, a.parked[oldest].pk)
		delete(a.parked, oldest)
	}
	a.parkSeq++
	cfg.ID = fmt.Sprintf("parked.%d", a.parkSeq)
	cfg.LogPath = filepath.Join(a.cfg.Dir, "logs", fn, cfg.ID+".log")
	slot := &parkSlot{key: key, cfg: cfg, since: time.Now()}
	a.parked[fn] = slot
	a.mu.Unlock()
	for _, pk := range kill {
		if pk != nil {
			pk.Kill()
		}
	}
	pk, err := supervisor.Park(cfg)
	a.mu.Lock()
	mine := a.parked[fn] == slot
	if mine && err == nil {
		slot.pk = pk
	} else if mine {
		delete(a.parked, fn)
	}
	a.mu.Unlock()
	switch {
	case err != nil:
		a.log.Warn("cannot park a process; the next instance starts afresh", "function", fn, "err", err)
	case !mine: // replaced or dropped meanwhile
		pk.Kill()
	default:
		go a.watchParked(fn, slot, pk, deaths)
	}
}

// watchParked replaces a parked process that dies and drops one that does
// not park in time (not an SDK program after all).
func (a *Agent) watchParked(fn string, slot *parkSlot, pk *supervisor.Parked, deaths int) {
	t := time.NewTimer(parkTimeout)
	defer t.Stop()
	select {
	case <-pk.Parked():
		a.log.Debug("process parked", "function", fn, "pid", pk.PID(), "after", time.Since(slot.since))
		deaths = 0
	case <-pk.Exited():
	case <-t.C:
		a.log.Warn("process did not park in time; the function is not parked", "function", fn, "timeout", parkTimeout)
		a.unpark(fn, slot)
		return
	}
	<-pk.Exited()
	a.mu.Lock()
	mine := a.parked[fn] == slot
	if mine {
		delete(a.parked, fn)
	}
	a.mu.Unlock()
	if !mine {
		return // activated, replaced or dropped
	}
	deaths++
	reason := pk.ExitReason()
	pk.Kill() // releases its cgroup and log
	if deaths >= maxParkDeaths {
		a.log.Error("parked processes keep dying; the function is not parked until its next instance", "function", fn, "deaths", deaths, "exit", reason)
		return
	}
	a.log.Warn("parked process died; parking another", "function", fn, "exit", reason)
	time.Sleep(time.Duration(deaths) * 100 * time.Millisecond)
	a.park(fn, slot.key, slot.cfg, deaths)
}

// unpark kills fn's parked process; with slot set, only if it is that one.
func (a *Agent) unpark(fn string, slot *parkSlot) {
	a.mu.Lock()
	s := a.parked[fn]
	if s == nil || slot != nil && s != slot {
		a.mu.Unlock()
		return
	}
	delete(a.parked, fn)
	a.mu.Unlock()
	if s.pk != nil {
		s.pk.Kill()
	}
}

// unparkAll kills every parked process (the agent stops).
func (a *Agent) unparkAll() {
	a.mu.Lock()
	slots := a.parked
	a.parked = make(map[string]*parkSlot)
	a.mu.Unlock()
	for _, s := range slots {
		if s.pk != nil {
			s.pk.Kill()
		}
	}
}

func (a *Agent) handleListParked(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	out := make([]ParkedInfo, 0, len(a.parked))
	for fn, s := range a.parked {
		pi := ParkedInfo{Function: fn, Since: s.since}
		if s.pk != nil {
			pi.PID = s.pk.PID()
			select {
			case <-s.pk.Parked():
				pi.Parked = true
			default:
			}
		}
		out = append(out, pi)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Function < out[j].Function })
	httpx.WriteJSON(w, http.StatusOK, out)
}

// handleRepark is the control plane telling that a function was
// redeployed: a parked process of an older version is replaced by one of
// this version. A function with none parked here is left alone.
func (a *Agent) handleRepark(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "park request: "+err.Error())
		return
	}
	fn := r.PathValue("function")
	if req.Function.Name != fn || spec.CheckName(fn) != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("park request: the body names function %q, the path %q; they must be the same valid name", req.Function.Name, fn))
		return
	}
	key, cfg := a.parkConfig(req)
	a.mu.Lock()
	s := a.parked[fn]
	a.mu.Unlock()
	if s != nil && s.key != key {
		go a.park(fn, key, cfg, 0)
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleUnpark is the control plane telling that a function was removed.
func (a *Agent) handleUnpark(w http.ResponseWriter, r *http.Request) {
	a.unpark(r.PathValue("function"), nil)
	w.WriteHeader(http.StatusNoContent)
}
