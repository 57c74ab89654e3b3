package stream

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxPipeRequest keeps F_SETPIPE_SZ's argument within what the kernel
// takes (it refuses more than 2^31).
const maxPipeRequest = 1 << 30

// Pipe makes a kernel pipe whose capacity is at least size bytes where the
// kernel allows: a process with CAP_SYS_RESOURCE (root, outside most
// containers) may exceed /proc/sys/fs/pipe-max-size, others are
// clamped to it, and a kernel that refuses (memory, per-user limits) leaves
// the pipe smaller. It returns the capacity it got. Both ends are
// non-blocking and use the runtime poller, so deadlines work on them.
func Pipe(size int) (r, w *os.File, capacity int, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("stream: making a pipe: %w", err)
	}
	capacity, err = growPipe(w, size)
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, 0, err
	}
	return r, w, capacity, nil
}

func growPipe(f *os.File, size int) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("stream: sizing a pipe: %w", err)
	}
	var got int
	var ferr error
	err = rc.Control(func(fd uintptr) {
		got, ferr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
		if ferr != nil || size <= got {
			return
		}
		want := min(size, maxPipeRequest)
		n, err := unix.FcntlInt(fd, unix.F_SETPIPE_SZ, want)
		if err == unix.EPERM {
			// Not privileged: the most we may ask for is pipe-max-size.
			if limit := pipeMaxSize(); limit > got && limit < want {
				n, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, limit)
			}
		}
		if err == nil {
			got = n
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return 0, fmt.Errorf("stream: sizing a pipe: %w", err)
	}
	return got, nil
}

func pipeMaxSize() int {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
