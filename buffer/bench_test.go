package buffer

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkPut measures a 64 MiB Put into memory (memfd, checksum, seal),
// with the size declared and unknown, and frees the buffer between
// iterations. The source is a bytes.Reader behind a plain io.Reader, as a
// network body would be.
func BenchmarkPut(b *testing.B) {
	const n = 64 * MiB
	data := payload(n)
	for _, c := range []struct {
		name string
		size int64
	}{{"known", n}, {"unknown", -1}} {
		b.Run(c.name, func(b *testing.B) {
			s, _ := newStore(b, Config{Memory: 2 * n})
			m := Meta{Reads: 1, Expires: s.cfg.Clock.Now().Add(time.Hour)}
			b.SetBytes(n)
			b.ReportAllocs()
			for b.Loop() {
				r := struct{ io.Reader }{bytes.NewReader(data)}
				info, err := s.Put(context.Background(), r, c.size, m)
				if err != nil {
					b.Fatal(err)
				}
				s.Free(info.ID)
			}
		})
	}
}

// BenchmarkPutSpill measures a 64 MiB Put that goes straight to a spill
// file (the budget is smaller than the payload).
func BenchmarkPutSpill(b *testing.B) {
	const n = 64 * MiB
	data := payload(n)
	s, _ := newStore(b, Config{Memory: MiB, SpillDir: b.TempDir()})
	m := Meta{Reads: 1, Expires: s.cfg.Clock.Now().Add(time.Hour)}
	b.SetBytes(n)
	for b.Loop() {
		info, err := s.Put(context.Background(), struct{ io.Reader }{bytes.NewReader(data)}, n, m)
		if err != nil {
			b.Fatal(err)
		}
		s.Free(info.ID)
	}
}

// BenchmarkOpenWriteToTCP measures serving a 64 MiB pull: Open, io.Copy to
// a loopback TCP connection (sendfile from the memfd), Close.
func BenchmarkOpenWriteToTCP(b *testing.B) {
	const n = 64 * MiB
	s, _ := newStore(b, Config{Memory: 2 * n})
	m := Meta{Reads: ^uint32(0), Expires: s.cfg.Clock.Now().Add(time.Hour)}
	info, err := s.Put(context.Background(), bytes.NewReader(payload(n)), n, m)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(n)
	for b.Loop() {
		rd, err := s.Open(info.ID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(c, rd); err != nil {
			b.Fatal(err)
		}
		rd.Close()
	}
}

// BenchmarkOpenClose measures the bookkeeping of a pull without the bytes:
// the read count, the reopen of the memfd and the reference count.
func BenchmarkOpenClose(b *testing.B) {
	s, _ := newStore(b, Config{Memory: MiB})
	m := Meta{Reads: ^uint32(0), Expires: s.cfg.Clock.Now().Add(time.Hour)}
	info, err := s.Put(context.Background(), bytes.NewReader([]byte("x")), 1, m)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rd, err := s.Open(info.ID)
			if err != nil {
				b.Error(err)
				return
			}
			rd.Close()
		}
	})
}
