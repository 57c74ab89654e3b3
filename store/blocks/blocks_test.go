package blocks

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func block(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func spillFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+spillExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestMemoryTierTouchesNoDisk(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Memory: 4 << 10, SpillDir: dir})
	ids := make([]ID, 4)
	for i := range ids {
		ids[i] = NewID()
		info, err := s.Put(ids[i], block(uint64(i), 1<<10))
		if err != nil {
			t.Fatal(err)
		}
		if info.Spilled {
			t.Fatalf("block %d spilled with room in memory", i)
		}
	}
	if n := spillFiles(t, dir); n != 0 {
		t.Fatalf("%d spill files with the memory tier not full", n)
	}
	for i, id := range ids {
		got, _, err := s.Read(id, nil)
		if err != nil || !bytes.Equal(got, block(uint64(i), 1<<10)) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	st := s.Stats()
	if st.MemoryBytes != 4<<10 || st.MemoryBlocks != 4 || st.SpilledBlocks != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpillWhenMemoryFull(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Memory: 3 << 10, SpillDir: dir})
	var ids []ID
	for i := range 5 {
		id := NewID()
		info, err := s.Put(id, block(uint64(i), 1<<10))
		if err != nil {
			t.Fatal(err)
		}
		if info.Spilled != (i >= 3) {
			t.Fatalf("block %d: spilled %v", i, info.Spilled)
		}
		ids = append(ids, id)
	}
	if n := spillFiles(t, dir); n != 2 {
		t.Fatalf("%d spill files, want 2", n)
	}
	for i, id := range ids {
		got, info, err := s.Read(id, []byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), block(uint64(i), 1<<10)...)) {
			t.Fatalf("block %d: wrong bytes", i)
		}
		if info.Checksum != Checksum(block(uint64(i), 1<<10)) {
			t.Fatalf("block %d: checksum %08x", i, info.Checksum)
		}
	}
	st := s.Stats()
	if st.SpilledBytes != 2<<10 || st.SpilledBlocks != 2 || st.Spills != 2 || st.Puts != 5 {
		t.Fatalf("stats %+v", st)
	}

	// Freed memory takes the next block; deleting a spilled block removes its file.
	if err := s.Delete(ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ids[4]); err != nil {
		t.Fatal(err)
	}
	if n := spillFiles(t, dir); n != 1 {
		t.Fatalf("%d spill files after delete, want 1", n)
	}
	if info, err := s.Put(NewID(), block(9, 1<<10)); err != nil || info.Spilled {
		t.Fatalf("put after freeing memory: spilled %v, %v", info.Spilled, err)
	}
	if _, _, err := s.Read(ids[4], nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read of deleted block: %v", err)
	}

	s.Close()
	if n := spillFiles(t, dir); n != 0 {
		t.Fatalf("%d spill files after Close", n)
	}
}

func TestFullWithoutSpill(t *testing.T) {
	s := newStore(t, Config{Memory: 1 << 10})
	if _, err := s.Put(NewID(), make([]byte, 1<<10)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(NewID(), make([]byte, 1)); !errors.Is(err, ErrFull) {
		t.Fatalf("put over the budget: %v", err)
	}
	if st := s.Stats(); st.Refusals != 1 || st.Blocks != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskBudget(t *testing.T) {
	s := newStore(t, Config{Memory: 1, SpillDir: t.TempDir(), Disk: 2 << 10})
	for range 2 {
		if _, err := s.Put(NewID(), make([]byte, 1<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(NewID(), make([]byte, 1<<10)); !errors.Is(err, ErrFull) {
		t.Fatalf("put over the disk budget: %v", err)
	}
}

func TestChecksumCatchesCorruptMemoryBlock(t *testing.T) {
	s := newStore(t, Config{Memory: 1 << 20})
	id := NewID()
	if _, err := s.Put(id, block(1, 4096)); err != nil {
		t.Fatal(err)
	}
	s.index[id].mem[1234] ^= 0x10 // a flipped bit in RAM
	got, _, err := s.Read(id, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("read of corrupt block: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("corrupt read returned %d bytes", len(got))
	}
	if s.Stats().ChecksumErrors != 1 {
		t.Fatal("checksum error not counted")
	}
}

func TestChecksumCatchesCorruptSpillFile(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Memory: 1, SpillDir: dir})
	cases := map[string]func(path string) error{
		"flipped byte": func(path string) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{0xff}, 100)
			return err
		},
		"truncated": func(path string) error { return os.Truncate(path, 50) },
		"grown": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			id := NewID()
			info, err := s.Put(id, block(2, 4096))
			if err != nil || !info.Spilled {
				t.Fatalf("put: spilled %v, %v", info.Spilled, err)
			}
			if err := corrupt(s.spillPath(id)); err != nil {
				t.Fatal(err)
			}
			got, _, err := s.Read(id, nil)
			if !errors.Is(err, ErrChecksum) || len(got) != 0 {
				t.Fatalf("read of corrupt spilled block: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestNewRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	leftover := filepath.Join(dir, NewID().String()+spillExt)
	other := filepath.Join(dir, "keep.txt")
	for _, p := range []string{leftover, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newStore(t, Config{Memory: 1, SpillDir: dir})
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover block file still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a file not ours was removed: %v", err)
	}
}

func TestPutErrors(t *testing.T) {
	s := newStore(t, Config{Memory: 1 << 20, MaxBlock: 10})
	id := NewID()
	if _, err := s.Put(id, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(id, []byte("abc")); !errors.Is(err, ErrExists) {
		t.Fatalf("put of a held id: %v", err)
	}
	if _, err := s.Put(NewID(), make([]byte, 11)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("put over MaxBlock: %v", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New without memory: %v", err)
	}
	if _, err := New(Config{Memory: 1, SpillDir: filepath.Join(t.TempDir(), "absent")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("New with absent spill dir: %v", err)
	}
	s.Close()
	if _, err := s.Put(NewID(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
}

func TestIDText(t *testing.T) {
	id := NewID()
	b, _ := id.MarshalText()
	var back ID
	if err := back.UnmarshalText(b); err != nil || back != id {
		t.Fatalf("round trip: %v", err)
	}
	if err := back.UnmarshalText([]byte("zz")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
}
