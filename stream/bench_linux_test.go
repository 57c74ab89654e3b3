package stream

import (
	"hash/crc32"
	"io"
	"strconv"
	"testing"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// The benchmarks move b.N chunks of 256 KiB from a writing goroutine to a
// reading one; compare each with its raw baseline in the same run:
//
//	go test -run '^$' -bench . -benchtime 3s -count 3 ./stream/
const chunk = 256 << 10

// pump writes b.N chunks to w (then closes it) while reading r to its end.
func pump(b *testing.B, w io.Writer, closeW func() error, r io.Reader) {
	b.Helper()
	b.SetBytes(chunk)
	errc := make(chan error, 1)
	src := make([]byte, chunk)
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, err := w.Write(src); err != nil {
				errc <- err
				return
			}
		}
		errc <- closeW()
	}()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, chunk))
	if err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if n != int64(b.N)*chunk {
		b.Fatalf("moved %d bytes, want %d", n, int64(b.N)*chunk)
	}
}

// BenchmarkPipeRaw is the baseline: a 1 MiB pipe between two goroutines.
func BenchmarkPipeRaw(b *testing.B) {
	r, w := pipe(b, 1<<20)
	pump(b, w, w.Close, r)
}

// BenchmarkPipeStream is BenchmarkPipeRaw through Writer and Reader.
func BenchmarkPipeStream(b *testing.B) {
	for _, frame := range []int{DefaultFrame, MaxFrame} {
		b.Run(sizeName(frame), func(b *testing.B) {
			r, w := pipe(b, 1<<20)
			sw := NewWriterSize(w, frame)
			pump(b, sw, func() error {
				if err := sw.Close(); err != nil {
					return err
				}
				return w.Close()
			}, NewReader(r))
		})
	}
}

// BenchmarkTCPRaw is the cross-node baseline: loopback TCP between two
// goroutines.
func BenchmarkTCPRaw(b *testing.B) {
	a, c := tcpPair(b)
	pump(b, a, a.CloseWrite, c)
}

// BenchmarkRelayEdge is a cross-node edge: producer pipe, Relay (splice)
// into loopback TCP, Relay out of it into the consumer's pipe.
// The copy variant relays through user space instead, for comparison.
func BenchmarkRelayEdge(b *testing.B) {
	for _, v := range []struct {
		name  string
		relay func(io.Writer, io.Reader) (int64, error)
	}{{"splice", Relay}, {"copy", plainCopy}} {
		b.Run(v.name, func(b *testing.B) {
			prod, cons, relayed := edgeWith(b, v.relay)
			pump(b, prod, prod.Close, cons)
			for range 2 {
				if err := <-relayed; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// plainCopy copies through a buffer, hiding ReaderFrom and WriterTo (which
// would splice too).
func plainCopy(dst io.Writer, src io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, copyBuffer))
}

// BenchmarkCRC32C is the checksum alone, which both ends pay per byte,
// against hash/crc32's.
func BenchmarkCRC32C(b *testing.B) {
	p := make([]byte, chunk)
	for _, v := range []struct {
		name   string
		update func(uint32, []byte) uint32
	}{
		{"stdlib", func(c uint32, p []byte) uint32 { return crc32.Update(c, castagnoli, p) }},
		{"stream", crc32c.Update},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(chunk)
			var c uint32
			for range b.N {
				c = v.update(c, p)
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return "frame=" + strconv.Itoa(n>>20) + "MiB"
	}
	return "frame=" + strconv.Itoa(n>>10) + "KiB"
}
