package stream

import (
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// gatherer returns a function that writes bufs with as few system calls as
// w allows (writev), or nil. A frame word and its data then reach a pipe in
// one write, so a waiting consumer wakes once per frame rather than twice.
func gatherer(w io.Writer) func(bufs [][]byte) error {
	switch w := w.(type) {
	case *net.TCPConn, *net.UnixConn:
		return func(bufs [][]byte) error {
			b := net.Buffers(bufs)
			_, err := b.WriteTo(w)
			return err
		}
	case *os.File:
		rc, err := w.SyscallConn()
		if err != nil {
			return nil
		}
		return func(bufs [][]byte) error {
			for len(bufs) > 0 {
				var n int
				var werr error
				err := rc.Write(func(fd uintptr) bool {
					for {
						n, werr = unix.Writev(int(fd), bufs)
						if werr != unix.EINTR {
							return werr != unix.EAGAIN // wait in the poller
						}
					}
				})
				if err == nil {
					err = werr
				}
				if err != nil {
					return &os.PathError{Op: "writev", Path: w.Name(), Err: err}
				}
				bufs = consume(bufs, n)
			}
			return nil
		}
	}
	return nil
}

// consume drops the first n bytes of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}
