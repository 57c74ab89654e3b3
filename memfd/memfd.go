//go:build linux

// Package memfd makes anonymous shared-memory files (memfd_create(2)) that
// can be sealed and then handed to another process by passing the file
// descriptor.
//
// A sealed memfd is the cheapest way to give the same bytes to several
// processes on one machine: the receiver maps or reads the very pages the
// sender wrote, and the seals guarantee that nobody, the creator included,
// can change or resize them afterwards. The receiver therefore needs no
// copy to protect itself from later writes, and can check a checksum once.
//
// # Usage
//
//	f, err := memfd.Create("payload")
//	_, err = f.Write(data)   // or Map(f, n, true), fill, Unmap
//	err = memfd.Seal(f)      // from now on the bytes are fixed
//	ro, err := memfd.ReopenReadOnly(f) // own offset, for a reader or for sendfile
//
// Every function here takes the *os.File it works on and leaves closing it
// to the caller.
package memfd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Sentinel errors. Errors from this package wrap one of them where the
// cause is one the caller can act on; other errors wrap the system call's
// errno.
var (
	// ErrMapped means Seal could not add the write seal because a writable
	// shared mapping of the file still exists, in this process or in any
	// other that holds it. Unmap every writable mapping, then seal again.
	ErrMapped = errors.New("memfd: file still has a writable mapping")

	// ErrNotMemfd means the file is not a memfd: a regular file, a pipe, a
	// socket or a tmpfs file that was opened by name.
	ErrNotMemfd = errors.New("memfd: not a memfd")

	// ErrNotSealable means the memfd refuses new seals: it was created
	// without MFD_ALLOW_SEALING, or someone set F_SEAL_SEAL before the
	// write seals. Create the memfd with Create (or MFD_ALLOW_SEALING).
	ErrNotSealable = errors.New("memfd: file does not allow sealing")
)

// fixedSeals are the seals that make the content immutable; Sealed checks
// for them. Seal adds F_SEAL_SEAL too, so that they cannot be changed.
const fixedSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// Create makes a new memfd named name (the name is only shown in
// /proc/<pid>/fd and /proc/<pid>/maps; several may share it). The file is
// empty, close-on-exec and open for reading and writing, and allows
// sealing.
//
// Where the kernel knows MFD_NOEXEC_SEAL (Linux 6.3+) the file is also
// sealed against being made executable: payloads are never run, and
// systems with vm.memfd_noexec=2 refuse memfds without it.
func Create(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_NOEXEC_SEAL)
	if err == unix.EINVAL {
		// An older kernel that does not know MFD_NOEXEC_SEAL.
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd: create %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "memfd:"+name), nil
}

// Seal fixes the content and size of f: it adds the shrink, grow and write
// seals and then F_SEAL_SEAL, so no seal can be removed or added later.
// Sealing a file that already carries all of them is a no-op.
//
// It fails with an error wrapping ErrMapped while a writable shared mapping
// of f exists (unmap it first), and with ErrNotSealable when f refuses new
// seals.
func Seal(f *os.File) error {
	return withFD(f, func(fd int) error {
		seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		if err != nil {
			return getSealsError(f, err)
		}
		if seals&fixedSeals == fixedSeals && seals&unix.F_SEAL_SEAL != 0 {
			return nil
		}
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, fixedSeals|unix.F_SEAL_SEAL)
		switch err {
		case nil:
			return nil
		case unix.EBUSY:
			return fmt.Errorf("%w: cannot seal %s; unmap it (Unmap, or munmap in the process that wrote it) before sealing", ErrMapped, f.Name())
		case unix.EPERM:
			return fmt.Errorf("%w: %s was sealed against new seals before its content was fixed (seals %#x); create it with memfd.Create", ErrNotSealable, f.Name(), seals)
		default:
			return fmt.Errorf("memfd: seal %s: %w", f.Name(), err)
		}
	})
}

// SealSize fixes f's size (the shrink and grow seals) and leaves its
// content writable for whoever still maps it. It is cheap, unlike the
// write seal, which scans every page: a receiver can map f at once without
// fearing SIGBUS from a truncation, while the write seal follows once the
// writer has unmapped (see Seal). ErrNotSealable as for Seal.
func SealSize(f *os.File) error {
	return withFD(f, func(fd int) error {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW)
		switch err {
		case nil:
			return nil
		case unix.EPERM:
			return fmt.Errorf("%w: %s refuses new seals; create it with memfd.Create", ErrNotSealable, f.Name())
		default:
			return fmt.Errorf("memfd: seal the size of %s: %w", f.Name(), err)
		}
	})
}

// Allocate gives f the memory for its first size bytes at once
// (fallocate(2)) and makes it at least that long. Writing a large payload
// into an allocated memfd then costs no page allocation per write: the
// kernel takes the pages in one call, and the writes only copy.
func Allocate(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	return withFD(f, func(fd int) error {
		if err := unix.Fallocate(fd, 0, 0, size); err != nil {
			return fmt.Errorf("memfd: allocate %d bytes for %s: %w", size, f.Name(), err)
		}
		return nil
	})
}

// Sealed reports whether f's content and size are fixed: the shrink, grow
// and write seals are all set. It fails with ErrNotMemfd for files that
// cannot carry seals.
func Sealed(f *os.File) (bool, error) {
	var sealed bool
	err := withFD(f, func(fd int) error {
		seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
		if err != nil {
			return getSealsError(f, err)
		}
		sealed = seals&fixedSeals == fixedSeals
		return nil
	})
	return sealed, err
}

// IsMemfd reports whether f was made by memfd_create(2), here or in
// another process that passed it on. It reads the /proc/self/fd link,
// which the kernel names "/memfd:<name> (deleted)" for memfds only.
func IsMemfd(f *os.File) (bool, error) {
	var link string
	err := withFD(f, func(fd int) error {
		var err error
		if link, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err != nil {
			return fmt.Errorf("memfd: inspect %s: %w", f.Name(), err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(link, "/memfd:"), nil
}

// Map maps the first size bytes of f shared (MAP_SHARED), readable and, if
// writable, writable: writes through the slice reach the file and every
// other mapping of it. A size of 0 maps nothing and returns an empty,
// non-nil slice. The file must be at least size bytes long; touching pages
// past its end raises SIGBUS. Release the mapping with Unmap.
func Map(f *os.File, size int64, writable bool) ([]byte, error) {
	if size < 0 || int64(int(size)) != size {
		return nil, fmt.Errorf("memfd: cannot map %d bytes of %s", size, f.Name())
	}
	if size == 0 {
		return []byte{}, nil
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	var b []byte
	err := withFD(f, func(fd int) error {
		var err error
		if b, err = unix.Mmap(fd, 0, int(size), prot, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("memfd: map %d bytes of %s: %w", size, f.Name(), err)
		}
		return nil
	})
	return b, err
}

// Unmap releases a mapping made by Map. b must be the slice Map returned,
// not a part of it. An empty slice is a no-op.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("memfd: unmap: %w", err)
	}
	return nil
}

// UnmapLater unmaps b in the background, on a thread that runs at the
// lowest CPU priority (nice 19), and calls done, when not nil, with the
// result. Tearing down a large mapping takes CPU time in proportion to its
// pages (about 0.1 s per GiB on a VM); at the lowest priority it takes what
// the machine leaves idle instead of competing with the work that follows
// a hand-over (the invocation, the receiver's Map) on a small machine.
//
// One thread per process does every such unmap, in turn, and stays for
// the next: starting and ending a thread per unmap (a clone, a new stack,
// the runtime's hand-offs) cost more than unmapping a small buffer.
//
// A thread of the same process that maps or unmaps meanwhile waits for the
// unmap (the process's memory map is locked during it): such a caller
// should call Hurry first, which gives the unmaps in progress and queued
// the normal priority back.
func UnmapLater(b []byte, done func(error)) {
	later.start.Do(func() { go unmapper() })
	later.mu.Lock()
	later.pending++
	later.mu.Unlock()
	later.jobs <- unmapJob{b: b, done: done}
}

type unmapJob struct {
	b    []byte
	done func(error)
}

// later is the thread doing UnmapLater's unmaps.
var later = struct {
	start sync.Once
	jobs  chan unmapJob // buffered: UnmapLater does not wait for the thread

	mu      sync.Mutex // guards all following fields, and every change of the thread's priority
	tid     int        // the thread, once it runs
	pending int        // unmaps queued or in progress
	hurried bool       // the thread runs at the normal priority until pending is 0
}{jobs: make(chan unmapJob, 1024)}

// unmapper is the thread behind UnmapLater. It is locked to its thread
// and never returns, so its priority reaches no other goroutine.
func unmapper() {
	runtime.LockOSThread()
	later.mu.Lock()
	later.tid = unix.Gettid()
	if !later.hurried {
		_ = unix.Setpriority(unix.PRIO_PROCESS, later.tid, 19)
	}
	later.mu.Unlock()
	for j := range later.jobs {
		err := Unmap(j.b)
		later.mu.Lock()
		later.pending--
		if later.pending == 0 && later.hurried {
			later.hurried = false
			_ = unix.Setpriority(unix.PRIO_PROCESS, later.tid, 19)
		}
		later.mu.Unlock()
		if j.done != nil {
			j.done(err)
		}
	}
}

// Hurry gives the unmaps of UnmapLater queued or in progress in this
// process the normal priority back, until they are done, so that a thread
// about to map or unmap (and so to wait for them) is not held up by their
// low priority. Raising a priority back needs CAP_SYS_NICE or a nice
// limit (RLIMIT_NICE) that allows it; without either Hurry does nothing.
// It reports how many unmaps were queued or in progress.
func Hurry() int {
	later.mu.Lock()
	defer later.mu.Unlock()
	if later.pending > 0 && !later.hurried {
		// A thread not yet started stays at the normal priority instead.
		if later.tid == 0 || unix.Setpriority(unix.PRIO_PROCESS, later.tid, 0) == nil {
			later.hurried = true
		}
	}
	return later.pending
}

// ReopenReadOnly opens f again, read-only and close-on-exec, through
// /proc/self/fd. Unlike a dup, the result is a new open file description
// with its own offset, so several readers can each Read (or sendfile)
// from the start without disturbing one another. It works for memfds and
// for unlinked files alike. Close the result when done; f stays open.
func ReopenReadOnly(f *os.File) (*os.File, error) {
	var ro *os.File
	err := withFD(f, func(fd int) error {
		// open(2) and NewFile rather than os.OpenFile, which would try (and
		// fail) to register the file with the poller: four system calls
		// fewer on every Map a node agent answers.
		nfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("memfd: reopen %s read-only: %w", f.Name(), &os.PathError{Op: "open", Path: "/proc/self/fd/" + strconv.Itoa(fd), Err: err})
		}
		ro = os.NewFile(uintptr(nfd), f.Name())
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ro, nil
}

// withFD runs fn with f's descriptor, kept open for the duration. It uses
// SyscallConn rather than Fd, which would switch f to blocking mode and
// leave the caller to keep f alive. fn wraps its own errors.
func withFD(f *os.File, fn func(fd int) error) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("memfd: %s: %w", f.Name(), err)
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("memfd: %s: %w", f.Name(), err)
	}
	return ferr
}

// getSealsError turns F_GET_SEALS's EINVAL, which the kernel returns for
// files that cannot carry seals, into ErrNotMemfd.
func getSealsError(f *os.File, err error) error {
	if err == unix.EINVAL {
		return fmt.Errorf("%w: %s cannot carry seals; use a file from memfd.Create", ErrNotMemfd, f.Name())
	}
	return fmt.Errorf("memfd: read seals of %s: %w", f.Name(), err)
}
