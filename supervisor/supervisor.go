// Package supervisor runs function instances as processes for a node agent:
// it picks the instance's port, starts the process with the instance contract
// environment (docs/architecture.md, "Instance contract"), waits until it
// accepts TCP connections, restarts it with exponential backoff when it
// crashes, appends its output to a rotating log file, confines it to a memory
// limit (package cgroup) and drains it before stopping it.
//
// # Usage
//
//	inst, err := supervisor.Start(ctx, supervisor.Config{
//		ID: "i-1", Function: "resize", Node: "n1",
//		Command: "/var/lib/handoff/bin/resize",
//		APISocket: "/run/handoff/n1.sock",
//		Memory: 64 << 20, CgroupParent: "handoff/n1",
//		LogPath: "/var/lib/handoff/logs/resize/i-1.log",
//	})
//	if err != nil {
//		return err // includes the last lines the process printed
//	}
//	if inst.Begin() {
//		defer inst.End()
//		// send the request to inst.Addr()
//	}
//	...
//	err = inst.Stop(ctx) // drain, SIGTERM, SIGKILL after 5s
//
// # Lifecycle
//
// Start returns once the process is Ready. From then on one goroutine per
// instance owns the process: when it exits without Stop having been called,
// the instance goes to Restarting and the process is started again after a
// backoff (RestartBackoffMin, doubling up to RestartBackoffMax; back to the
// minimum once a process has run healthy for 30s). Five consecutive failed
// starts (exit or timeout before ready) make the instance Failed. Stop moves
// it to Draining, waits for in-flight requests, terminates the process group
// and ends in Stopped. Stopped and Failed are final; Wait's channel is closed
// then.
//
// # Process hygiene
//
// Every process gets its own process group (signals reach its children too),
// is killed with SIGKILL when the node agent dies (Pdeathsig; the fork happens
// on one OS thread locked for the life of the agent, because Linux sends the
// signal when the forking thread, not the process, exits), reads stdin from
// /dev/null, and inherits no file descriptors besides stdout, stderr and the
// write end of its ready pipe as fd 3 ($HANDOFF_READY_FD; every other fd
// above 2 is marked close-on-exec before the fork). When the group
// leader exits, whatever is left of its process group is killed before the
// leader is reaped, so a crashed instance cannot leave children holding its
// port. Children that start their own session escape the process group; with
// a memory limit they stay in the cgroup and are killed with it.
//
// The environment is not the node agent's (which may hold the cluster
// token): it is PATH, HOME, TMPDIR, LANG and TZ from the agent, then
// Config.Env, then the contract variables, which cannot be overridden.
//
// # Memory limits
//
// With Config.Memory > 0 each instance gets its own cgroup under
// Config.CgroupParent. On cgroup v2 the process is born inside it (clone3 with
// CLONE_INTO_CGROUP). On cgroup v1 it is moved in right after the fork, so the
// first microseconds of the new process (exec and the start of its runtime)
// are charged to the node agent's group; this is a few hundred KiB at most.
// When no cgroup can be created the instance runs without a limit, the node
// logs one warning, and Info.MemoryLimitEnforced is false.
//
// # Parked processes
//
// Park starts a function's program before an instance needs it, with the
// function's environment only; the SDK waits for its activation inside
// sdk.Serve. Parked.Activate makes it an Instance (its environment, port,
// cgroup and log), which then runs as one Start made. See park.go for the
// protocol and for what happens to the memory charged before activation.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/cgroup"
)

// Defaults for the zero values of Config.
const (
	DefaultReadyTimeout      = 30 * time.Second
	DefaultRestartBackoffMin = 100 * time.Millisecond
	DefaultRestartBackoffMax = 10 * time.Second

	// healthyAfter is how long a process must run for the backoff to reset.
	healthyAfter = 30 * time.Second
	// maxFailedStarts is how many consecutive failed starts make an
	// instance Failed.
	maxFailedStarts = 5
	// termGrace is how long Stop waits after SIGTERM before SIGKILL.
	termGrace = 5 * time.Second
	// tailLines is how many log lines a start error carries.
	tailLines = 20
)

// ErrStopped is returned by Start when ctx ends, or Stop is called, before
// the instance is ready.
var ErrStopped = errors.New("supervisor: instance stopped before it was ready")

// Config describes one instance. Only Command is required besides the ids.
type Config struct {
	ID, Function, Node string

	// Command is the executable, Args its arguments (without argv[0]), Dir
	// its working directory (empty: the node agent's).
	Command string
	Args    []string
	Dir     string
	// Env holds extra "K=V" entries. The supervisor adds PORT,
	// HANDOFF_FUNCTION, HANDOFF_INSTANCE, HANDOFF_NODE, HANDOFF_API and
	// HANDOFF_READY_FD (a pipe on which the process may write "ready\n"
	// once it serves, sooner than the next connection probe).
	Env []string
	// APISocket is the node agent's local API socket, passed as HANDOFF_API.
	APISocket string

	// Memory is the memory limit in bytes; 0 means no limit.
	Memory int64
	// CgroupParent is the cgroup path the instance's group is created under,
	// e.g. "handoff/n1". Empty means "handoff/<Node>".
	CgroupParent string

	// LogPath receives stdout and stderr, appended; its directory is
	// created. At 16 MiB the file is renamed to LogPath+".1" (replacing the
	// previous one) and a new one started. Empty means output is kept only
	// for start errors. Each instance needs its own LogPath.
	LogPath string

	// ReadyTimeout bounds each start; default 30s.
	ReadyTimeout time.Duration
	// RestartBackoffMin and RestartBackoffMax bound the delay before a
	// restart; defaults 100ms and 10s.
	RestartBackoffMin, RestartBackoffMax time.Duration

	// Logger receives the supervisor's own messages; default slog.Default().
	Logger *slog.Logger
	// OnState, if set, is called on every state change, in order, from the
	// goroutine that made the change. It must return quickly and must not
	// call Stop (it may call State, Info and the other accessors).
	OnState func(id string, s State)
}

// State is where an instance is in its lifecycle.
type State int

const (
	Starting   State = iota // process started, not yet accepting connections
	Ready                   // accepting requests
	Restarting              // the process exited unexpectedly; a new one is on its way
	Draining                // Stop called; waiting for in-flight requests
	Stopped                 // final: stopped by Stop
	Failed                  // final: could not be (re)started
)

var stateNames = [...]string{"starting", "ready", "restarting", "draining", "stopped", "failed"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText makes State appear as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// final reports whether s is a state the instance never leaves.
func (s State) final() bool { return s == Stopped || s == Failed }

// Info is a snapshot of an instance for listings and metrics.
type Info struct {
	ID       string `json:"id"`
	Function string `json:"function"`
	PID      int    `json:"pid"` // current process, 0 when none
	Addr     string `json:"addr"`
	State    State  `json:"state"`
	// Restarts counts processes started after the first one.
	Restarts int `json:"restarts"`
	// StartedAt is when the current (or last) process was spawned.
	StartedAt time.Time `json:"started_at"`
	// ColdStart is spawn to ready of the first process.
	ColdStart time.Duration `json:"cold_start_ns"`
	// MemoryBytes is the cgroup's usage when the limit is enforced, else the
	// process's resident set size; 0 when there is no process.
	MemoryBytes int64 `json:"memory_bytes"`
	MemoryLimit int64 `json:"memory_limit"`
	// LastExit describes how the last process ended ("exit status 2",
	// "signal: killed (out of memory: ...)"), empty if none has.
	LastExit            string `json:"last_exit,omitempty"`
	MemoryLimitEnforced bool   `json:"memory_limit_enforced"`
}

// Instance is a supervised function instance. Its methods are safe for
// concurrent use.
type Instance struct {
	cfg Config        // immutable after Start
	log *slog.Logger  // immutable
	out *logSink      // has its own lock
	cg  *cgroup.Group // nil when the memory limit is not enforced; immutable

	stopping chan struct{} // closed when Stop is first called
	kill     chan struct{} // closed by Stop when the drain is over
	done     chan struct{} // closed when the state becomes final
	stopOnce sync.Once
	killOnce sync.Once

	// notifyMu serialises state changes with their OnState callbacks so
	// callers see them in order. Lock order: notifyMu, then mu.
	notifyMu sync.Mutex

	mu        sync.Mutex // guards all following fields
	state     State
	inflight  int
	idle      chan struct{} // closed when inflight drops to 0; nil unless Stop waits
	port      int
	pid       int
	cur       *proc // the current (or last) process
	restarts  int
	startedAt time.Time
	coldStart time.Duration
	lastExit  string
	oomSeen   int // OOM kills already attributed to an exit
}

// Start starts the instance's process and returns once it accepts TCP
// connections on 127.0.0.1:$PORT. The error of a failed start includes the
// last lines the process printed. ctx bounds only the start; the instance
// then runs until Stop.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	i := newInstance(cfg)
	out, err := openLogSink(cfg.LogPath)
	if err != nil {
		return nil, fmt.Errorf("supervisor: start instance %s of %s: %w", cfg.ID, cfg.Function, err)
	}
	i.out = out
	if cfg.Memory > 0 {
		g, err := cgroup.New(cfg.CgroupParent, cgroupName(cfg.ID), cfg.Memory)
		if err != nil {
			warnUnenforced(i.log, cfg, err)
		} else {
			i.cg = g
		}
	}
	port, err := pickPort(0)
	if err != nil {
		i.cleanup()
		return nil, fmt.Errorf("supervisor: start instance %s of %s: %w", cfg.ID, cfg.Function, err)
	}
	i.setPort(port)
	i.setState(Starting)

	p, err := i.spawn(port)
	if err == nil {
		err = i.waitReady(ctx, p)
		if err != nil {
			i.terminate(p, 0)
			err = i.startError(p, err)
		}
	}
	if err != nil {
		i.finish(Failed, nil)
		return nil, fmt.Errorf("supervisor: start instance %s of %s: %w", cfg.ID, cfg.Function, err)
	}
	i.mu.Lock()
	i.coldStart = time.Since(p.spawnedAt)
	cold := i.coldStart
	i.mu.Unlock()
	i.log.Debug("instance ready", "pid", p.pid, "addr", i.Addr(), "cold_start", cold)
	i.setState(Ready)
	go i.run(p)
	return i, nil
}

// withDefaults checks cfg and fills in its zero values.
func withDefaults(cfg Config) (Config, error) {
	if cfg.ID == "" || cfg.Command == "" {
		return cfg, fmt.Errorf("supervisor: config needs an ID and a Command (got ID %q, Command %q)", cfg.ID, cfg.Command)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.RestartBackoffMin <= 0 {
		cfg.RestartBackoffMin = DefaultRestartBackoffMin
	}
	if cfg.RestartBackoffMax <= 0 {
		cfg.RestartBackoffMax = DefaultRestartBackoffMax
	}
	if cfg.RestartBackoffMax < cfg.RestartBackoffMin {
		cfg.RestartBackoffMax = cfg.RestartBackoffMin
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "handoff"
		if cfg.Node != "" {
			cfg.CgroupParent += "/" + cgroupName(cfg.Node)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// newInstance makes the Instance of cfg (defaults applied) with no
// process, log sink or cgroup yet.
func newInstance(cfg Config) *Instance {
	return &Instance{
		cfg:      cfg,
		log:      cfg.Logger.With("instance", cfg.ID, "function", cfg.Function),
		stopping: make(chan struct{}),
		kill:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Announced reports whether the current process said it was ready on its
// ready pipe, as the SDK does and plain HTTP programs do not: the node
// agent parks only functions whose instances announce themselves.
func (i *Instance) Announced() bool {
	i.mu.Lock()
	p := i.cur
	i.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.announced:
		return true
	default:
		return false
	}
}

// Addr is the instance's "127.0.0.1:PORT". The port is kept across restarts
// unless another process took it meanwhile.
func (i *Instance) Addr() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.addrLocked()
}

func (i *Instance) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(i.port))
}

// State reports the instance's current state.
func (i *Instance) State() State {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// Begin counts a request the caller is about to send. It reports false, and
// counts nothing, unless the instance is Ready; the caller must then not send
// (and must not call End). Every true must be matched by one End.
func (i *Instance) Begin() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.state != Ready {
		return false
	}
	i.inflight++
	return true
}

// End marks a request counted by Begin as finished.
func (i *Instance) End() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.inflight <= 0 {
		panic("supervisor: End without Begin")
	}
	i.inflight--
	if i.inflight == 0 && i.idle != nil {
		close(i.idle)
		i.idle = nil
	}
}

// InFlight reports how many requests are between Begin and End.
func (i *Instance) InFlight() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.inflight
}

// Wait returns a channel closed when the instance is finally Stopped or
// Failed.
func (i *Instance) Wait() <-chan struct{} { return i.done }

// Stop drains and stops the instance: new Begin calls fail at once, Stop
// waits until InFlight is 0 or ctx is done, sends SIGTERM to the process
// group, SIGKILL 5s later if it is still there, and removes the cgroup. It
// returns once the instance is Stopped (or Failed). Calling Stop again, or
// concurrently, waits for the same end. The error says how many requests
// were cut off when ctx ended the drain.
func (i *Instance) Stop(ctx context.Context) error {
	i.stopOnce.Do(func() {
		close(i.stopping)
		i.setState(Draining)
	})
	err := i.drain(ctx)
	i.killOnce.Do(func() { close(i.kill) })
	<-i.done
	return err
}

// drain waits until no request is in flight, the instance is final or ctx
// ends.
func (i *Instance) drain(ctx context.Context) error {
	for {
		i.mu.Lock()
		n := i.inflight
		if n == 0 {
			i.mu.Unlock()
			return nil
		}
		if i.idle == nil {
			i.idle = make(chan struct{})
		}
		idle := i.idle
		i.mu.Unlock()
		select {
		case <-idle:
		case <-i.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("supervisor: stop instance %s: drain cut short with %d requests in flight: %w",
				i.cfg.ID, n, ctx.Err())
		}
	}
}

// Info returns a snapshot of the instance.
func (i *Instance) Info() Info {
	i.mu.Lock()
	info := Info{
		ID:                  i.cfg.ID,
		Function:            i.cfg.Function,
		PID:                 i.pid,
		Addr:                i.addrLocked(),
		State:               i.state,
		Restarts:            i.restarts,
		StartedAt:           i.startedAt,
		ColdStart:           i.coldStart,
		LastExit:            i.lastExit,
		MemoryLimit:         i.cfg.Memory,
		MemoryLimitEnforced: i.cg != nil,
	}
	i.mu.Unlock()
	if info.PID != 0 {
		if i.cg != nil {
			info.MemoryBytes, _ = i.cg.MemoryUsage()
		} else {
			info.MemoryBytes = rss(info.PID)
		}
	}
	return info
}

// setState moves the instance to s and reports it to OnState. Final states
// are never left, and a draining instance only moves to a final state.
func (i *Instance) setState(s State) {
	i.notifyMu.Lock()
	defer i.notifyMu.Unlock()
	i.mu.Lock()
	cur := i.state
	if cur == s && s != Starting || cur.final() || cur == Draining && !s.final() {
		i.mu.Unlock()
		return
	}
	i.state = s
	i.mu.Unlock()
	if i.cfg.OnState != nil {
		i.cfg.OnState(i.cfg.ID, s)
	}
}

func (i *Instance) setPort(port int) {
	i.mu.Lock()
	i.port = port
	i.mu.Unlock()
}

// run owns the process from the first Ready on until the instance is final.
func (i *Instance) run(p *proc) {
	backoff := i.cfg.RestartBackoffMin
	for {
		readyAt := time.Now()
		select {
		case <-p.exited:
		case <-i.kill:
			i.terminate(p, termGrace)
			i.finish(Stopped, p)
			return
		}
		desc := i.exitReason(p)
		i.mu.Lock()
		i.lastExit = desc
		i.pid = 0
		i.mu.Unlock()
		select {
		case <-i.stopping:
			i.finish(Stopped, p)
			return
		default:
		}
		if time.Since(readyAt) >= healthyAfter {
			backoff = i.cfg.RestartBackoffMin
		}
		i.log.Warn("instance exited, restarting", "exit", desc, "backoff", backoff, "last_output", strings.Join(i.out.tail(3), " | "))
		i.setState(Restarting)

		failures := 0
		for {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-i.stopping:
				t.Stop()
				i.finish(Stopped, p)
				return
			}
			backoff = min(2*backoff, i.cfg.RestartBackoffMax)
			var err error
			p, err = i.restart()
			if err == nil {
				break
			}
			failures++
			i.mu.Lock()
			i.lastExit = err.Error()
			i.mu.Unlock()
			select {
			case <-i.stopping:
				i.finish(Stopped, p)
				return
			default:
			}
			if failures >= maxFailedStarts {
				i.log.Error("instance failed: giving up after consecutive failed starts", "failures", failures, "err", err)
				i.finish(Failed, nil)
				return
			}
			i.log.Warn("instance restart failed", "failures", failures, "err", err)
		}
		i.setState(Ready)
	}
}

// restart starts a new process on the old port if it is free and waits for
// it to be ready.
func (i *Instance) restart() (*proc, error) {
	i.mu.Lock()
	old := i.port
	i.restarts++
	i.mu.Unlock()
	port, err := pickPort(old)
	if err != nil {
		return nil, err
	}
	if port != old {
		i.log.Info("instance port was taken, moving", "old", old, "new", port)
		i.setPort(port)
	}
	p, err := i.spawn(port)
	if err != nil {
		return nil, err
	}
	// Stop during a restart aborts the readiness wait.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-i.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := i.waitReady(ctx, p); err != nil {
		i.terminate(p, 0)
		return nil, i.startError(p, err)
	}
	return p, nil
}

// waitReady returns when the process announces it is ready on its ready
// pipe (the SDK does), or else when a TCP connect to its port succeeds: it
// polls every 0.5ms growing
// to 1ms for the first second (a cold start takes 10-30ms, and a coarser poll
// would add up to its interval to every one; a failed connect costs a few
// microseconds), then growing to 20ms, until it succeeds, the process exits,
// ctx ends or ReadyTimeout passes.
func (i *Instance) waitReady(ctx context.Context, p *proc) error {
	deadline := time.NewTimer(i.cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTimer(0)
	defer tick.Stop()
	<-tick.C
	interval := 500 * time.Microsecond
	start := time.Now()
	d := net.Dialer{Timeout: time.Second}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		tick.Reset(interval)
		select {
		case <-p.announced:
			return nil
		case <-tick.C:
		case <-p.exited:
			return fmt.Errorf("process exited before it was ready (%s)", i.exitReason(p))
		case <-deadline.C:
			return fmt.Errorf("not ready after %v: nothing accepted connections on %s (the process must serve HTTP on $PORT)", i.cfg.ReadyTimeout, addr)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrStopped, ctx.Err())
		}
		ceiling := 20 * time.Millisecond
		if time.Since(start) < time.Second {
			ceiling = time.Millisecond
		}
		interval = min(interval*5/4, ceiling)
	}
}

// startError adds the process's last output lines to a start error.
func (i *Instance) startError(p *proc, err error) error {
	// Let the output pipe drain; the process is gone, so EOF is near
	// unless a grandchild still holds it.
	select {
	case <-p.logDone:
	case <-time.After(200 * time.Millisecond):
	}
	lines := i.out.tail(tailLines)
	if len(lines) == 0 {
		return fmt.Errorf("%w; the process printed nothing", err)
	}
	return fmt.Errorf("%w; last output:\n%s", err, strings.Join(lines, "\n"))
}

// exitReason describes how p ended, naming an OOM kill when the cgroup saw
// one. Call it only after p.exited is closed.
func (i *Instance) exitReason(p *proc) string {
	desc := "exited"
	if p.err != nil {
		desc = p.err.Error()
	} else if p.state != nil {
		desc = p.state.String()
	}
	if i.cg != nil {
		if n, err := i.cg.OOMKills(); err == nil {
			i.mu.Lock()
			seen := i.oomSeen
			i.oomSeen = n
			i.mu.Unlock()
			if n > seen {
				desc += fmt.Sprintf(" (out of memory: killed by the kernel for exceeding the %s limit)", fmtBytes(i.cfg.Memory))
			}
		}
	}
	return desc
}

// terminate ends p: SIGTERM to its process group, then SIGKILL after grace
// (at once when grace is 0). It returns once p is reaped.
func (i *Instance) terminate(p *proc, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	sig := syscall.SIGTERM
	if grace == 0 {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-p.pid, sig)
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
			t.Stop()
			return
		case <-t.C:
			i.log.Warn("instance ignored SIGTERM, killing it", "pid", p.pid, "grace", grace)
		}
		syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	<-p.exited
}

// finish moves the instance to its final state and releases its resources.
// p, if not nil, is the last process, whose remaining output is awaited
// briefly so it reaches the log.
func (i *Instance) finish(s State, p *proc) {
	if p != nil {
		select {
		case <-p.logDone:
		case <-time.After(200 * time.Millisecond):
		}
	}
	i.mu.Lock()
	i.pid = 0
	i.mu.Unlock()
	i.setState(s)
	i.cleanup()
	close(i.done)
}

func (i *Instance) cleanup() {
	if i.cg != nil {
		if err := i.cg.Kill(); err != nil {
			i.log.Warn("kill remaining processes in cgroup", "err", err)
		}
		if err := i.cg.Close(); err != nil {
			i.log.Warn("remove cgroup", "err", err)
		}
	}
	i.out.close()
}

// cgroupName makes an id safe as one cgroup path element.
func cgroupName(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, strings.TrimLeft(id, "."))
}

var (
	warnMu sync.Mutex
	warned = map[string]bool{} // node ids already warned about unenforced limits
)

// warnUnenforced logs, once per node, that memory limits are not enforced.
func warnUnenforced(lg *slog.Logger, cfg Config, err error) {
	warnMu.Lock()
	first := !warned[cfg.Node]
	warned[cfg.Node] = true
	warnMu.Unlock()
	if first {
		lg.Warn(fmt.Sprintf("memory limit %s for function %s is not enforced: %v (further instances on node %s run unlimited without another warning)",
			fmtBytes(cfg.Memory), cfg.Function, err, cfg.Node))
	}
}

// fmtBytes renders n as Ki/Mi/Gi when it is a whole multiple.
func fmtBytes(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// rss reads VmRSS from /proc/pid/status, 0 if unavailable.
func rss(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// pickPort returns prev if it can be bound on 127.0.0.1, else a free port.
func pickPort(prev int) (int, error) {
	if prev != 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(prev))); err == nil {
			l.Close()
			return prev, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port, nil
}

// baseEnv is what an instance inherits from the node agent.
var baseEnv = []string{"PATH", "HOME", "TMPDIR", "LANG", "TZ"}

// functionEnv is the start of a process's environment: what it inherits
// from the node agent, then the function's own variables; extra is room
// for the caller's.
func functionEnv(fnEnv []string, extra int) []string {
	env := make([]string, 0, len(baseEnv)+len(fnEnv)+extra)
	for _, k := range baseEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		env = append(env, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	return append(env, fnEnv...)
}

func (i *Instance) env(port int) []string {
	return append(functionEnv(i.cfg.Env, 5),
		"PORT="+strconv.Itoa(port),
		"HANDOFF_FUNCTION="+i.cfg.Function,
		"HANDOFF_INSTANCE="+i.cfg.ID,
		"HANDOFF_NODE="+i.cfg.Node,
		"HANDOFF_API="+i.cfg.APISocket,
	)
}
