package storefs_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// TestSmallFilesThroughPageCache: small objects are read through the
// kernel's page cache, and a replace through the Backend (as from
// another node) is read at the next open, at the same size and at
// another size the kernel has not been told yet.
func TestSmallFilesThroughPageCache(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	ctx := context.Background()
	if err := m.b.CreateBucket(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		t.Helper()
		got, err := os.ReadFile(m.path("small", "f"))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i, data := range [][]byte{
		randomBytes(1024, 1), randomBytes(1024, 2), // the same size
		randomBytes(4000, 3), randomBytes(100, 4), // larger, then smaller
		randomBytes(1<<20, 5), randomBytes(1<<20+1, 6), // the largest cached, one past it
	} {
		m.put(t, "small", "f", data)
		for range 2 { // the second read may come from the page cache
			if got := read(); !bytes.Equal(got, data) {
				t.Fatalf("version %d: read %d bytes that differ from the %d stored", i, len(got), len(data))
			}
		}
	}
}
