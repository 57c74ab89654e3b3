package stream

import (
	"io"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spliceMax is what one splice(2) asks to move; the kernel moves what the
// pipe holds or has room for.
const spliceMax = 1 << 20

// Relay copies src to dst until src's EOF and returns the bytes moved. When
// one end is a pipe and the other a pipe or stream socket (a producer's pipe
// into a TCP socket, a TCP socket into a consumer's pipe), it moves them with
// splice(2), which never copies them through user space; otherwise it falls
// back to a plain copy.
//
// The splice path waits in the runtime poller, so a deadline or a Close on
// the end it is waiting for (src while idle, dst under backpressure) stops
// it at once; a Close of the other end is noticed at the next transfer. To
// stop a relay whatever its state, close both ends. Relay does not close
// either end.
func Relay(dst io.Writer, src io.Reader) (int64, error) {
	d, dok := probe(dst)
	s, sok := probe(src)
	if dok && sok && (d.pipe || s.pipe) {
		if n, ok, err := spliceAll(d.rc, s.rc); ok {
			return n, err
		}
	}
	return copyRelay(dst, src)
}

type end struct {
	rc   syscall.RawConn
	pipe bool
}

// probe says whether x is a non-blocking (hence runtime-polled) pipe or
// stream socket that splice can serve.
func probe(x any) (end, bool) {
	sc, ok := x.(syscall.Conn)
	if !ok {
		return end{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return end{}, false
	}
	e := end{rc: rc}
	ok = false
	err = rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			return
		}
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) != nil {
			return
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFIFO:
			e.pipe, ok = true, true
		case unix.S_IFSOCK:
			typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			ok = err == nil && typ == unix.SOCK_STREAM
		}
	})
	return e, ok && err == nil
}

type side int8

const (
	neither side = iota
	srcSide
	dstSide
)

// spliceAll splices src into dst until EOF. ok is false if the kernel
// refused splice before any byte moved, so the caller may copy instead.
func spliceAll(dst, src syscall.RawConn) (total int64, ok bool, err error) {
	spurious := 0
	for {
		var n int
		var serr, derr error
		wait := neither
		rerr := src.Read(func(sfd uintptr) bool {
			derr = dst.Write(func(dfd uintptr) bool {
				n, serr = splice(sfd, dfd)
				if serr == unix.EAGAIN {
					wait = notReady(sfd, dfd)
				}
				return true // never wait holding both ends
			})
			return true
		})
		switch {
		case rerr != nil:
			return total, true, relayError(total, "reading", rerr)
		case derr != nil:
			return total, true, relayError(total, "writing", derr)
		case serr == nil && n == 0:
			return total, true, nil
		case serr == nil:
			total += int64(n)
			spurious = 0
			continue
		case serr != unix.EAGAIN:
			if total == 0 && (serr == unix.EINVAL || serr == unix.ENOSYS) {
				return 0, false, nil
			}
			return total, true, relayError(total, "splice", serr)
		}
		switch wait {
		case srcSide:
			if err := src.Read(readyFor(unix.POLLIN)); err != nil {
				return total, true, relayError(total, "reading", err)
			}
		case dstSide:
			if err := dst.Write(readyFor(unix.POLLOUT)); err != nil {
				return total, true, relayError(total, "writing", err)
			}
		default:
			// Both ends looked ready after EAGAIN: a race with the peer,
			// or a state poll(2) does not show. Retry, backing off if it
			// persists rather than spinning.
			spurious++
			if spurious < 8 {
				runtime.Gosched()
			} else {
				time.Sleep(time.Millisecond)
			}
		}
	}
}

func splice(sfd, dfd uintptr) (int, error) {
	for {
		n, err := unix.Splice(int(sfd), nil, int(dfd), nil, spliceMax, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			return int(n), err
		}
	}
}

// notReady says which end made splice return EAGAIN.
func notReady(sfd, dfd uintptr) side {
	p := []unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}, {Fd: int32(dfd), Events: unix.POLLOUT}}
	if _, err := poll(p); err != nil {
		return neither
	}
	switch {
	case p[0].Revents == 0:
		return srcSide
	case p[1].Revents == 0:
		return dstSide
	}
	return neither
}

// readyFor is a RawConn callback that returns true (stop waiting) once the
// descriptor is ready for events, or in error or hung up, which the next
// splice reports. Returning false makes the runtime poller wait.
func readyFor(events int16) func(uintptr) bool {
	return func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := poll(p)
		return err != nil || n > 0
	}
}

func poll(p []unix.PollFd) (int, error) {
	for {
		n, err := unix.Poll(p, 0)
		if err != unix.EINTR {
			return n, err
		}
	}
}
