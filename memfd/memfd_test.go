//go:build linux

package memfd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func create(t *testing.T, data []byte) *os.File {
	t.Helper()
	f, err := Create("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCreateWriteSeal(t *testing.T) {
	f := create(t, []byte("hello"))
	if ok, err := IsMemfd(f); err != nil || !ok {
		t.Fatalf("IsMemfd = %v, %v; want true", ok, err)
	}
	if sealed, err := Sealed(f); err != nil || sealed {
		t.Fatalf("Sealed before Seal = %v, %v; want false", sealed, err)
	}
	if err := Seal(f); err != nil {
		t.Fatal(err)
	}
	if sealed, err := Sealed(f); err != nil || !sealed {
		t.Fatalf("Sealed after Seal = %v, %v; want true", sealed, err)
	}
	if err := Seal(f); err != nil {
		t.Fatalf("second Seal: %v; want a no-op", err)
	}
	got := make([]byte, 5)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "hello" {
		t.Fatalf("ReadAt = %q, %v", got, err)
	}
}

func TestWriteAfterSealFails(t *testing.T) {
	f := create(t, []byte("hello"))
	if err := Seal(f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("J"), 0); err == nil {
		t.Error("overwrite after Seal succeeded")
	}
	if _, err := f.Write([]byte("more")); err == nil {
		t.Error("append after Seal succeeded")
	}
	if err := f.Truncate(1); err == nil {
		t.Error("shrink after Seal succeeded")
	}
	if err := f.Truncate(100); err == nil {
		t.Error("grow after Seal succeeded")
	}
	if _, err := Map(f, 5, true); err == nil {
		t.Error("writable mapping after Seal succeeded")
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 5 {
		t.Fatalf("size after refused writes = %v, %v; want 5", fi.Size(), err)
	}
}

func TestSealWithWritableMapping(t *testing.T) {
	f := create(t, nil)
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	m, err := Map(f, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	copy(m, "mapped")
	if err := Seal(f); !errors.Is(err, ErrMapped) {
		t.Fatalf("Seal with a writable mapping = %v; want ErrMapped", err)
	}
	if err := Unmap(m); err != nil {
		t.Fatal(err)
	}
	if err := Seal(f); err != nil {
		t.Fatalf("Seal after Unmap: %v", err)
	}
	got := make([]byte, 6)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "mapped" {
		t.Fatalf("ReadAt = %q, %v; want the bytes written through the mapping", got, err)
	}
}

func TestMapReadOnly(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	f := create(t, data)
	if err := Seal(f); err != nil {
		t.Fatal(err)
	}
	m, err := Map(f, int64(len(data)), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, data) {
		t.Error("read-only mapping differs from the data written")
	}
	if err := Unmap(m); err != nil {
		t.Fatal(err)
	}

	empty, err := Map(f, 0, false)
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("Map(0) = %v (nil %v), %v; want an empty non-nil slice", empty, empty == nil, err)
	}
	if err := Unmap(empty); err != nil {
		t.Fatalf("Unmap(empty) = %v", err)
	}
	if _, err := Map(f, -1, false); err == nil {
		t.Error("Map(-1) succeeded")
	}
}

func TestReopenReadOnly(t *testing.T) {
	f := create(t, []byte("0123456789"))
	if err := Seal(f); err != nil {
		t.Fatal(err)
	}
	a, err := ReopenReadOnly(f)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ReopenReadOnly(f)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// f's own offset is at the end (after Write); a and b start at 0 and
	// move independently.
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "0123" {
		t.Fatalf("a read %q, %v", buf, err)
	}
	if _, err := io.ReadFull(b, buf[:2]); err != nil || string(buf[:2]) != "01" {
		t.Fatalf("b read %q, %v; want its own offset at 0", buf[:2], err)
	}
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "4567" {
		t.Fatalf("a read %q, %v; want it to continue where it stopped", buf, err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("write to the read-only reopen succeeded")
	}
	if ok, err := IsMemfd(a); err != nil || !ok {
		t.Errorf("IsMemfd(reopened) = %v, %v; want true", ok, err)
	}
}

func TestReopenUnlinkedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("spilled"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ro, err := ReopenReadOnly(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, err := io.ReadAll(ro)
	if err != nil || string(got) != "spilled" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestNotMemfd(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := IsMemfd(f); err != nil || ok {
		t.Errorf("IsMemfd(regular file) = %v, %v; want false", ok, err)
	}
	if err := Seal(f); !errors.Is(err, ErrNotMemfd) {
		// tmpfs files can carry seals but refuse new ones.
		if !errors.Is(err, ErrNotSealable) {
			t.Errorf("Seal(regular file) = %v; want ErrNotMemfd or ErrNotSealable", err)
		}
	}
}

func TestNotSealable(t *testing.T) {
	fd, err := unix.MemfdCreate("nosealing", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "nosealing")
	defer f.Close()
	if ok, err := IsMemfd(f); err != nil || !ok {
		t.Fatalf("IsMemfd = %v, %v; want true", ok, err)
	}
	if err := Seal(f); !errors.Is(err, ErrNotSealable) {
		t.Fatalf("Seal(memfd without MFD_ALLOW_SEALING) = %v; want ErrNotSealable", err)
	}
}

func TestAllocate(t *testing.T) {
	f, err := Create("allocate")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Allocate(f, 3<<20); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 3<<20 {
		t.Fatalf("size after Allocate = %v, %v; want %d", fi.Size(), err, 3<<20)
	}
	// Writes fill the allocated pages, and the bytes read back.
	if _, err := f.Write([]byte("payload")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "payload\x00" {
		t.Fatalf("ReadAt = %q, %v", got, err)
	}
	if err := Seal(f); err != nil {
		t.Fatalf("Seal after Allocate: %v", err)
	}
	if err := Allocate(f, 0); err != nil {
		t.Fatalf("Allocate(0) = %v; want a no-op", err)
	}
}

// TestUnmapLater checks that the background unmaps happen, in turn, on
// one thread at the lowest priority, which Hurry raises while they run,
// and that the write seal succeeds once they are done.
func TestUnmapLater(t *testing.T) {
	const n = 8
	files := make([]*os.File, n)
	errs := make(chan error, n)
	for i := range files {
		files[i] = create(t, make([]byte, 1<<20))
		b, err := Map(files[i], 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		b[0] = byte(i)
		UnmapLater(b, func(err error) { errs <- err })
	}
	Hurry()
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("UnmapLater: %v", err)
		}
	}
	for i, f := range files {
		if err := Seal(f); err != nil {
			t.Fatalf("file %d: Seal after UnmapLater: %v", i, err)
		}
	}
	later.mu.Lock()
	tid, pending, hurried := later.tid, later.pending, later.hurried
	later.mu.Unlock()
	if pending != 0 || hurried {
		t.Errorf("after every unmap: %d pending, hurried %v; want 0, false", pending, hurried)
	}
	if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err != nil {
		t.Fatal(err)
	} else if nice := 20 - prio; nice != 19 { // the raw system call answers 20 - nice
		t.Errorf("the unmapping thread runs at nice %d after its unmaps; want 19", nice)
	}
	if Hurry() != 0 {
		t.Error("Hurry with nothing queued reports unmaps in progress")
	}
}
