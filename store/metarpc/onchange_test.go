package metarpc

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
)

// TestCacheOnChange: a cache hands every change it is told of to
// OnChange before the change's writer gets its answer, and says so when
// it stops serving.
func TestCacheOnChange(t *testing.T) {
	c, _ := serve(t)
	bs, err := blocks.New(blocks.Config{Memory: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	var mu sync.Mutex
	var seen []string
	watcher := NewCache(&Client{BaseURL: c.BaseURL, Header: c.Header}, CacheOptions{OnChange: func(bucket, key string) {
		mu.Lock()
		seen = append(seen, bucket+"/"+key)
		mu.Unlock()
	}})
	t.Cleanup(func() { watcher.Close() })
	waitServing(t, watcher)
	w, err := local.Open(local.Config{Meta: c, Blocks: sharedTier{local.NodeTier{Store: bs}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	saw := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, want)
	}
	if err := w.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	if !saw("bkt/") {
		t.Fatalf("bucket created: OnChange saw %v, want bkt/ before CreateBucket returned", seen)
	}
	if _, err := w.Put(ctx, "bkt", "a/b", strings.NewReader("x"), 1, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if !saw("bkt/a/b") {
		t.Fatalf("object put: OnChange saw %v, want bkt/a/b before Put returned", seen)
	}
	// The stream ends (here the cache closes): it says it no longer
	// serves.
	watcher.Close()
	if !saw("/") {
		t.Fatalf("stream ended: OnChange saw %v, want / (stopped serving)", seen)
	}
}
