// Package seqio is the data and the loops of the sequential file
// benchmarks of `handoff bench store`: a deterministic stream of bytes
// that writers produce and readers check, written and read one chunk at a
// time, as `dd bs=1M` does.
package seqio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk is the size of every write and read, and the period of the
// pattern: chunk i is one random chunk with i stamped in its first 8
// bytes, so that no two chunks are equal.
const Chunk = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Tally is what a writer or reader reports.
type Tally struct {
	Bytes   int64         `json:"bytes"`
	Elapsed time.Duration `json:"elapsed_ns"`
	CRC     uint32        `json:"crc32c"`
}

// Throughput is bytes per second.
func (t Tally) Throughput() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) / t.Elapsed.Seconds()
}

// Reader yields the pattern's first n bytes.
type Reader struct {
	base []byte
	n    int64
	off  int64
	cur  []byte // the chunk off is in, stamped
}

// NewReader returns a Reader of n bytes of the pattern.
func NewReader(n int64) *Reader {
	base := make([]byte, Chunk)
	rng := rand.NewChaCha8([32]byte{'s', 'e', 'q', 'i', 'o'})
	rng.Read(base)
	return &Reader{base: base, n: n, cur: make([]byte, Chunk)}
}

// Read copies the next bytes of the pattern into p.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	total := 0
	for len(p) > 0 && r.off < r.n {
		in := int(r.off % Chunk)
		if in == 0 {
			copy(r.cur, r.base)
			binary.LittleEndian.PutUint64(r.cur, uint64(r.off/Chunk))
		}
		k := copy(p, r.cur[in:min(int64(Chunk), int64(in)+r.n-r.off)])
		p, total, r.off = p[k:], total+k, r.off+int64(k)
	}
	return total, nil
}

// Sum is the CRC-32C of the pattern's first n bytes.
func Sum(n int64) uint32 {
	h := crc32.New(castagnoli)
	buf := make([]byte, Chunk)
	if _, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{NewReader(n)}, buf); err != nil {
		panic(err) // a Reader does not fail
	}
	return h.Sum32()
}

// Write writes the pattern's first n bytes to w in chunks of Chunk bytes
// and returns the time it took, set-up (the pattern's first chunk) not
// included.
func Write(w io.Writer, n int64) (Tally, error) {
	src := NewReader(n)
	buf := make([]byte, Chunk)
	h := crc32.New(castagnoli)
	start := time.Now()
	var done int64
	for done < n {
		k, _ := src.Read(buf)
		if _, err := w.Write(buf[:k]); err != nil {
			return Tally{}, fmt.Errorf("seqio: write at byte %d: %w", done, err)
		}
		h.Write(buf[:k])
		done += int64(k)
	}
	return Tally{Bytes: done, Elapsed: time.Since(start), CRC: h.Sum32()}, nil
}

// Read reads r to its end in chunks of Chunk bytes, summing what it
// reads.
func Read(r io.Reader) (Tally, error) {
	buf := make([]byte, Chunk)
	h := crc32.New(castagnoli)
	start := time.Now()
	var n int64
	for {
		k, err := r.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Tally{}, fmt.Errorf("seqio: read at byte %d: %w", n, err)
		}
	}
	return Tally{Bytes: n, Elapsed: time.Since(start), CRC: h.Sum32()}, nil
}

// WriteFile creates path and writes n bytes of the pattern to it; the
// close (where a store mount stores the object) is timed too.
func WriteFile(path string, n int64) (Tally, error) {
	f, err := os.Create(path)
	if err != nil {
		return Tally{}, err
	}
	t, err := Write(f, n)
	start := time.Now()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("seqio: close %s: %w", path, cerr)
	}
	t.Elapsed += time.Since(start)
	return t, err
}

// ReadFile reads path to its end after dropping it from the page cache,
// so that every byte comes from the filesystem.
func ReadFile(path string) (Tally, error) {
	f, err := os.Open(path)
	if err != nil {
		return Tally{}, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return Tally{}, fmt.Errorf("seqio: drop %s from the page cache: %w", path, err)
	}
	return Read(f)
}
