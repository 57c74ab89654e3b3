package buffer

import (
	"bytes"
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
