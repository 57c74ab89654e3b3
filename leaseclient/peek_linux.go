package leaseclient

import "golang.org/x/sys/unix"

// peekAlive reports whether the peer of a socket has not closed it.
func peekAlive(fd int) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return !(err == nil && n == 0)
}
