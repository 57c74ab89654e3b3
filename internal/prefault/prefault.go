// Package prefault makes the Go heap resident ahead of time, so that a
// latency-critical path does not fault it in later. The first touch of a
// fresh page costs a page fault; in a VM that is tens of µs or more (80-160
// µs a page measured on the development VM under load), where populating a
// whole range with one madvise(2) costs well under a µs a page.
package prefault

import (
	"runtime"
	"sync"
)

// pageSize is the smallest page the kernel faults in.
const pageSize = 4096

var heapOnce sync.Once

// Heap grows the Go heap by n bytes, makes them resident and leaves them
// free, once per process (later calls do nothing): the allocator reuses
// free pages before it takes fresh ones, so the next n bytes the process
// allocates do not fault. It costs a garbage collection. This is what the
// JVM's AlwaysPreTouch does for its heap. The runtime's background
// scavenger returns free pages beyond the heap goal to the kernel over the
// following seconds, so it helps the first calls of a fresh process most;
// a process in a steady state reuses its own heap anyway.
func Heap(n int) {
	heapOnce.Do(func() {
		b := make([]byte, n)
		if !populate(b) {
			// An older kernel: write a byte of each page.
			for i := 0; i < len(b); i += pageSize {
				b[i] = 1
			}
		}
		runtime.KeepAlive(b)
		b = nil
		runtime.GC()
	})
}
