// Package wcs3 is the S3 side of the wordcount example's baseline: the
// functions store chunks and counts as objects in an S3 server (MinIO in the
// demo) and pass keys instead of data.
package wcs3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/examples/wordcount/wc"
)

// clients caches one *minio.Client (and so one connection pool) per
// configuration for the life of the instance.
var clients struct {
	mu sync.Mutex // guards all following fields
	m  map[wc.S3]*minio.Client
	// buckets records the buckets known to exist.
	buckets map[wc.S3]bool
}

// Client returns the cached client for cfg.
func Client(cfg wc.S3) (*minio.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clients.mu.Lock()
	defer clients.mu.Unlock()
	if c := clients.m[cfg]; c != nil {
		return c, nil
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
	})
	if err != nil {
		return nil, fmt.Errorf("wcs3: S3 client for %s: %w", cfg.Endpoint, err)
	}
	if clients.m == nil {
		clients.m = map[wc.S3]*minio.Client{}
		clients.buckets = map[wc.S3]bool{}
	}
	clients.m[cfg] = c
	return c, nil
}

// EnsureBucket creates cfg.Bucket unless it exists (checked once per
// instance).
func EnsureBucket(ctx context.Context, cfg wc.S3) error {
	c, err := Client(cfg)
	if err != nil {
		return err
	}
	clients.mu.Lock()
	ok := clients.buckets[cfg]
	clients.mu.Unlock()
	if ok {
		return nil
	}
	exists, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return fmt.Errorf("wcs3: checking bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !exists {
		err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{})
		var er minio.ErrorResponse
		// Another instance may have created it meanwhile.
		if err != nil && !(errors.As(err, &er) && (er.Code == "BucketAlreadyOwnedByYou" || er.Code == "BucketAlreadyExists")) {
			return fmt.Errorf("wcs3: creating bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
		}
	}
	clients.mu.Lock()
	clients.buckets[cfg] = true
	clients.mu.Unlock()
	return nil
}

// Put stores data as object key.
func Put(ctx context.Context, cfg wc.S3, key string, data []byte, contentType string) error {
	c, err := Client(cfg)
	if err != nil {
		return err
	}
	_, err = c.PutObject(ctx, cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType: contentType,
		// UNSIGNED-PAYLOAD, as S3 clients do over TLS: the baseline should
		// pay for moving the data, not for hashing it for the signature.
		DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("wcs3: putting %d bytes to s3://%s/%s at %s: %w", len(data), cfg.Bucket, key, cfg.Endpoint, err)
	}
	return nil
}

// Get reads the whole object key into a buffer of its exact size.
func Get(ctx context.Context, cfg wc.S3, key string) ([]byte, error) {
	c, err := Client(cfg)
	if err != nil {
		return nil, err
	}
	obj, err := c.GetObject(ctx, cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("wcs3: getting s3://%s/%s at %s: %w", cfg.Bucket, key, cfg.Endpoint, err)
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		return nil, fmt.Errorf("wcs3: getting s3://%s/%s at %s: %w", cfg.Bucket, key, cfg.Endpoint, err)
	}
	buf := make([]byte, st.Size)
	if _, err := io.ReadFull(obj, buf); err != nil {
		return nil, fmt.Errorf("wcs3: reading s3://%s/%s (%d bytes) at %s: %w", cfg.Bucket, key, st.Size, cfg.Endpoint, err)
	}
	return buf, nil
}
