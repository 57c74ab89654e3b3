//go:build linux

package direct

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spinSock is a TCP socket taken out of the Go runtime's netpoller, for a
// TCPConn that busy-polls. While the socket is in the runtime's epoll set,
// every message that arrives also wakes the runtime thread parked in
// epoll_wait (a process with timers or listeners always has one), though
// the spinning reader takes the message itself: that futile wake-up costs
// the sender's write a cross-CPU wake and takes the reader's CPU from it
// for tens of µs (on the development VM ~15% of spinning TCP calls took
// over 20 µs so). Out of the netpoller a reader spins with non-blocking
// reads and then sleeps in ppoll(2) on a thread of its own, with an
// eventfd beside the socket that Interrupt and Close write to.
type spinSock struct {
	fd, efd int
	refs    atomic.Int64 // 1 while open, plus one per read or write running; the descriptors close at 0
	closing atomic.Bool
}

// errWoken means wake() ended a wait: the caller looks at why.
var errWoken = errors.New("direct: woken")

// detach moves c's socket out of the netpoller: the spinSock holds a
// duplicate of its descriptor (non-blocking, as the runtime made it) and
// c is closed, which removes it from the runtime's epoll set and leaves
// the connection up. A conn that is not TCP is left as it is (nil).
func detach(c net.Conn) (*spinSock, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	tc.Close()
	s := &spinSock{fd: fd, efd: efd}
	s.refs.Store(1)
	return s, nil
}

func (s *spinSock) enter() bool {
	for {
		r := s.refs.Load()
		if r <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(r, r+1) {
			break
		}
	}
	if s.closing.Load() {
		s.leave()
		return false
	}
	return true
}

func (s *spinSock) leave() {
	if s.refs.Add(-1) == 0 {
		unix.Close(s.fd)
		unix.Close(s.efd)
	}
}

// read reads what is there into p. While spin() says so it polls with
// non-blocking reads (RawSyscall keeps the scheduler out of every turn);
// then it sleeps until the socket is readable, or returns errWoken.
func (s *spinSock) read(p []byte, spin func() bool) (int, error) {
	if !s.enter() {
		return 0, net.ErrClosed
	}
	defer s.leave()
	for {
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch {
		case s.closing.Load():
			return 0, net.ErrClosed
		case e == 0 && r == 0:
			return 0, io.EOF
		case e == 0:
			return int(r), nil
		case e == unix.EINTR:
			continue
		case e != unix.EAGAIN:
			return 0, os.NewSyscallError("read", e)
		}
		if spin() {
			continue
		}
		if err := s.wait(unix.POLLIN); err != nil {
			return 0, err
		}
	}
}

// write writes all of p, waiting for room when the socket is full.
func (s *spinSock) write(p []byte) (int, error) {
	if !s.enter() {
		return 0, net.ErrClosed
	}
	defer s.leave()
	n := 0
	for n < len(p) {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case s.closing.Load():
			return n, net.ErrClosed
		case e == 0:
			n += int(r)
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			if err := s.wait(unix.POLLOUT); err != nil && err != errWoken {
				return n, err
			}
		default:
			return n, os.NewSyscallError("write", e)
		}
	}
	return n, nil
}

// wait sleeps (on this thread, in a system call the runtime hands the P
// away from) until the socket is ready for events or wake is called.
func (s *spinSock) wait(events int16) error {
	fds := [2]unix.PollFd{{Fd: int32(s.fd), Events: events}, {Fd: int32(s.efd), Events: unix.POLLIN}}
	for {
		_, err := unix.Ppoll(fds[:], nil, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("ppoll", err)
		}
		break
	}
	if fds[1].Revents != 0 {
		var b [8]byte
		unix.Read(s.efd, b[:])
		return errWoken
	}
	return nil
}

// wake ends a wait under way, or the next one.
func (s *spinSock) wake() {
	if !s.enter() {
		return
	}
	s.signal()
	s.leave()
}

// signal adds one to the eventfd's count.
func (s *spinSock) signal() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.efd, one[:])
}

// close shuts the connection down (waking a reader or writer that waits)
// and closes the descriptors once no read or write runs.
func (s *spinSock) close() error {
	if s.closing.Swap(true) {
		return nil
	}
	unix.Shutdown(s.fd, unix.SHUT_RDWR)
	s.signal()
	s.leave()
	return nil
}
