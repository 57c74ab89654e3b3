package blocks

import (
	"bytes"
	"errors"
	"testing"
)

// A deleted block's memory goes back to Alloc, but only within the memory
// budget, and the accounting stays the blocks' sizes.
func TestAllocRecyclesDeletedBlocks(t *testing.T) {
	const bs = 64 << 10
	s := newStore(t, Config{Memory: 3 * bs, MaxBlock: bs})
	var ids []ID
	for i := range 3 {
		buf := s.Alloc(bs)
		copy(buf, block(uint64(i), bs))
		id := NewID()
		if _, err := s.Put(id, buf); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	first := &s.index[ids[0]].mem[0]
	if err := s.Delete(ids[0]); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.MemoryBytes != 2*bs {
		t.Fatalf("memory %d after a delete, want %d", st.MemoryBytes, 2*bs)
	}
	got := s.Alloc(bs)
	if &got[0] != first {
		t.Fatal("Alloc did not reuse the deleted block's memory")
	}
	s.Release(got)
	// Blocks in memory plus free buffers never exceed the budget.
	s.Delete(ids[1])
	s.Delete(ids[2])
	if n := len(s.free); n != 3 {
		t.Fatalf("%d free buffers with the budget for 3", n)
	}
	s.Release(make([]byte, 0, bs))
	if n := len(s.free); n != 3 {
		t.Fatalf("%d free buffers after a release past the budget, want 3", n)
	}
	s.Release(make([]byte, 10)) // another capacity: not pooled
	if n := len(s.free); n != 3 {
		t.Fatalf("%d free buffers, want 3", n)
	}
}

// A viewed block deleted meanwhile keeps its bytes until the view is
// released; only then is its memory reused.
func TestViewPinsMemoryPastDelete(t *testing.T) {
	const bs = 4 << 10
	s := newStore(t, Config{Memory: 1 << 20, MaxBlock: bs})
	want := block(7, bs)
	buf := s.Alloc(bs)
	copy(buf, want)
	id := NewID()
	if _, err := s.Put(id, buf); err != nil {
		t.Fatal(err)
	}
	data, info, release, err := s.View(id)
	if err != nil || info.Size != bs {
		t.Fatalf("view: %v %+v", err, info)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if len(s.free) != 0 {
		t.Fatal("a viewed block's memory was recycled")
	}
	reused := s.Alloc(bs)
	clear(reused)
	if !bytes.Equal(data, want) {
		t.Fatal("a view's bytes changed after the block was deleted")
	}
	release()
	release() // twice is harmless
	if len(s.free) != 1 {
		t.Fatalf("%d free buffers after the view ended, want 1", len(s.free))
	}
	if _, _, _, err := s.View(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("view of a deleted block: %v", err)
	}
}

func TestViewChecksAndReadsSpilled(t *testing.T) {
	s := newStore(t, Config{Memory: 4096, SpillDir: t.TempDir(), MaxBlock: 8192})
	mem, spilled := NewID(), NewID()
	if _, err := s.Put(mem, block(1, 4096)); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Put(spilled, block(2, 4096)); err != nil || !info.Spilled {
		t.Fatalf("put: %v %+v", err, info)
	}
	data, info, release, err := s.View(spilled)
	if err != nil || !info.Spilled || !bytes.Equal(data, block(2, 4096)) {
		t.Fatalf("view of a spilled block: %v %+v", err, info)
	}
	release()
	s.index[mem].mem[9] ^= 1
	if _, _, _, err := s.View(mem); !errors.Is(err, ErrChecksum) {
		t.Fatalf("view of a corrupt block: %v", err)
	}
	if e := s.index[mem]; e.views != 0 {
		t.Fatalf("a failed view left %d views", e.views)
	}
}
