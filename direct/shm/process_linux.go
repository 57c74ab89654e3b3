package shm

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Process watches another process through a pidfd (Linux 5.3+), which,
// unlike kill(pid, 0), sees a process that has exited but was not yet
// reaped, and is never fooled by a reused pid. Its Alive suits
// Options.Alive.
type Process struct {
	fd     int
	exited atomic.Bool
	closed atomic.Bool
}

// WatchProcess opens a pidfd for pid. Close it when done.
func WatchProcess(pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("shm: watch process %d: %w", pid, err)
	}
	return &Process{fd: fd}, nil
}

// Alive reports whether the process has not exited. It costs one poll(2).
// After Close it reports false.
func (p *Process) Alive() bool {
	if p.exited.Load() || p.closed.Load() {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n == 0 {
		return err == nil || err == unix.EINTR
	}
	p.exited.Store(true)
	return false
}

// Close releases the pidfd. Close it after the Conn that asks Alive.
func (p *Process) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return unix.Close(p.fd)
}
