// Package control is the control plane: the function registry, the gateway and
// its router, the autoscaler loop, the durable async queue and the registry of
// node agents.
//
// # Usage
//
//	srv, err := control.New(control.Config{Dir: dir, Listen: "127.0.0.1:0", Token: token})
//	...
//	go srv.Run(ctx)          // serves until ctx is done, then drains
//	<-srv.Ready()
//	fmt.Println(srv.URL())   // the gateway
//
// Node agents (package node) register themselves by heartbeat; the embedded
// platform starts them as child processes with Launcher.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/autoscale"
	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/state"
	"github.com/handoff-dev/handoff/store/meta"
	"github.com/handoff-dev/handoff/xfer"
)

// Config configures the control plane.
type Config struct {
	Dir    string // state directory (state.db, built binaries)
	Listen string // gateway address; "127.0.0.1:0" picks a free port
	Token  string // the cluster token node agents present
	// AdminToken guards the management API (deploy, remove, status, logs).
	AdminToken string
	InlineMax  int64 // largest inline body; 0 means xfer.DefaultInlineMax
	// MaxQueue bounds the requests waiting per function (default 1000).
	MaxQueue int
	// AsyncWorkers run async invocations concurrently (default 16).
	AsyncWorkers int
	// AsyncAttempts is how often an async invocation is tried (default 3).
	AsyncAttempts int
	// Tick is the autoscaler period (default 1s).
	Tick time.Duration
	// NodeTimeout declares a silent node agent lost (default 5s).
	NodeTimeout time.Duration
	// DrainTimeout bounds the drain of in-flight requests on shutdown (default 30s).
	DrainTimeout time.Duration
	// RunSlots is how many workflow tasks one node agent hosts in one run
	// (default DefaultRunSlots).
	RunSlots int
	Clock    clock.Clock
	Logger   *slog.Logger
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.InlineMax <= 0 {
		c.InlineMax = xfer.DefaultInlineMax
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 1000
	}
	if c.AsyncWorkers <= 0 {
		c.AsyncWorkers = 16
	}
	if c.AsyncAttempts <= 0 {
		c.AsyncAttempts = 3
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.RunSlots <= 0 {
		c.RunSlots = DefaultRunSlots
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is a running control plane.
type Server struct {
	cfg     Config
	log     *slog.Logger
	db      *state.DB
	meta    *meta.DB // the store's metadata, served to node agents (store.go)
	policy  xfer.Policy
	metrics *metrics
	toNodes http.RoundTripper // small requests on the fast path (httpx.Hybrid)
	wire    *wirePool         // small invocations to node agents (package wire)
	direct  *wirePool         // small invocations straight to SDK instances
	ln      net.Listener
	ready   chan struct{}
	pokes   chan string   // function names that need the scaler now
	asyncCh chan struct{} // wakes async workers

	// mu guards all following fields, and the fields of function and
	// nodeState marked as guarded by it. Lock order: Server.mu before
	// route.mu; no path takes Server.mu while holding a route's lock.
	mu    sync.Mutex
	funcs map[string]*function
	nodes map[string]*nodeState

	runsMu sync.Mutex // guards runs; never held with mu
	runs   map[string]*runState
	active sync.WaitGroup // runs being executed
}

// function is a deployed function and its runtime state.
type function struct {
	spec    spec.Function
	version int64
	binary  string // built from spec.Run.Go, if any
	route   *route
	scaler  *autoscale.Autoscaler

	// guarded by Server.mu:
	starting  int
	instances map[string]*instanceRef
	// parkedOn is the node where an instance last started: its agent keeps
	// a parked process of the function there, so the next start that
	// finds the nodes equally loaded goes back to it.
	parkedOn string
	decision autoscale.Decision
	removed  bool
}

type instanceRef struct {
	id, node string
	started  time.Time
}

// New opens the state under cfg.Dir and prepares the server; Run serves.
func New(cfg Config) (*Server, error) {
	cfg.defaults()
	if cfg.Dir == "" || cfg.Token == "" || cfg.AdminToken == "" {
		return nil, errors.New("control: Dir, Token and AdminToken are required")
	}
	db, err := state.Open(filepath.Join(cfg.Dir, "state.db"), cfg.Clock)
	if err != nil {
		return nil, err
	}
	smeta, err := openStoreMeta(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		db.Close()
		smeta.Close()
		return nil, fmt.Errorf("control: gateway cannot listen on %s: %w; pick another --listen address", cfg.Listen, err)
	}
	s := &Server{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "control"),
		db:   db,
		meta: smeta,
		// Every node agent runs reference passing; an upload over the
		// inline limit goes by reference.
		policy:  xfer.Policy{InlineMax: cfg.InlineMax, Available: map[xfer.Mode]bool{xfer.Ref: true}},
		toNodes: httpx.NewHybrid(),
		wire:    newWirePool(cfg.Token),
		direct:  newDirectPool(),
		ln:      ln,
		ready:   make(chan struct{}),
		pokes:   make(chan string, 64),
		asyncCh: make(chan struct{}, 1),
		funcs:   make(map[string]*function),
		nodes:   make(map[string]*nodeState),
		runs:    make(map[string]*runState),
	}
	s.metrics = newMetrics(s)
	stored, err := db.Functions()
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, sf := range stored {
		if _, err := s.install(sf.Function, sf.Version); err != nil {
			s.log.Error("cannot restore function; redeploy it", "function", sf.Function.Name, "err", err)
		}
	}
	return s, nil
}

// URL is the gateway's base URL.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Ready is closed once the gateway serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Close releases the listener and the database; Run does this itself.
func (s *Server) Close() error {
	s.ln.Close()
	s.meta.Close()
	return s.db.Close()
}

// Run serves the gateway, the scaler and the async workers until ctx is done;
// then it drains in-flight requests, stops every instance and closes the state.
func (s *Server) Run(ctx context.Context) error {
	// The front answers invocations on the connection's own goroutine and
	// hands every other connection to net/http.
	fr := newFront(s, s.ln)
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(fr.handoff) }()
	go fr.serve()

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.scaleLoop(bg) }()
	go func() { defer wg.Done(); s.watchNodes(bg) }()
	asyncDone := s.startAsync(bg)
	close(s.ready)
	s.log.Info("gateway serving", "url", s.URL())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down: draining in-flight requests")
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.failWaiters(errors.New("control: the platform is shutting down; retry once it is back"))
	fr.shutdown(dctx)
	if e := srv.Shutdown(dctx); e != nil {
		s.log.Warn("drain incomplete", "err", e)
	}
	// No run starts after the gateway stopped; end those under way.
	s.cancelRuns(dctx)
	stopBG()
	<-asyncDone
	wg.Wait()
	s.stopAllInstances(dctx)
	s.meta.Close()
	if e := s.db.Close(); e != nil && err == nil {
		err = e
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) failWaiters(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.funcs {
		f.route.failAll(err)
	}
}

// install makes f (already stored at version) live, replacing an older version.
func (s *Server) install(f spec.Function, version int64) (*function, error) {
	binary := ""
	if f.Run.Go != "" {
		var err error
		binary, err = s.build(f, version)
		if err != nil {
			return nil, err
		}
	}
	sc, err := autoscale.New(autoscale.Config{
		Target:           f.Scale.Target,
		Min:              f.Scale.Min,
		Max:              f.Scale.Max,
		StableWindow:     f.Scale.StableWindow.Std(),
		PanicWindow:      f.Scale.PanicWindow.Std(),
		ScaleToZeroGrace: f.Scale.ScaleToZeroGrace.Std(),
	})
	if err != nil {
		return nil, fmt.Errorf("function %s: autoscaler: %w", f.Name, err)
	}
	name := f.Name
	fn := &function{
		spec:      f,
		version:   version,
		binary:    binary,
		route:     newRoute(name, s.cfg.MaxQueue, func() { s.poke(name) }, time.Now()),
		scaler:    sc,
		instances: make(map[string]*instanceRef),
	}
	s.mu.Lock()
	old := s.funcs[name]
	s.funcs[name] = fn
	s.mu.Unlock()
	if old != nil {
		s.retire(old, "replaced by version "+fmt.Sprint(version))
	}
	s.poke(name)
	return fn, nil
}

// retire stops every instance of a function that was removed or replaced.
// Requests already waiting for it move to its successor if there is one.
func (s *Server) retire(old *function, why string) {
	s.mu.Lock()
	old.removed = true
	refs := make([]*instanceRef, 0, len(old.instances))
	for _, ref := range old.instances {
		refs = append(refs, ref)
	}
	s.mu.Unlock()
	old.route.failAll(fmt.Errorf("%w: function %s was %s while the request waited; retry", ErrNoFunction, old.spec.Name, why))
	for _, ref := range refs {
		// Draining, not removed: stopInstance waits for the calls sent
		// straight to it, then takes it out.
		old.route.drain(ref.id)
		go s.stopInstance(old, ref)
	}
}

func (s *Server) function(name string) *function {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.funcs[name]
}

func (s *Server) functionNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.funcs))
	for n := range s.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *Server) poke(name string) {
	select {
	case s.pokes <- name:
	default:
	}
}
