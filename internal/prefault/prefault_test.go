package prefault

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// minorFaults is this process's count of minor page faults so far.
func minorFaults(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc/self/stat here: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		t.Fatalf("minflt in %q: %v", s, err)
	}
	return n
}

// sink keeps allocations alive until the faults are counted.
var sink [][]byte

// TestHeapSavesFaults allocates 8 MiB after Heap(32 MiB) and counts the
// page faults that cost: they must be a small fraction of the 2048 pages a
// fresh heap would fault in.
func TestHeapSavesFaults(t *testing.T) {
	const n = 8 << 20
	runtime.GC()
	Heap(32 << 20)
	before := minorFaults(t)
	for range n / (64 << 10) {
		b := make([]byte, 64<<10)
		for i := 0; i < len(b); i += pageSize {
			b[i] = 1
		}
		sink = append(sink, b)
	}
	faults := minorFaults(t) - before
	sink = nil
	if pages := int64(n / pageSize); faults > pages/4 {
		t.Fatalf("allocating %d pages after Heap faulted %d of them in; want at most a quarter", pages, faults)
	}
	t.Logf("%d faults for %d pages", faults, n/pageSize)
}
