package metarpc

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
)

// TestCacheKeepsOwnWrite: an object written through a node's cache is
// read back there with no round trip, and writes racing from two nodes
// to one key never leave either cache serving other than the last one.
func TestCacheKeepsOwnWrite(t *testing.T) {
	c, _ := serve(t)
	open := nodeStores(t, c)
	a, ca := open()
	b, _ := open()
	if err := a.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	get := func(st *local.Store, key string) string {
		t.Helper()
		o, err := st.Get(ctx, "bkt", key, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Body.Close()
		got, err := io.ReadAll(o.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	if _, err := a.Put(ctx, "bkt", "k", strings.NewReader("one"), 3, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	h0, m0 := ca.Stats()
	if got := get(a, "k"); got != "one" {
		t.Fatalf("read %q after writing one", got)
	}
	if h1, m1 := ca.Stats(); h1 != h0+1 || m1 != m0 {
		t.Fatalf("read of an object the node wrote: %d hits, %d misses; want 1 hit", h1-h0, m1-m0)
	}
	if _, err := b.Put(ctx, "bkt", "k", strings.NewReader("two"), 3, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := get(a, "k"); got != "two" {
		t.Fatalf("written through b, read through a: %q", got)
	}

	for round := range 20 {
		var wg sync.WaitGroup
		for i, st := range []*local.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := fmt.Sprintf("r%02d-%d", round, i)
				if _, err := st.Put(ctx, "bkt", "race", strings.NewReader(v), int64(len(v)), store.PutOptions{}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		last, err := c.Object("bkt", "race")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []*local.Store{a, b} {
			if o, err := st.Head(ctx, "bkt", "race"); err != nil || o.ETag != last.ETag {
				t.Fatalf("round %d: a node serves ETag %q, the service holds %q (%v)", round, o.ETag, last.ETag, err)
			}
		}
	}
}
