package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/store"
)

// Writers overwrite and delete keys while readers read them: with block
// memory recycled from one object to the next and blocks fetched ahead,
// every read must still return one whole version, never a mix and never
// bytes of a later object.
func TestRecycledMemoryNeverMixesVersions(t *testing.T) {
	const size, bs = 10 * 512, 512
	s := open(t, Config{BlockSize: bs, Memory: 2 << 20})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range 60 {
				key := fmt.Sprintf("k%d", v%3)
				body := bytes.Repeat([]byte{byte(w*100 + v + 1)}, size)
				if _, err := s.Put(ctx, "bkt", key, bytes.NewReader(body), size, store.PutOptions{}); err != nil {
					t.Error(err)
					return
				}
				if v%7 == 0 {
					s.Delete(ctx, "bkt", key)
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				o, err := s.Get(ctx, "bkt", fmt.Sprintf("k%d", i%3), nil)
				if err != nil {
					continue // not written yet, or deleted
				}
				got, err := io.ReadAll(o.Body)
				o.Body.Close()
				if err != nil || len(got) != size {
					t.Errorf("read %d bytes: %v", len(got), err)
					return
				}
				if n := bytes.Count(got, got[:1]); n != size {
					t.Errorf("a read mixed versions: %d of %d bytes are %d", n, size, got[0])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A reader closed half way, with blocks still being fetched ahead, gives
// every block back: deleting the object then frees all its memory.
func TestCloseMidReadReleasesBlocks(t *testing.T) {
	s := open(t, Config{BlockSize: 1000})
	body := payload(5, 20000)
	if _, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), int64(len(body)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := s.Get(ctx, "bkt", "k", &store.Range{First: 1500, Last: 15000})
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 2500)
	if _, err := io.ReadFull(o.Body, head); err != nil || !bytes.Equal(head, body[1500:4000]) {
		t.Fatalf("read: %v", err)
	}
	o.Body.Close()
	if _, err := o.Body.Read(head); err == nil {
		t.Fatal("read after close succeeded")
	}
	s.Delete(ctx, "bkt", "k")
	if st := s.Stats(); st.Blocks != 0 || st.MemoryBytes != 0 {
		t.Fatalf("after the delete: %d blocks, %d bytes in memory", st.Blocks, st.MemoryBytes)
	}
}

// A Put right after its bucket was deleted elsewhere (here: straight in
// the metadata, as another node agent would) fails and keeps nothing,
// though this store saw the bucket a moment before.
func TestPutIntoBucketDeletedElsewhere(t *testing.T) {
	s := open(t, Config{})
	if _, err := s.Put(ctx, "bkt", "a", bytes.NewReader([]byte("x")), 1, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Delete(ctx, "bkt", "a")
	if err := s.meta.DeleteBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(ctx, "bkt", "b", bytes.NewReader([]byte("y")), 1, store.PutOptions{})
	if !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("put into a deleted bucket: %v", err)
	}
	if st := s.Stats(); st.Blocks != 0 {
		t.Fatalf("%d blocks kept by a failed put", st.Blocks)
	}
}
