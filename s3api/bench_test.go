package s3api_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/store/local"
)

// BenchmarkS3 puts and gets objects through the S3 API with minio-go
// over loopback HTTP, as handoff bench store does (UNSIGNED-PAYLOAD over
// plain HTTP, minio-go's multipart above 16 MiB), backed by a node's
// store/local in memory: the node agent's own part of the bench's S3
// figures, without the control plane's metadata round trips.
//
//	go test -run NONE -bench S3 -count 5 ./s3api
func BenchmarkS3(b *testing.B) {
	s := startServer(b, local.Config{Memory: 1 << 30})
	c, err := minio.New(s.host, &minio.Options{Creds: credentials.NewStaticV4(testAccess, testSecret, ""), MaxRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := c.MakeBucket(ctx, "bench", minio.MakeBucketOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 1 << 20, 64 << 20} {
		body := data(1, size)
		dst := make([]byte, size)
		copy(dst, body) // fault its pages in before timing, as the bench touches its buffers
		name := map[int]string{1 << 10: "1KiB", 1 << 20: "1MiB", 64 << 20: "64MiB"}[size]
		// UNSIGNED-PAYLOAD, as the bench: minio-go would otherwise hash
		// the body for plain HTTP, and the server check the hash.
		opts := minio.PutObjectOptions{DisableContentSha256: true}
		b.Run("Put/"+name, func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := c.PutObject(ctx, "bench", "k", bytes.NewReader(body), int64(size), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Get/"+name, func(b *testing.B) {
			if _, err := c.PutObject(ctx, "bench", "k", bytes.NewReader(body), int64(size), opts); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				o, err := c.GetObject(ctx, "bench", "k", minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.ReadFull(o, dst); err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				o.Close()
			}
		})
	}
}
