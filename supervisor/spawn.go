package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/cgroup"
)

// proc is one process of an instance. The fields above exited are set before
// spawn returns; err and state are written once, before exited is closed.
type proc struct {
	pid       int
	port      int
	spawnedAt time.Time
	exited    chan struct{} // closed once the process is reaped
	logDone   chan struct{} // closed when its output pipe reaches EOF
	announced chan struct{} // closed when the process says it is ready

	err   error // from Wait, when it is not an exit status
	state *os.ProcessState
}

// spawn starts one process for the instance on port.
func (i *Instance) spawn(port int) (*proc, error) {
	p, err := spawnProc(spawnSpec{
		command: i.cfg.Command, args: i.cfg.Args, dir: i.cfg.Dir,
		env: append(i.env(port), "HANDOFF_READY_FD=3"),
		out: i.out, cg: i.cg,
	}, port)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.pid = p.pid
	i.cur = p
	i.startedAt = p.spawnedAt
	i.mu.Unlock()
	return p, nil
}

// spawnSpec is what one process needs: its command line, environment,
// where its output goes, its cgroup, and for a parked process the child's
// end of its activation socket (passed as fd 4).
type spawnSpec struct {
	command string
	args    []string
	dir     string
	env     []string
	out     *logSink
	cg      *cgroup.Group // nil: no memory limit
	park    *os.File      // nil unless the process is parked
}

// spawnProc starts one process on port (0 for a parked process, which
// learns its port at activation).
func spawnProc(s spawnSpec, port int) (*proc, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// The ready pipe: a process that knows the contract (the SDK) writes
	// "ready" to $HANDOFF_READY_FD once it serves, so its readiness costs
	// no probe interval.
	rr, rw, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	defer rw.Close()
	cmd := exec.Command(s.command, s.args...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.ExtraFiles = []*os.File{rw}
	if s.park != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.park)
	}
	cmd.Stdin = devnull
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if s.cg != nil && s.cg.Mode() == cgroup.V2 {
		// Born inside the group: no window in which the process runs
		// unlimited.
		dir, err := os.Open(s.cg.Path())
		if err != nil {
			pr.Close()
			pw.Close()
			rr.Close()
			return nil, fmt.Errorf("open cgroup: %w", err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(dir.Fd())
	}
	s.out.newRun()
	spawnedAt := time.Now()
	err = forkExec(cmd)
	pw.Close()
	rw.Close()
	if err != nil {
		pr.Close()
		rr.Close()
		return nil, fmt.Errorf("start %s: %w", s.command, err)
	}
	p := &proc{
		pid:       cmd.Process.Pid,
		port:      port,
		spawnedAt: spawnedAt,
		exited:    make(chan struct{}),
		logDone:   make(chan struct{}),
		announced: make(chan struct{}),
	}
	go p.readAnnouncement(rr)
	if s.cg != nil && s.cg.Mode() == cgroup.V1 {
		// cgroup v1 cannot place a child at birth; move it now. See the
		// package documentation for the window this leaves.
		if err := s.cg.Add(p.pid); err != nil {
			syscall.Kill(-p.pid, syscall.SIGKILL)
			cmd.Wait()
			pr.Close()
			return nil, fmt.Errorf("move process into its memory cgroup: %w", err)
		}
	}
	go func() {
		s.out.copyFrom(pr)
		pr.Close()
		close(p.logDone)
	}()
	go func() {
		// Wait for the exit without reaping, so the process group id
		// cannot be reused while the rest of the group is killed.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		syscall.Kill(-p.pid, syscall.SIGKILL)
		err := cmd.Wait()
		p.state = cmd.ProcessState
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			p.err = err
		}
		close(p.exited)
	}()
	return p, nil
}

// The spawner goroutine forks every instance from one OS thread that stays
// locked to it for the life of the process: Pdeathsig fires when the thread
// that forked the child exits, and the Go runtime may end threads (for
// example when a goroutine exits while locked), which would kill instances
// of a perfectly healthy node agent.
var (
	spawnerOnce sync.Once
	spawnReqs   chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func forkExec(cmd *exec.Cmd) error {
	spawnerOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawnReqs {
				closeInheritedFDs()
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, done}
	return <-done
}

// closeInheritedFDs marks every descriptor above stderr close-on-exec, so a
// child gets only what exec.Cmd passes explicitly (those are dup'ed into
// place and survive). Descriptors Go opens are close-on-exec already; this
// catches ones the node agent inherited or a library opened without it.
func closeInheritedFDs() {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	// Kernels before 5.11: walk /proc/self/fd.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.CloseOnExec(fd)
	}
}

// readAnnouncement closes p.announced when the process writes a line
// starting "ready" on its ready pipe; it returns at the line, at EOF (the
// process exited or closed it without a word) or after a bounded read.
func (p *proc) readAnnouncement(r *os.File) {
	defer r.Close()
	var buf [64]byte
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			if bytes.HasPrefix(buf[:i], []byte("ready")) {
				close(p.announced)
			}
			return
		}
		if err != nil {
			return
		}
	}
}
