package prefault

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the range
// in writable, as if every page were written, without writing.
const madvPopulateWrite = 23

// populate makes b's whole pages resident; false if the kernel cannot.
func populate(b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + pageSize - 1) &^ (pageSize - 1)
	end := (p + uintptr(len(b))) &^ (pageSize - 1)
	if end <= start {
		return true
	}
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, madvPopulateWrite)
	return errno == 0
}
