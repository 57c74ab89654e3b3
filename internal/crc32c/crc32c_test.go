package crc32c

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestUpdateMatchesStdlib checks every length around the folding
// thresholds (fold's, hybrid's, the largest hybrid call's), at every
// alignment, from several starting values.
func TestUpdateMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2*maxRounds*roundBytes+1024)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	lengths := []int{0, 1, 15, 255, 256, 257, 511, 512, 1023, 1024, 1025, 1280, 2047, 2048, 4096 + 13, 64 << 10, 256 << 10, 256<<10 + 4}
	for n := max(minFold-300, 0); n < minFold+1100; n += 37 {
		lengths = append(lengths, n)
	}
	for _, base := range []int{minRounds * roundBytes, maxRounds * roundBytes, 2 * maxRounds * roundBytes} {
		for _, d := range []int{-257, -256, -255, -1, 0, 1, 255, 256, 257, roundBytes - 1, roundBytes, roundBytes + 1} {
			if n := base + d; n >= 0 && n+64 <= len(buf) {
				lengths = append(lengths, n)
			}
		}
	}
	for n := minRounds - 2; n <= minRounds+40; n++ {
		lengths = append(lengths, n*roundBytes, n*roundBytes+100)
	}
	for _, n := range lengths {
		for off := range 64 {
			p := buf[off : off+n]
			for _, init := range []uint32{0, 0xffffffff, rng.Uint32()} {
				if got, want := Update(init, p), crc32.Update(init, table, p); got != want {
					t.Fatalf("Update(%#x, %d bytes at offset %d) = %#08x, want %#08x", init, n, off, got, want)
				}
			}
		}
	}
}

// TestUpdateInPieces checks that updating piece by piece equals one call.
func TestUpdateInPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := make([]byte, 1<<20)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	want := crc32.Checksum(p, table)
	var got uint32
	for rest := p; len(rest) > 0; {
		n := min(len(rest), rng.IntN(300<<10))
		got = Update(got, rest[:n])
		rest = rest[n:]
	}
	if got != want {
		t.Fatalf("pieces: %#08x, want %#08x", got, want)
	}
}

func FuzzUpdate(f *testing.F) {
	f.Add(uint32(0), make([]byte, 2048))
	f.Add(uint32(0xdeadbeef), []byte("hello"))
	f.Add(uint32(1), []byte("repeated up to hybrid sizes"))
	f.Fuzz(func(t *testing.T, init uint32, p []byte) {
		if got, want := Update(init, p), crc32.Update(init, table, p); got != want {
			t.Fatalf("Update(%#x, %d bytes) = %#08x, want %#08x", init, len(p), got, want)
		}
		// The same bytes repeated to a length the hybrid takes, cut
		// where init says.
		if len(p) == 0 {
			return
		}
		long := bytes.Repeat(p, (minRounds*roundBytes+int(init%(8<<10)))/len(p)+1)
		cut := int(init>>16) % len(long)
		want := crc32.Update(init, table, long)
		if got := Update(Update(init, long[:cut]), long[cut:]); got != want {
			t.Fatalf("Update over %d bytes cut at %d from %#x = %#08x, want %#08x", len(long), cut, init, got, want)
		}
	})
}

// BenchmarkUpdate compares Update with hash/crc32 and with the vector
// lanes alone in the same run:
//
//	go test -run '^$' -bench Update -count 5 ./internal/crc32c/
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{256, 512, 768, 1024, 2048, 4096, 8192, 64 << 10, 256 << 10} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b.Run("size="+strconv.Itoa(n)+"/stdlib", func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				crc32.Update(0, table, p)
			}
		})
		b.Run("size="+strconv.Itoa(n)+"/crc32c", func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				Update(0, p)
			}
		})
		if haveFold {
			// The vector lanes alone, without the scalar streams.
			b.Run("size="+strconv.Itoa(n)+"/lanes", func(b *testing.B) {
				b.SetBytes(int64(n))
				for range b.N {
					fold(0, p)
				}
			})
		}
	}
}

func TestNewMatchesStdlib(t *testing.T) {
	p := make([]byte, 100<<10+3)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	h, want := New(), crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for _, n := range []int{0, 1, 4096, 70000, len(p)} {
		h.Write(p[:n])
		want.Write(p[:n])
		if h.Sum32() != want.Sum32() || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
			t.Fatalf("after %d more bytes: %08x, want %08x", n, h.Sum32(), want.Sum32())
		}
	}
}
