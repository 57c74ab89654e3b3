package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/sdk"
)

// The S3 roles are the baseline of the reference roles: the same hand-overs
// with the bytes stored as objects in an S3 server (MinIO in the harness)
// and the key passed instead. Uploads are UNSIGNED-PAYLOAD, as S3 clients
// send over TLS, so the baseline pays for moving the bytes and not for
// hashing them for the signature.

// s3 is this instance's S3 client, made on first use from the environment.
var s3 struct {
	once   sync.Once
	c      *minio.Client
	bucket string
	err    error
	n      atomic.Uint64 // object keys made
}

func s3Client() (*minio.Client, string, error) {
	s3.once.Do(func() {
		env := func(k string) string { return os.Getenv("BENCH_S3_" + k) }
		endpoint, bucket := env("ENDPOINT"), env("BUCKET")
		if endpoint == "" || bucket == "" {
			s3.err = sdk.Errorf(500, "the S3 roles need $BENCH_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY and _BUCKET in the function's spec")
			return
		}
		s3.bucket = bucket
		s3.c, s3.err = minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(env("ACCESS_KEY"), env("SECRET_KEY"), "")})
	})
	return s3.c, s3.bucket, s3.err
}

// newKey names a fresh object.
func newKey() string {
	return fmt.Sprintf("benchfn/%s/%d", os.Getenv("HANDOFF_INSTANCE"), s3.n.Add(1))
}

func s3Put(ctx context.Context, data []byte) (string, error) {
	c, bucket, err := s3Client()
	if err != nil {
		return "", err
	}
	key := newKey()
	_, err = c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: true,
	})
	if err != nil {
		return "", fmt.Errorf("putting %d bytes to s3://%s/%s: %w", len(data), bucket, key, err)
	}
	return key, nil
}

// s3Read gets object key into a new buffer of size bytes; any other length
// is an error.
func s3Read(ctx context.Context, key string, size int) ([]byte, error) {
	c, bucket, err := s3Client()
	if err != nil {
		return nil, err
	}
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting s3://%s/%s: %w", bucket, key, err)
	}
	defer obj.Close()
	buf := make([]byte, size+1)
	n, err := io.ReadFull(obj, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	if n != size {
		return nil, fmt.Errorf("s3://%s/%s holds %d bytes or more; want %d", bucket, key, n, size)
	}
	return buf[:n], nil
}

// s3Remove deletes the objects of a finished hand-over (not timed).
func s3Remove(keys ...string) {
	c, bucket, err := s3Client()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range keys {
		if k != "" {
			_ = c.RemoveObject(ctx, bucket, k, minio.RemoveObjectOptions{})
		}
	}
}

// scratch holds the producer's payloads for the S3 roles, reused across
// calls like the cached payload of the others.
var scratch struct {
	mu  sync.Mutex // guards all following fields
	buf [][]byte
}

// scratchFilled returns n freshly filled buffers of size bytes and their
// CRC-32Cs.
func scratchFilled(n, size int) ([][]byte, []uint32) {
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	if len(scratch.buf) > 0 && len(scratch.buf[0]) != size {
		scratch.buf = nil
	}
	for len(scratch.buf) < n {
		scratch.buf = append(scratch.buf, make([]byte, size))
	}
	bufs, sums := scratch.buf[:n], make([]uint32, n)
	for i, b := range bufs {
		sums[i] = fill(b)
	}
	return bufs, sums
}

// s3Transfer is the S3 hand-over: PUT, then invoke the consumer with the
// key; the consumer GETs it.
func s3Transfer(ctx context.Context, args []string) ([]byte, error) {
	size, err := atoi(args[0], "size")
	if err != nil {
		return nil, err
	}
	bufs, sums := scratchFilled(1, size)
	start := time.Now()
	key, err := s3Put(ctx, bufs[0])
	defer s3Remove(key)
	if err != nil {
		return nil, err
	}
	got, err := sdk.Invoke(ctx, args[1], fmt.Appendf(nil, "s3get %s %d", key, size))
	rt := time.Since(start)
	if err != nil {
		return nil, err
	}
	r, err := checkConsumed(got, size, sums[0])
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return answer{Handover: r.inHand - start.UnixNano(), RoundTrip: rt.Nanoseconds()}.bytes()
}

// s3Get is the S3 consumer.
func s3Get(ctx context.Context, args []string) ([]byte, error) {
	size, err := atoi(args[1], "size")
	if err != nil {
		return nil, err
	}
	b, err := s3Read(ctx, args[0], size)
	if err != nil {
		return nil, err
	}
	inHand := time.Now().UnixNano()
	return []byte(consumed(len(b), crc32.Checksum(b, castagnoli), inHand, 0, 0)), nil
}

// scatterS3 is scatter through S3: n parallel PUT + invoke.
func scatterS3(ctx context.Context, args []string) ([]byte, error) {
	n, size, consumer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	bufs, sums := scratchFilled(n, size)
	keys := make([]string, n)
	defer func() { s3Remove(keys...) }()
	start := time.Now()
	a, err := fanOut(n, start, func(i int) (int64, error) {
		key, err := s3Put(ctx, bufs[i])
		if err != nil {
			return 0, err
		}
		keys[i] = key
		got, err := sdk.Invoke(ctx, consumer, fmt.Appendf(nil, "s3get %s %d", key, size))
		if err != nil {
			return 0, err
		}
		r, err := checkConsumed(got, size, sums[i])
		return r.inHand, err
	})
	if err != nil {
		return nil, fmt.Errorf("scatter-s3: %w", err)
	}
	return a.bytes()
}

// broadcastS3 is broadcast through S3: one PUT, n parallel invocations
// that GET the same object.
func broadcastS3(ctx context.Context, args []string) ([]byte, error) {
	n, size, consumer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	bufs, sums := scratchFilled(1, size)
	start := time.Now()
	key, err := s3Put(ctx, bufs[0])
	defer s3Remove(key)
	if err != nil {
		return nil, err
	}
	a, err := fanOut(n, start, func(int) (int64, error) {
		got, err := sdk.Invoke(ctx, consumer, fmt.Appendf(nil, "s3get %s %d", key, size))
		if err != nil {
			return 0, err
		}
		r, err := checkConsumed(got, size, sums[0])
		return r.inHand, err
	})
	if err != nil {
		return nil, fmt.Errorf("broadcast-s3: %w", err)
	}
	return a.bytes()
}

// prepS3 fills n payloads for the gather to come and answers with their
// CRC-32Cs.
func prepS3(_ context.Context, args []string) ([]byte, error) {
	n, err := atoi(args[0], "count")
	if err != nil {
		return nil, err
	}
	size, err := atoi(args[1], "size")
	if err != nil {
		return nil, err
	}
	bufs, sums := scratchFilled(n, size)
	prepared.mu.Lock()
	prepared.data = bufs
	prepared.mu.Unlock()
	out := make([]string, n)
	for i, s := range sums {
		out[i] = strconv.FormatUint(uint64(s), 10)
	}
	return []byte(strings.Join(out, " ")), nil
}

// giveS3 PUTs prepared payload I and answers with its key.
func giveS3(ctx context.Context, args []string) ([]byte, error) {
	i, err := atoi(args[0], "index")
	if err != nil {
		return nil, err
	}
	prepared.mu.Lock()
	var data []byte
	if i < len(prepared.data) {
		data = prepared.data[i]
	}
	prepared.mu.Unlock()
	if data == nil {
		return nil, sdk.Errorf(409, "give-s3 %d: no such prepared payload; call prep-s3 first", i)
	}
	key, err := s3Put(ctx, data)
	if err != nil {
		return nil, err
	}
	return []byte(key), nil
}

// gatherS3 runs in the consumer: n parallel calls each have the producer
// PUT one payload and answer its key, which is then read here.
func gatherS3(ctx context.Context, args []string) ([]byte, error) {
	n, size, producer, err := patternArgs(args)
	if err != nil {
		return nil, err
	}
	sums, err := prepSums(ctx, producer, "prep-s3", n, size)
	if err != nil {
		return nil, fmt.Errorf("gather-s3: %w", err)
	}
	keys := make([]string, n)
	got := make([][]byte, n)
	defer func() { s3Remove(keys...) }()
	start := time.Now()
	a, err := fanOut(n, start, func(i int) (int64, error) {
		key, err := sdk.Invoke(ctx, producer, fmt.Appendf(nil, "give-s3 %d", i))
		if err != nil {
			return 0, err
		}
		keys[i] = string(key)
		if got[i], err = s3Read(ctx, keys[i], size); err != nil {
			return 0, err
		}
		return time.Now().UnixNano(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("gather-s3: %w", err)
	}
	for i, b := range got {
		if c := crc32.Checksum(b, castagnoli); c != sums[i] {
			return nil, fmt.Errorf("gather-s3: item %d has CRC-32C %08x; want %08x", i, c, sums[i])
		}
	}
	return a.bytes()
}
