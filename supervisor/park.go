package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/cgroup"
)

// Parked processes ("stem cells").
//
// A Go program pays 10-25 ms on this kind of machine between exec and the
// end of its package initialisation, mostly first-touch page faults of its
// runtime and packages. Park pays it before a request needs the process:
// it starts the function's program with its per-function environment only
// (the spec's env, HANDOFF_FUNCTION, HANDOFF_NODE) and with
// HANDOFF_PARK_FD=4, one end of a Unix socket pair. The SDK (sdk.Serve)
// then writes "parked\n" on it and waits, before it reads any per-instance
// variable or opens a listener. Activate turns the parked process into an
// Instance: it names the process's cgroup after the instance, writes the
// activation (one line of JSON, {"env": ["K=V", ...]}: the whole instance
// environment, PORT and the contract variables included) and waits for the
// usual readiness announcement on the ready pipe. From then on the instance
// is supervised exactly as one Start made; a restart after a crash is an
// ordinary fork and exec with the full environment.
//
// The parked process is in a cgroup of its own from its first instruction
// (born in it on v2; moved in right after the fork on v1, as Start does), made
// with the function's memory limit. Activation renames that group to the
// instance's name on v1 rather than moving the process into a new one: a v1
// move leaves every page already charged behind in the old group (unless
// memory.move_charge_at_immigrate is set, which is deprecated and walks
// the page tables), while a rename keeps the group and all its charges. v2
// cannot rename a cgroup; there the instance keeps the group its process
// was born in, named after the park id.

// Parked is a process of a function that has done its runtime and package
// start-up and waits for Activate. It never serves traffic. Its methods are
// safe for concurrent use.
type Parked struct {
	cfg  Config
	log  *slog.Logger
	out  *logSink
	cg   *cgroup.Group
	p    *proc
	sock *os.File // the agent's end of the activation socket

	parked chan struct{} // closed when the process says it waits

	mu    sync.Mutex // guards taken
	taken bool       // Activate or Kill was called
}

// ErrNotParked is returned by Activate when the parked process is gone or
// was already taken.
var ErrNotParked = errors.New("supervisor: the parked process is no longer available")

// Park starts cfg's program as a parked process. cfg.ID names the parked
// process (its cgroup and, in messages, the process) and cfg.LogPath its
// log until activation; cfg.Env is the per-function environment. Park
// returns once the process is started; Parked reports when it waits.
func Park(cfg Config) (*Parked, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	pk := &Parked{
		cfg:    cfg,
		log:    cfg.Logger.With("parked", cfg.ID, "function", cfg.Function),
		parked: make(chan struct{}),
	}
	out, err := openLogSink(cfg.LogPath)
	if err != nil {
		return nil, fmt.Errorf("supervisor: park a process of %s: %w", cfg.Function, err)
	}
	pk.out = out
	if cfg.Memory > 0 {
		if g, err := cgroup.New(cfg.CgroupParent, cgroupName(cfg.ID), cfg.Memory); err == nil {
			pk.cg = g
		} else {
			warnUnenforced(pk.log, cfg, err)
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		pk.release()
		return nil, fmt.Errorf("supervisor: park a process of %s: activation socket: %w", cfg.Function, err)
	}
	// The agent's end goes through the runtime poller (deadlines work).
	unix.SetNonblock(fds[0], true)
	pk.sock = os.NewFile(uintptr(fds[0]), "park")
	child := os.NewFile(uintptr(fds[1]), "park-child")
	p, err := spawnProc(spawnSpec{
		command: cfg.Command, args: cfg.Args, dir: cfg.Dir,
		env: pk.env(), out: pk.out, cg: pk.cg, park: child,
	}, 0)
	child.Close()
	if err != nil {
		pk.sock.Close()
		pk.release()
		return nil, fmt.Errorf("supervisor: park a process of %s: %w", cfg.Function, err)
	}
	pk.p = p
	go pk.readParked()
	return pk, nil
}

// env is the parked process's environment: the agent's base variables, the
// per-function ones, and the two descriptors.
func (pk *Parked) env() []string {
	return append(functionEnv(pk.cfg.Env, 5),
		"HANDOFF_FUNCTION="+pk.cfg.Function,
		"HANDOFF_NODE="+pk.cfg.Node,
		"HANDOFF_READY_FD=3",
		"HANDOFF_PARK_FD=4",
	)
}

// readParked closes pk.parked when the process writes "parked\n".
func (pk *Parked) readParked() {
	var buf [16]byte
	n := 0
	for n < len(buf) {
		m, err := pk.sock.Read(buf[n:])
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			if string(buf[:i]) == "parked" {
				close(pk.parked)
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// Parked returns a channel closed once the process waits for its
// activation (it reached sdk.Serve).
func (pk *Parked) Parked() <-chan struct{} { return pk.parked }

// Exited returns a channel closed once the process has exited.
func (pk *Parked) Exited() <-chan struct{} { return pk.p.exited }

// PID is the parked process's id.
func (pk *Parked) PID() int { return pk.p.pid }

// ExitReason says how the process ended and what it printed last; call it
// after Exited is closed.
func (pk *Parked) ExitReason() string {
	desc := "exited"
	if pk.p.err != nil {
		desc = pk.p.err.Error()
	} else if pk.p.state != nil {
		desc = pk.p.state.String()
	}
	select {
	case <-pk.p.logDone:
	case <-time.After(200 * time.Millisecond):
	}
	if lines := pk.out.tail(3); len(lines) > 0 {
		desc += "; last output: " + strings.Join(lines, " | ")
	}
	return desc
}

// take claims the parked process for Activate or Kill; false if it was
// claimed already.
func (pk *Parked) take() bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.taken {
		return false
	}
	pk.taken = true
	return true
}

// Kill ends a parked process that was not activated and removes its cgroup
// and, when the process printed nothing, its log file. It returns once the
// process is reaped. Killing an activated process does nothing (Stop the
// Instance instead).
func (pk *Parked) Kill() {
	if !pk.take() {
		return
	}
	pk.sock.Close()
	syscall.Kill(-pk.p.pid, syscall.SIGKILL)
	<-pk.p.exited
	select {
	case <-pk.p.logDone:
	case <-time.After(200 * time.Millisecond):
	}
	pk.release()
	if pk.cfg.LogPath != "" {
		if st, err := os.Stat(pk.cfg.LogPath); err == nil && st.Size() == 0 {
			os.Remove(pk.cfg.LogPath)
		}
	}
}

// release removes the cgroup and closes the log.
func (pk *Parked) release() {
	if pk.cg != nil {
		pk.cg.Kill()
		if err := pk.cg.Close(); err != nil {
			pk.log.Warn("remove cgroup of a parked process", "err", err)
		}
	}
	pk.out.close()
}

// Activate turns the parked process into instance cfg: cfg is what Start
// would get (its Command, Args, Dir, Memory and function must be those the
// process was parked with; the caller keys parked processes on them). The
// process's cgroup becomes the instance's (renamed on v1), its log moves to
// cfg.LogPath, it gets its whole instance environment, and Activate returns
// once it announces it serves, as Start does. Info.ColdStart of the
// instance is activation to ready. On an error the process is gone.
func (pk *Parked) Activate(ctx context.Context, cfg Config) (*Instance, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if !pk.take() {
		return nil, ErrNotParked
	}
	start := time.Now()
	select {
	case <-pk.p.exited:
		pk.sock.Close()
		pk.release()
		return nil, fmt.Errorf("%w: it exited (%s)", ErrNotParked, pk.ExitReason())
	default:
	}
	i := newInstance(cfg)
	i.out, i.cg = pk.out, pk.cg
	if cfg.LogPath != "" && cfg.LogPath != pk.cfg.LogPath {
		if err := i.out.moveTo(cfg.LogPath); err != nil {
			i.log.Warn("parked process keeps its log file", "path", pk.cfg.LogPath, "err", err)
		}
	}
	if i.cg != nil && i.cg.Mode() == cgroup.V1 {
		if err := i.cg.Rename(cgroupName(cfg.ID)); err != nil {
			i.log.Warn("cgroup keeps the parked process's name", "err", err)
		}
	}
	p := pk.p
	port, err := pickPort(0)
	if err == nil {
		i.setPort(port)
		p.port = port
		i.mu.Lock()
		i.pid, i.cur, i.startedAt = p.pid, p, p.spawnedAt
		i.mu.Unlock()
		i.setState(Starting)
		err = pk.send(i.env(port))
	}
	if err == nil {
		err = i.waitReady(ctx, p)
	}
	pk.sock.Close()
	if err != nil {
		i.terminate(p, 0)
		err = i.startError(p, err)
		i.finish(Failed, nil)
		return nil, fmt.Errorf("supervisor: activate parked process %d as instance %s of %s: %w", p.pid, cfg.ID, cfg.Function, err)
	}
	i.mu.Lock()
	i.coldStart = time.Since(start)
	cold := i.coldStart
	i.mu.Unlock()
	i.log.Debug("instance ready from a parked process", "pid", p.pid, "addr", i.Addr(), "cold_start", cold)
	i.setState(Ready)
	go i.run(p)
	return i, nil
}

// Activation is the message that activates a parked process: one line of
// JSON. The SDK parses it (sdk.parseActivation).
type Activation struct {
	Env []string `json:"env"`
}

// send writes the activation with the instance environment env.
func (pk *Parked) send(env []string) error {
	b, err := json.Marshal(Activation{Env: env})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	pk.sock.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := pk.sock.Write(b); err != nil {
		return fmt.Errorf("send the activation: %w", err)
	}
	return nil
}
