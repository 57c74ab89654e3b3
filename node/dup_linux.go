package node

import "golang.org/x/sys/unix"

// dupCloexec duplicates fd, close-on-exec, so no instance inherits it.
func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}
