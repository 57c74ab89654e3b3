package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/node"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// TestNodeServesS3 uses a node agent's S3-compatible API with a real S3
// client, with the credential every member derives from the cluster token,
// and checks that instances are told where it is.
func TestNodeServesS3(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "envfn", nil))
	st, err := p.Client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "cluster.token"))
	if err != nil {
		t.Fatal(err)
	}
	secret := node.S3Secret(strings.TrimSpace(string(token)))
	for _, n := range st.Nodes {
		if n.S3 == "" {
			t.Fatalf("node %s reports no S3 API", n.ID)
		}
		c, err := minio.New(n.S3, &minio.Options{Creds: credentials.NewStaticV4(node.S3AccessKey, secret, "")})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := c.MakeBucket(ctx, "data", minio.MakeBucketOptions{}); err != nil {
			t.Fatalf("node %s: make bucket: %v", n.ID, err)
		}
		payload := filler(3 << 20)
		if _, err := c.PutObject(ctx, "data", "a/b.txt", bytes.NewReader(payload), int64(len(payload)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("node %s: put: %v", n.ID, err)
		}
		obj, err := c.GetObject(ctx, "data", "a/b.txt", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("node %s: get gave %d bytes, err %v", n.ID, len(got), err)
		}
		bad, _ := minio.New(n.S3, &minio.Options{Creds: credentials.NewStaticV4(node.S3AccessKey, "wrong-secret", "")})
		if _, err := bad.ListBuckets(ctx); err == nil {
			t.Fatalf("node %s: a wrong secret was accepted", n.ID)
		}
	}
	// An instance finds the API of its own node in its environment.
	out := invoke(t, p.Client, "envfn", "env AWS_ENDPOINT_URL_S3")
	found := false
	for _, n := range st.Nodes {
		found = found || out == "http://"+n.S3
	}
	if !found {
		t.Fatalf("an instance sees AWS_ENDPOINT_URL_S3=%q; want one of the nodes' S3 APIs", out)
	}
}
