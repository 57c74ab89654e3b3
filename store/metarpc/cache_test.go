package metarpc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
)

// sharedTier is a node tier that several stores share; closing a store
// leaves it open.
type sharedTier struct{ local.NodeTier }

func (sharedTier) Close() error { return nil }

// waitServing polls until the cache holds a lease.
func waitServing(t *testing.T, mc *Cache) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !mc.Serving() {
		if time.Now().After(deadline) {
			t.Fatal("the cache never got a lease from the service")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nodeStores returns a function that opens one more node store, each with
// a cache of its own of c's service, all over one block tier, as if every
// block were reachable from every node: the tests are about the metadata.
func nodeStores(t *testing.T, c *Client) func() (*local.Store, *Cache) {
	t.Helper()
	bs, err := blocks.New(blocks.Config{Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return func() (*local.Store, *Cache) {
		mc := NewCache(&Client{BaseURL: c.BaseURL, Header: c.Header}, CacheOptions{})
		st, err := local.Open(local.Config{Meta: mc, Blocks: sharedTier{local.NodeTier{Store: bs}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		waitServing(t, mc)
		return st, mc
	}
}

// TestCacheAcrossNodes runs two node stores, each with its own cache of
// one metadata service: reads are served from the cache once seen, and
// a change made through one node is seen through the other as soon as
// it returns.
func TestCacheAcrossNodes(t *testing.T) {
	c, _ := serve(t)
	open := nodeStores(t, c)
	a, ca := open()
	b, cb := open()
	if err := a.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	// b looked before: its cached "no such bucket" must go.
	if _, err := b.HeadBucket(ctx, "nope"); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatal(err)
	}
	if err := a.CreateBucket(ctx, "nope"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HeadBucket(ctx, "nope"); err != nil {
		t.Fatalf("bucket made through a, head through b: %v", err)
	}
	get := func(st *local.Store, key string) (string, error) {
		o, err := st.Get(ctx, "bkt", key, nil)
		if err != nil {
			return "", err
		}
		defer o.Body.Close()
		got, err := io.ReadAll(o.Body)
		return string(got), err
	}
	if _, err := get(b, "k"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("absent key: %v", err)
	}
	for i, v := range []string{"one", "two", "three"} {
		w := a
		if i%2 == 1 {
			w = b
		}
		if _, err := w.Put(ctx, "bkt", "k", strings.NewReader(v), int64(len(v)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*local.Store{a, b, a, b} {
			if got, err := get(r, "k"); err != nil || got != v {
				t.Fatalf("write %d (%q): read %q, %v", i, v, got, err)
			}
			if l, err := r.List(ctx, "bkt", store.ListOptions{}); err != nil || len(l.Objects) != 1 || l.Objects[0].Size != int64(len(v)) {
				t.Fatalf("write %d: list %+v, %v", i, l, err)
			}
		}
	}
	h0, _ := cb.Stats()
	for range 10 {
		if got, err := get(b, "k"); err != nil || got != "three" {
			t.Fatal(got, err)
		}
	}
	if h1, _ := cb.Stats(); h1-h0 < 10 {
		t.Fatalf("10 reads of an unchanged object: %d cache hits", h1-h0)
	}
	if err := b.Delete(ctx, "bkt", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(a, "k"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("deleted through b, read through a: %v", err)
	}
	// A TTL runs out in the cache too.
	if _, err := a.Put(ctx, "bkt", "ttl", strings.NewReader("x"), 1, store.PutOptions{TTL: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(b, "ttl"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := get(b, "ttl"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("expired object read through the cache: %v", err)
	}
	if hits, _ := ca.Stats(); hits == 0 {
		t.Fatal("node a never read from its cache")
	}

	// A read-limited object: both nodes have it cached, yet each read is
	// taken by the service, and once the last is taken neither node finds
	// it, in a lookup or a listing.
	if _, err := a.Put(ctx, "bkt", "twice", strings.NewReader("xy"), 2, store.PutOptions{Reads: 2}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*local.Store{a, b} {
		if info, err := st.Head(ctx, "bkt", "twice"); err != nil || info.Reads != 2 {
			t.Fatalf("head: %+v, %v", info, err)
		}
	}
	for i, st := range []*local.Store{b, a} {
		if got, err := get(st, "twice"); err != nil || got != "xy" {
			t.Fatalf("read %d of 2: %q, %v", i+1, got, err)
		}
	}
	for _, st := range []*local.Store{a, b} {
		if _, err := get(st, "twice"); !errors.Is(err, store.ErrNoSuchKey) {
			t.Fatalf("a third read: %v; want ErrNoSuchKey", err)
		}
		if _, err := st.Head(ctx, "bkt", "twice"); !errors.Is(err, store.ErrNoSuchKey) {
			t.Fatalf("head after the last read: %v; want ErrNoSuchKey", err)
		}
	}
}

// TestCacheWithoutStream: a service that refuses the watch stream leaves
// the cache off, and every lookup goes to the service.
func TestCacheWithoutStream(t *testing.T) {
	c, _ := serve(t)
	mc := NewCache(&Client{BaseURL: c.BaseURL, Header: http.Header{"X-Token": {"wrong"}}}, CacheOptions{})
	defer mc.Close()
	time.Sleep(100 * time.Millisecond)
	if mc.Serving() {
		t.Fatal("serving without a stream")
	}
}

// TestStuckWatcher: a node whose stream stops answering holds a change
// up no longer than its lease, and cannot serve stale entries after it.
func TestStuckWatcher(t *testing.T) {
	c, srv := serve(t)
	const lease = 300 * time.Millisecond
	_ = srv
	// A raw watcher that never acks nor pings after the first.
	req, _ := http.NewRequest(http.MethodPost, c.BaseURL+"/watch", nil)
	req.Header = c.Header.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", WatchProtocol)
	resp, err := watchHTTP.Do(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatal(resp, err)
	}
	rw := resp.Body.(io.ReadWriteCloser)
	defer rw.Close()
	rw.Write(appendFrame(nil, frame{typ: framePing, n: 1}))
	var pong [13]byte
	if _, err := io.ReadFull(rw, pong[:]); err != nil || pong[0] != framePong {
		t.Fatalf("pong %v, %v", pong, err)
	}
	start := time.Now()
	if err := c.CreateBucket("bb1"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < ackWait || took > ackWait+DefaultLease+time.Second {
		t.Fatalf("a change with a stuck watcher took %v", took)
	}
	_ = lease
	// The stuck watcher's stream is closed.
	buf := make([]byte, 64)
	for {
		if _, err := rw.Read(buf); err != nil {
			break
		}
	}
	// The next change does not wait.
	start = time.Now()
	if err := c.CreateBucket("bb2"); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("second change: %v after %v", err, time.Since(start))
	}
}

func TestFrameRoundTrip(t *testing.T) {
	fs := []frame{
		{typ: framePing, n: 7}, {typ: framePong, n: 1 << 60}, {typ: frameAck, n: 3},
		{typ: frameInval, n: 9, kind: InvalKey, bucket: "bkt", key: "a/b/c"},
		{typ: frameInval, n: 10, kind: InvalBucket, bucket: "bkt"},
	}
	var buf []byte
	for _, f := range fs {
		buf = appendFrame(buf, f)
	}
	br := newReader(buf)
	for _, want := range fs {
		got, err := readFrame(br)
		if err != nil || got != want {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := readFrame(br); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	for _, bad := range [][]byte{
		{9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0},
		{framePing, 0, 0, 0, 4, 0, 0, 0, 0},
		{frameInval, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1, 7, 0, 0},
		{frameInval, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 9, 0},
		{framePing, 0xff, 0xff, 0, 0},
	} {
		if _, err := readFrame(newReader(bad)); !errors.Is(err, ErrBadFrame) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(appendFrame(nil, frame{typ: frameInval, n: 9, kind: InvalKey, bucket: "bkt", key: "a/b"}))
	f.Add(appendFrame(nil, frame{typ: framePing, n: 1}))
	f.Add([]byte{frameInval, 0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := newReader(b)
		for {
			fr, err := readFrame(br)
			if err != nil {
				return
			}
			again, err := readFrame(newReader(appendFrame(nil, fr)))
			if err != nil || again != fr {
				t.Fatalf("%+v re-read as %+v, %v", fr, again, err)
			}
		}
	})
}

func newReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// TestCacheBound: past MaxEntries the cache starts over, counting a
// listing by its entries, and still answers right.
func TestCacheBound(t *testing.T) {
	c, _ := serve(t)
	mc := NewCache(&Client{BaseURL: c.BaseURL, Header: c.Header}, CacheOptions{MaxEntries: 8})
	defer mc.Close()
	waitServing(t, mc)
	if err := mc.CreateBucket("bound"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := mc.Object("bound", strings.Repeat("k", i+1)); !errors.Is(err, store.ErrNoSuchKey) {
			t.Fatal(err)
		}
		if _, err := mc.List("bound", store.ListOptions{Prefix: strings.Repeat("k", i+1)}); err != nil {
			t.Fatal(err)
		}
		mc.mu.Lock()
		n := mc.entries
		mc.mu.Unlock()
		if n > 8 || n < 0 {
			t.Fatalf("after %d lookups the cache weighs %d, bound 8", i+1, n)
		}
	}
}
