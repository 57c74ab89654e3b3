package local

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/handoff-dev/handoff/store"
)

// BenchmarkPutGet measures a whole-object Put then Get through the node's
// store, without HTTP: the floor under the S3 API's figures. On the 2-core
// VM (go test -bench PutGet -benchtime 100x ./store/local) a 1 MiB
// round trip took about 5.5 ms, 40% of it in MD5 for the ETag S3 clients
// expect, 25% in copies.
func BenchmarkPutGet(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20, 16 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			s, err := Open(Config{Dir: b.TempDir(), Memory: 256 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			s.CreateBucket(ctx, "bench")
			body := bytes.Repeat([]byte{7}, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Put(ctx, "bench", "k", bytes.NewReader(body), int64(size), store.PutOptions{}); err != nil {
					b.Fatal(err)
				}
				o, err := s.Get(ctx, "bench", "k", nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, o.Body)
				o.Body.Close()
			}
		})
	}
}

// BenchmarkPut overwrites one object, as an S3 client replacing a key:
// each Put frees the last one's blocks, whose memory the next reuses.
//
//	go test -run NONE -bench 'Put$|Get$' -count 5 ./store/local
func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20, 64 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			s, ctx := benchStore(b)
			body := bytes.Repeat([]byte{7}, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := s.Put(ctx, "bench", "k", bytes.NewReader(body), int64(size), store.PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGet reads one object whole into a writer that discards it.
func BenchmarkGet(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20, 64 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			s, ctx := benchStore(b)
			body := bytes.Repeat([]byte{7}, size)
			if _, err := s.Put(ctx, "bench", "k", bytes.NewReader(body), int64(size), store.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				o, err := s.Get(ctx, "bench", "k", nil)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, o.Body); err != nil || n != int64(size) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				o.Body.Close()
			}
		})
	}
}

func benchStore(b *testing.B) (*Store, context.Context) {
	s, err := Open(Config{Dir: b.TempDir(), Memory: 512 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	s.CreateBucket(ctx, "bench")
	return s, ctx
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return itoa(n>>20) + "MiB"
	default:
		return itoa(n>>10) + "KiB"
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
