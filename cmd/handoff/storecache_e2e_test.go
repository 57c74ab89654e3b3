package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/minio/minio-go/v7"
)

// TestStoreCacheAcrossNodes: each node agent serves the store's metadata
// from its cache, and a change made through one agent is seen through the
// other as soon as it returns: overwrites, deletes and new buckets,
// through the S3 APIs of two real node agents, each read repeated so the
// second comes from the cache.
func TestStoreCacheAcrossNodes(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	cs := s3Clients(t, p, dir, 0)
	ctx := context.Background()
	if err := cs["n1"].MakeBucket(ctx, "coherent", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	order := []string{"n1", "n2"}
	for i := range 20 {
		w := cs[order[i%2]]
		body := []byte(fmt.Sprintf("version %d", i))
		if _, err := w.PutObject(ctx, "coherent", "k", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %d through %s: %v", i, order[i%2], err)
		}
		for _, id := range []string{"n1", "n2", "n1", "n2"} {
			got, err := getObject(cs[id], "coherent", "k")
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("after put %d through %s, %s read %q, %v", i, order[i%2], id, got, err)
			}
		}
	}
	if err := cs["n2"].RemoveObject(ctx, "coherent", "k", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs["n1"].StatObject(ctx, "coherent", "k", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("n1 after n2 deleted the object: %v", err)
	}
	// A bucket n1 was told is absent, made through n2.
	if ok, err := cs["n1"].BucketExists(ctx, "later"); ok || err != nil {
		t.Fatalf("n1: bucket exists %v, %v", ok, err)
	}
	if err := cs["n2"].MakeBucket(ctx, "later", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := cs["n1"].BucketExists(ctx, "later"); !ok || err != nil {
		t.Fatalf("n1 after n2 made the bucket: exists %v, %v", ok, err)
	}
}
