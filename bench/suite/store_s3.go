package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
)

// The S3 targets; their series are target+"-put" and target+"-get".
const (
	targetHandoff   = "handoff-s3"
	targetMinIOShm  = "minio-shm"
	targetMinIODisk = "minio-disk"
)

const s3Bucket = "bench-s3"

// s3Target is one S3 server and the bucket the series use on it.
type s3Target struct {
	name   string
	c      *minio.Client
	bucket string
}

// s3PutOptions are the PUT options of every series: minio-go's defaults
// but the payload's SHA-256, which it would otherwise compute on the
// client for plain HTTP (UNSIGNED-PAYLOAD instead, as over HTTPS).
var s3PutOptions = minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}

// measureS3 PUTs and GETs objects of every size through each target with
// the same client, the targets in turn for every repetition (starting at
// another each time) so that the machine's noise falls on all alike. Each object is checked once per
// size and deleted after its GET, outside the timed sections.
func (e Env) measureS3(ctx context.Context, n *storeNode, shm, disk *baseline.MinIO, sz storeSizes) (bench.Result, error) {
	res := bench.NewResult("store-s3")
	if err := n.C.MakeBucket(ctx, s3Bucket, minio.MakeBucketOptions{}); err != nil {
		return res, err
	}
	targets := []s3Target{{name: targetHandoff, c: n.C, bucket: s3Bucket}}
	for _, m := range []*baseline.MinIO{shm, disk} {
		c, err := minioClient(m)
		if err != nil {
			return res, err
		}
		name := targetMinIODisk
		if m == shm {
			name = targetMinIOShm
		}
		targets = append(targets, s3Target{name: name, c: c, bucket: m.Bucket()})
	}
	largest := sz.s3[len(sz.s3)-1]
	payload := make([]byte, largest)
	rand.NewChaCha8([32]byte{'s', '3'}).Read(payload)
	ceil, err := startCeiling(payload)
	if err != nil {
		return res, err
	}
	defer ceil.Close()
	cc, err := newS3Client(ceil.Endpoint(), "ceiling", "ceiling-secret")
	if err != nil {
		return res, err
	}
	targets = append(targets, s3Target{name: targetCeiling, c: cc, bucket: "ceiling"})
	// The GET buffer is touched before any GET: a first touch of fresh
	// memory costs about 5 s per GiB on this VM, and would fall on
	// whichever target first reads the largest size.
	buf := make([]byte, largest)
	copy(buf, payload)
	fmt.Fprintf(e.Log, "S3 PUT and GET through %s (node %s), %s, %s and the %s\n", targetHandoff, n.ID, targetMinIOShm, targetMinIODisk, targetCeiling)
	// A warm-up of every target, untimed: a small object, then one of
	// the largest size, so that each server's buffers have been touched
	// once before they are timed (a first touch of fresh memory costs
	// about 5 s per GiB on this VM, and fell on the first repetition of
	// the largest size, its p99).
	for _, t := range targets {
		for _, size := range []int64{bench.MiB, largest} {
			if _, _, err := s3Once(ctx, t, "warm-up", payload[:size], buf, true); err != nil {
				return res, fmt.Errorf("%s: warm-up: %w", t.name, err)
			}
		}
	}
	for _, size := range sz.s3 {
		reps := sz.s3Reps(size)
		put := make([][]time.Duration, len(targets))
		get := make([][]time.Duration, len(targets))
		for i := range reps {
			// Each repetition starts at another target, so that none
			// always follows the same one.
			for j := range targets {
				k := (i + j) % len(targets)
				t := targets[k]
				p, g, err := s3Once(ctx, t, fmt.Sprintf("obj-%d-%d", size, i), payload[:size], buf, i == 0)
				if err != nil {
					return res, fmt.Errorf("%s, %s: %w", t.name, bench.FormatSize(size), err)
				}
				put[k], get[k] = append(put[k], p), append(get[k], g)
			}
		}
		for k, t := range targets {
			pp, gp := bench.Summarize(t.name+"-put", size, put[k]), bench.Summarize(t.name+"-get", size, get[k])
			res.Points = append(res.Points, pp, gp)
			fmt.Fprintf(e.Log, "  %-10s %7s ×%-3d PUT p50 %s (%s)  GET p50 %s (%s)\n", t.name, bench.FormatSize(size), reps,
				bench.FormatDuration(pp.P50), bench.FormatThroughput(pp.Throughput), bench.FormatDuration(gp.P50), bench.FormatThroughput(gp.Throughput))
		}
	}
	return res, nil
}

// s3Once PUTs data as key, GETs it back into buf (checking it if check)
// and deletes it, and returns the times of the PUT and of the GET.
func s3Once(ctx context.Context, t s3Target, key string, data, buf []byte, check bool) (put, get time.Duration, err error) {
	size := int64(len(data))
	start := time.Now()
	if _, err := t.c.PutObject(ctx, t.bucket, key, bytes.NewReader(data), size, s3PutOptions); err != nil {
		return 0, 0, fmt.Errorf("PUT: %w", err)
	}
	put = time.Since(start)
	start = time.Now()
	obj, err := t.c.GetObject(ctx, t.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, 0, fmt.Errorf("GET: %w", err)
	}
	n, err := io.ReadFull(obj, buf[:size])
	obj.Close()
	get = time.Since(start)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("GET: %d bytes of %d: %w", n, size, err)
	}
	if check && !bytes.Equal(buf[:n], data) {
		return 0, 0, fmt.Errorf("GET returned other bytes than the PUT (%d of %d)", n, size)
	}
	if err := t.c.RemoveObject(ctx, t.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return 0, 0, fmt.Errorf("DELETE: %w", err)
	}
	return put, get, nil
}
