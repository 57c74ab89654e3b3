package buffer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/memfd"
)

// filled returns a memfd holding data, as an instance would pass it.
func filled(t *testing.T, data []byte) *os.File {
	t.Helper()
	f, err := memfd.Create("instance-payload")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f
}

// closed reports whether Adopt closed f, as it must on error.
func closed(f *os.File) bool {
	_, err := f.Stat()
	return errors.Is(err, os.ErrClosed)
}

func TestAdopt(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 4 * MiB})
	data := payload(MiB + 3)
	f := filled(t, data)
	info, err := s.Adopt(f, int64(len(data)), crc(data), meta(s))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || info.Checksum != crc(data) || info.Spilled || info.ID.IsZero() {
		t.Fatalf("Info = %+v", info)
	}
	// Sealed: the instance that still holds the memfd cannot change it.
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("the adopted memfd is still writable")
	}
	checkStats(t, s, 1, int64(len(data)), 0)
	if got := readAll(t, s, info.ID); !bytes.Equal(got, data) {
		t.Fatal("adopted bytes differ")
	}
	checkStats(t, s, 0, 0, 0)
	if st := s.Stats(); st.Adopts != 1 || st.Puts != 0 {
		t.Fatalf("Stats = %+v; want 1 adopt, 0 puts", st)
	}
}

func TestAdoptRefused(t *testing.T) {
	s, clk := newStore(t, Config{Memory: MiB, Wait: time.Second})
	data := []byte("payload")

	plain, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	plain.Write(data)
	if _, err := s.Adopt(plain, int64(len(data)), crc(data), meta(s)); !errors.Is(err, ErrInvalid) || !errors.Is(err, memfd.ErrNotMemfd) {
		t.Fatalf("Adopt of a regular file = %v; want ErrInvalid and memfd.ErrNotMemfd", err)
	} else {
		t.Log(err)
	}
	if !closed(plain) {
		t.Error("Adopt did not close the refused file")
	}

	f := filled(t, data)
	if _, err := s.Adopt(f, int64(len(data))+1, crc(data), meta(s)); !errors.Is(err, ErrSize) {
		t.Fatalf("Adopt with the wrong size = %v; want ErrSize", err)
	}
	if !closed(f) {
		t.Error("Adopt did not close the refused memfd")
	}

	f = filled(t, make([]byte, 4096))
	m, err := memfd.Map(f, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	defer memfd.Unmap(m)
	if _, err := s.Adopt(f, 4096, 0, meta(s)); !errors.Is(err, memfd.ErrMapped) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Adopt of a memfd mapped writable = %v; want ErrInvalid and memfd.ErrMapped", err)
	}

	// Full: Adopt waits Config.Wait, then refuses rather than spill.
	mustPut(t, s, payload(MiB), meta(s))
	f = filled(t, data)
	ch := make(chan error, 1)
	go func() {
		_, err := s.Adopt(f, int64(len(data)), crc(data), meta(s))
		ch <- err
	}()
	waitFor(t, s, 1)
	clk.Advance(time.Second)
	if err := <-ch; !errors.Is(err, ErrFull) {
		t.Fatalf("Adopt into a full budget = %v; want ErrFull", err)
	}
	if !closed(f) {
		t.Error("Adopt did not close the refused memfd")
	}
	if st := s.Stats(); st.Refusals != 1 || st.Buffers != 1 || st.MemoryBytes != MiB {
		t.Fatalf("Stats = %+v; want 1 refusal and only the first buffer", st)
	}
}

func TestAdoptLiveSealsAfterUnmap(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 4 * MiB})
	data := payload(MiB)
	f := filled(t, data)
	m, err := memfd.Map(f, int64(len(data)), true) // the writer still maps it
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.AdoptLive(f, int64(len(data)), crc(data), meta(s))
	if err != nil {
		t.Fatalf("AdoptLive with a writable mapping: %v", err)
	}
	// Readable at once: a receiver on this node may map it.
	r, err := s.Open(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read before the write seal: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.WaitSealed(ctx); err == nil {
		t.Fatal("WaitSealed returned while the writer still maps the memfd")
	}
	if err := memfd.Unmap(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitSealed(ctx); err != nil {
		t.Fatalf("WaitSealed after the unmap: %v", err)
	}
	if ok, err := memfd.Sealed(r.File()); err != nil || !ok {
		t.Fatalf("Sealed = %v, %v after WaitSealed", ok, err)
	}
}

func TestAdoptLiveFreedWhileMapped(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 4 * MiB})
	data := payload(MiB)
	f := filled(t, data)
	m, err := memfd.Map(f, int64(len(data)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer memfd.Unmap(m)
	info, err := s.AdoptLive(f, int64(len(data)), crc(data), meta(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(info.ID); err != nil {
		t.Fatal(err)
	}
	// The sealing goroutine lets go and the budget comes back.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().MemoryBytes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("memory still held after Free of a never-sealed buffer: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A live adoption of a memfd nobody maps writable (an instance filled it
// with write(2)) is sealed at once: no goroutine waits for an unmap.
func TestAdoptLiveUnmappedSealsAtOnce(t *testing.T) {
	s, _ := newStore(t, Config{Memory: 4 * MiB})
	data := payload(64 << 10)
	f := filled(t, data)
	info, err := s.AdoptLive(f, int64(len(data)), crc(data), meta(s))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := memfd.Sealed(f); err != nil || !ok {
		t.Fatalf("Sealed = %v, %v right after AdoptLive of an unmapped memfd", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := s.WaitSealed(ctx, info.ID); err != nil {
		t.Fatalf("WaitSealed: %v", err)
	}
	if got := readAll(t, s, info.ID); !bytes.Equal(got, data) {
		t.Fatal("adopted bytes differ")
	}
}
