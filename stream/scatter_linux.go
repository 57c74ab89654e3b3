package stream

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// scatterer returns a function that reads into data and then ahead with
// one system call (readv) when r is a descriptor, or nil. A consumer whose
// buffer is exactly a frame long then takes the frame's data and the next
// frame word together, instead of a second small read (and a second wait
// for the producer) per frame.
func scatterer(r io.Reader) func(data, ahead []byte) (int, error) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func(data, ahead []byte) (int, error) {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, rerr = unix.Readv(int(fd), [][]byte{data, ahead})
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN // wait in the poller
				}
			}
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, &os.PathError{Op: "readv", Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}
