package local

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
)

var ctx = context.Background()

func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Memory == 0 {
		cfg.Memory = 64 << 20
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.CreateBucket(ctx, "bkt"); err != nil && !errors.Is(err, store.ErrBucketExists) {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, s *Store, key string, rng *store.Range) ([]byte, error) {
	t.Helper()
	o, err := s.Get(ctx, "bkt", key, rng)
	if err != nil {
		return nil, err
	}
	defer o.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, o.Body)
	return buf.Bytes(), err
}

func TestRoundTripAcrossBlocks(t *testing.T) {
	s := open(t, Config{BlockSize: 1000})
	for _, n := range []int{0, 1, 999, 1000, 1001, 3500} {
		body := payload(uint64(n), n)
		for _, size := range []int64{int64(n), -1} {
			key := fmt.Sprintf("k%d/%d", n, size)
			info, err := s.Put(ctx, "bkt", key, bytes.NewReader(body), size, store.PutOptions{ContentType: "x/y"})
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(n) || info.ETag != fmt.Sprintf("%x", md5.Sum(body)) {
				t.Fatalf("%s: info %+v", key, info)
			}
			got, err := get(t, s, key, nil)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: %d bytes back, %v", key, len(got), err)
			}
		}
	}
	if st := s.Stats(); st.MemoryBytes != 2*(1+999+1000+1001+3500) {
		t.Fatalf("memory %d: blocks not accounted exactly", st.MemoryBytes)
	}
}

func TestRanges(t *testing.T) {
	s := open(t, Config{BlockSize: 100})
	body := payload(1, 1000)
	s.Put(ctx, "bkt", "k", bytes.NewReader(body), 1000, store.PutOptions{})
	cases := []struct {
		r        store.Range
		from, to int
	}{
		{store.Range{First: 0, Last: 0}, 0, 1},
		{store.Range{First: 99, Last: 100}, 99, 101},
		{store.Range{First: 150, Last: 649}, 150, 650},
		{store.Range{First: 950, Last: -1}, 950, 1000},
		{store.Range{First: 950, Last: 5000}, 950, 1000},
		{store.Range{Suffix: 10}, 990, 1000},
		{store.Range{Suffix: 5000}, 0, 1000},
	}
	for _, c := range cases {
		got, err := get(t, s, "k", &c.r)
		if err != nil || !bytes.Equal(got, body[c.from:c.to]) {
			t.Errorf("range %+v: %d bytes, %v", c.r, len(got), err)
		}
	}
	for _, r := range []store.Range{{First: 1000, Last: -1}, {First: 5, Last: 4}} {
		if _, err := get(t, s, "k", &r); !errors.Is(err, store.ErrInvalidRange) {
			t.Errorf("range %+v: %v", r, err)
		}
	}
}

func TestFailedPutKeepsNothing(t *testing.T) {
	s := open(t, Config{BlockSize: 100})
	body := payload(2, 1000)
	cases := map[string]struct {
		r    io.Reader
		size int64
		opts store.PutOptions
		want error
	}{
		"short":   {bytes.NewReader(body[:500]), 1000, store.PutOptions{}, store.ErrIncompleteBody},
		"long":    {bytes.NewReader(body), 500, store.PutOptions{}, store.ErrIncompleteBody},
		"bad md5": {bytes.NewReader(body), 1000, store.PutOptions{MD5: make([]byte, 16)}, store.ErrBadDigest},
		"reader":  {io.MultiReader(bytes.NewReader(body[:300]), iotestErr{}), -1, store.PutOptions{}, errBoom},
	}
	for name, c := range cases {
		if _, err := s.Put(ctx, "bkt", "k", c.r, c.size, c.opts); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if st := s.Stats(); st.Blocks != 0 {
		t.Fatalf("%d blocks left by failed puts", st.Blocks)
	}
	if _, err := s.Head(ctx, "bkt", "k"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("failed put left an object: %v", err)
	}
	if _, err := s.Put(ctx, "nobkt", "k", strings.NewReader("x"), 1, store.PutOptions{}); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("put to absent bucket: %v", err)
	}
	if _, err := s.Put(ctx, "bkt", strings.Repeat("k", 1025), strings.NewReader("x"), 1, store.PutOptions{}); !errors.Is(err, store.ErrInvalidName) {
		t.Fatalf("put with a long key: %v", err)
	}
}

var errBoom = errors.New("boom")

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errBoom }

func TestReplaceAndDeleteFreeBlocks(t *testing.T) {
	s := open(t, Config{BlockSize: 100})
	s.Put(ctx, "bkt", "k", bytes.NewReader(payload(1, 1000)), 1000, store.PutOptions{})
	s.Put(ctx, "bkt", "k", bytes.NewReader(payload(2, 300)), 300, store.PutOptions{})
	if st := s.Stats(); st.Blocks != 3 || st.MemoryBytes != 300 {
		t.Fatalf("after replace: %+v", st)
	}
	if err := s.Delete(ctx, "bkt", "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "bkt", "k"); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}
	if st := s.Stats(); st.Blocks != 0 {
		t.Fatalf("after delete: %+v", st)
	}
}

func TestReaderSurvivesDelete(t *testing.T) {
	s := open(t, Config{BlockSize: 100})
	body := payload(3, 1000)
	s.Put(ctx, "bkt", "k", bytes.NewReader(body), 1000, store.PutOptions{})
	o, err := s.Get(ctx, "bkt", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 150)
	io.ReadFull(o.Body, head)
	s.Delete(ctx, "bkt", "k")
	s.Put(ctx, "bkt", "k", strings.NewReader("new"), 3, store.PutOptions{})
	rest, err := io.ReadAll(o.Body)
	if err != nil || !bytes.Equal(append(head, rest...), body) {
		t.Fatalf("reader across a delete: %v", err)
	}
	o.Body.Close()
	if st := s.Stats(); st.Blocks != 1 {
		t.Fatalf("%d blocks after the reader closed, want the new object's 1", st.Blocks)
	}
}

func TestSpillAndChecksum(t *testing.T) {
	spill := t.TempDir()
	s := open(t, Config{BlockSize: 1000, Memory: 2000, SpillDir: spill})
	body := payload(4, 5000)
	if _, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), 5000, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.MemoryBlocks != 2 || st.SpilledBlocks != 3 {
		t.Fatalf("stats %+v", st)
	}
	got, err := get(t, s, "k", nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back across tiers: %v", err)
	}
	// Corrupt the metadata's idea of one block: the read must refuse.
	o, _ := s.meta.Object("bkt", "k")
	o.Blocks[4].CRC ^= 1
	s.meta.PutObject(o)
	_, err = get(t, s, "k", &store.Range{First: 4500, Last: -1})
	if !errors.Is(err, store.ErrChecksum) {
		t.Fatalf("read of a block with the wrong CRC: %v", err)
	}
}

func TestQuota(t *testing.T) {
	s := open(t, Config{BlockSize: 1000, Memory: 2000})
	if _, err := s.Put(ctx, "bkt", "k", bytes.NewReader(payload(5, 3000)), 3000, store.PutOptions{}); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("put over the budget: %v", err)
	}
	if st := s.Stats(); st.Blocks != 0 {
		t.Fatalf("refused put left %d blocks", st.Blocks)
	}
	s2 := open(t, Config{MaxPut: 10})
	if _, err := s2.Put(ctx, "bkt", "k", bytes.NewReader(payload(5, 11)), -1, store.PutOptions{}); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("put over MaxPut: %v", err)
	}
}

func TestTTL(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	s := open(t, Config{Clock: c})
	info, err := s.Put(ctx, "bkt", "tmp", strings.NewReader("x"), 1, store.PutOptions{TTL: time.Minute})
	if err != nil || !info.Expires.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("put: %+v, %v", info, err)
	}
	c.Advance(time.Minute)
	if _, err := s.Head(ctx, "bkt", "tmp"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("expired object: %v", err)
	}
	if s.Stats().Blocks != 1 {
		t.Fatal("blocks freed before the sweep")
	}
	if n, err := s.Sweep(); n != 1 || err != nil {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if s.Stats().Blocks != 0 {
		t.Fatal("sweep did not free the blocks")
	}
}

func TestReopenDropsLostObjects(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	s.Put(ctx, "bkt", "k", strings.NewReader("data"), 4, store.PutOptions{})
	s.Put(ctx, "bkt", "empty", strings.NewReader(""), 0, store.PutOptions{})
	s.CreateUpload(ctx, "bkt", "up", store.PutOptions{})
	s.Close()

	s = open(t, Config{Dir: dir})
	if _, err := s.HeadBucket(ctx, "bkt"); err != nil {
		t.Fatalf("bucket lost on reopen: %v", err)
	}
	if _, err := s.Head(ctx, "bkt", "k"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("object whose blocks died with the store: %v", err)
	}
	if _, err := s.Head(ctx, "bkt", "empty"); err != nil {
		t.Fatalf("an empty object has no blocks to lose: %v", err)
	}
	s.Delete(ctx, "bkt", "empty")
	if err := s.DeleteBucket(ctx, "bkt"); err != nil {
		t.Fatalf("bucket with only dropped uploads: %v", err)
	}
}

func TestMultipart(t *testing.T) {
	s := open(t, Config{BlockSize: 100, MinPartSize: 250})
	id, err := s.CreateUpload(ctx, "bkt", "big", store.PutOptions{ContentType: "a/b"})
	if err != nil {
		t.Fatal(err)
	}
	body := payload(6, 700)
	cuts := []int{0, 300, 600, 700}
	var list []store.CompletePart
	var sums []byte
	for i := 1; i < len(cuts); i++ {
		part := body[cuts[i-1]:cuts[i]]
		p, err := s.UploadPart(ctx, "bkt", "big", id, i, bytes.NewReader(part), int64(len(part)), store.PartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(part)
		sums = append(sums, sum[:]...)
		list = append(list, store.CompletePart{Number: i, ETag: p.ETag})
	}
	// A replaced part frees its first version.
	s.UploadPart(ctx, "bkt", "big", id, 3, bytes.NewReader(body[600:]), 100, store.PartOptions{})
	info, err := s.CompleteUpload(ctx, "bkt", "big", id, list)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x-3", md5.Sum(sums)); info.ETag != want || info.Size != 700 || info.ContentType != "a/b" {
		t.Fatalf("info %+v, want ETag %s", info, want)
	}
	got, err := get(t, s, "big", &store.Range{First: 250, Last: 649})
	if err != nil || !bytes.Equal(got, body[250:650]) {
		t.Fatalf("range over parts: %v", err)
	}
	if st := s.Stats(); st.MemoryBytes != 700 {
		t.Fatalf("memory %d after complete, want 700", st.MemoryBytes)
	}

	id2, _ := s.CreateUpload(ctx, "bkt", "small", store.PutOptions{})
	s.UploadPart(ctx, "bkt", "small", id2, 1, bytes.NewReader(body[:10]), 10, store.PartOptions{})
	p2, _ := s.UploadPart(ctx, "bkt", "small", id2, 2, bytes.NewReader(body[:10]), 10, store.PartOptions{})
	if _, err := s.CompleteUpload(ctx, "bkt", "small", id2, []store.CompletePart{{Number: 1, ETag: p2.ETag}, {Number: 2, ETag: p2.ETag}}); !errors.Is(err, store.ErrTooSmall) {
		t.Fatalf("small first part: %v", err)
	}
	if err := s.AbortUpload(ctx, "bkt", "small", id2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "bkt", "small", id2, 1, strings.NewReader("x"), 1, store.PartOptions{}); !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("part after abort: %v", err)
	}
	if st := s.Stats(); st.MemoryBytes != 700 {
		t.Fatalf("memory %d after abort, want 700", st.MemoryBytes)
	}
}

// TestReplicasOnOneNode checks that a single node's store refuses the
// replicas it cannot place, and out-of-range counts, keeping nothing.
func TestReplicasOnOneNode(t *testing.T) {
	s := open(t, Config{})
	body := payload(9, 10)
	_, err := s.Put(ctx, "bkt", "r2", bytes.NewReader(body), 10, store.PutOptions{Replicas: 2})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("2 replicas on one node: %v", err)
	}
	if st := s.Stats(); st.Blocks != 0 {
		t.Fatalf("a refused put kept %d blocks", st.Blocks)
	}
	for _, n := range []int{-1, store.MaxReplicas + 1} {
		if _, err := s.Put(ctx, "bkt", "r", bytes.NewReader(body), 10, store.PutOptions{Replicas: n}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%d replicas: %v", n, err)
		}
		if _, err := s.CreateUpload(ctx, "bkt", "r", store.PutOptions{Replicas: n}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("upload with %d replicas: %v", n, err)
		}
	}
	if _, err := s.Put(ctx, "bkt", "r1", bytes.NewReader(body), 10, store.PutOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteAfterReads(t *testing.T) {
	s := open(t, Config{BlockSize: 100})
	body := payload(4, 1000)
	if _, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), 1000, store.PutOptions{Reads: 2}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Head(ctx, "bkt", "k"); err != nil || info.Reads != 2 {
		t.Fatalf("head: %+v, %v; want 2 reads left, and a head takes none", info, err)
	}
	// Two readers at once: the second takes the last read, and the
	// object goes only when both are done.
	first, err := s.Get(ctx, "bkt", "k", &store.Range{First: 0, Last: 99})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Get(ctx, "bkt", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "bkt", "k", nil); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("a third read: %v; want ErrNoSuchKey", err)
	}
	if got, err := io.ReadAll(second.Body); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the last read: %d bytes, %v", len(got), err)
	}
	second.Body.Close()
	if st := s.Stats(); st.Blocks != 10 {
		t.Fatalf("%d blocks with a read still in flight; want all 10 kept", st.Blocks)
	}
	if got, err := io.ReadAll(first.Body); err != nil || !bytes.Equal(got, body[:100]) {
		t.Fatalf("the first read, finished after the last: %d bytes, %v", len(got), err)
	}
	first.Body.Close()
	if st := s.Stats(); st.Blocks != 0 || st.MemoryBytes != 0 {
		t.Fatalf("after the last read ended: %+v; want every block freed", st)
	}

	for _, n := range []int{-1, store.MaxReads + 1} {
		if _, err := s.Put(ctx, "bkt", "bad", strings.NewReader("x"), 1, store.PutOptions{Reads: n}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("Put with %d reads: %v; want ErrInvalidArgument", n, err)
		}
		if _, err := s.CreateUpload(ctx, "bkt", "bad", store.PutOptions{Reads: n}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("CreateUpload with %d reads: %v; want ErrInvalidArgument", n, err)
		}
	}
}
