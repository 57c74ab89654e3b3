package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/spec"
)

// TestFunctionStoreGrants: an instance holds its function's own S3
// credential, which every node agent accepts, for the buckets its spec
// grants and no other; its mount shows those buckets only; the admin
// credential keeps full access. The test uses what the instance was
// handed (its key, its secret, its mount) from the test process, as the
// instance would.
func TestFunctionStoreGrants(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "grantfn", func(f *spec.Function) {
		f.Store = spec.Store{Read: []string{"corpus"}, ReadWrite: []string{"results-*"}}
	}))
	deploy(t, p.Client, testfnSpec(t, "envfn", nil))
	admin := s3Clients(t, p, dir, 0)
	ctx := context.Background()
	for _, b := range []string{"corpus", "results-a", "secret"} {
		if err := admin["n1"].MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
		body := []byte("in " + b)
		if _, err := admin["n1"].PutObject(ctx, b, "obj", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	ak := invoke(t, p.Client, "grantfn", "env AWS_ACCESS_KEY_ID")
	sk := invoke(t, p.Client, "grantfn", "env AWS_SECRET_ACCESS_KEY")
	if ak == node.S3AccessKey || !strings.HasPrefix(ak, "fn-grantfn") {
		t.Fatalf("the instance holds access key %q; want its function's own", ak)
	}
	envAK := invoke(t, p.Client, "envfn", "env AWS_ACCESS_KEY_ID")
	envSK := invoke(t, p.Client, "envfn", "env AWS_SECRET_ACCESS_KEY")

	st, err := p.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := func(endpoint, ak, sk string) *minio.Client {
		c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""), MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	denied := func(what string, err error, want string) {
		t.Helper()
		e := minio.ToErrorResponse(err)
		if e.Code != "AccessDenied" || !strings.Contains(e.Message, want) {
			t.Errorf("%s: %v; want AccessDenied saying %q", what, err, want)
		}
	}
	// The key was minted by one node agent; both accept it.
	for _, n := range st.Nodes {
		c := client(n.S3, ak, sk)
		if got, err := getObject(c, "corpus", "obj"); err != nil || string(got) != "in corpus" {
			t.Fatalf("node %s: grantfn reads its read grant: %q, %v", n.ID, got, err)
		}
		body := []byte("written through " + n.ID)
		if _, err := c.PutObject(ctx, "results-a", n.ID, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("node %s: grantfn writes its readWrite grant: %v", n.ID, err)
		}
		_, err := c.PutObject(ctx, "corpus", "x", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
		denied(n.ID+": grantfn writes its read grant", err, `move "corpus" to store.readWrite in grantfn's spec`)
		_, err = getObject(c, "secret", "obj")
		denied(n.ID+": grantfn reads another bucket", err, `Function grantfn has no grant for bucket "secret"`)
		bs, err := c.ListBuckets(ctx)
		var names []string
		for _, b := range bs {
			names = append(names, b.Name)
		}
		if err != nil || strings.Join(names, ",") != "corpus,results-a" {
			t.Errorf("node %s: grantfn lists buckets %v, %v; want corpus,results-a", n.ID, names, err)
		}
		// A function without a store section reaches nothing.
		e := client(n.S3, envAK, envSK)
		if bs, err := e.ListBuckets(ctx); err != nil || len(bs) != 0 {
			t.Errorf("node %s: envfn lists %v, %v; want none", n.ID, bs, err)
		}
		_, err = getObject(e, "corpus", "obj")
		denied(n.ID+": envfn reads a bucket", err, `Function envfn has no grant for bucket "corpus"`)
		// Another function's key, a forged secret.
		if _, err := getObject(client(n.S3, ak, envSK), "corpus", "obj"); minio.ToErrorResponse(err).Code != "SignatureDoesNotMatch" {
			t.Errorf("node %s: grantfn's key with envfn's secret: %v", n.ID, err)
		}
		if _, err := getObject(client(n.S3, ak+"_rsecret", sk), "secret", "obj"); minio.ToErrorResponse(err).Code != "SignatureDoesNotMatch" {
			t.Errorf("node %s: a key widened by hand: %v", n.ID, err)
		}
		// The admin credential still does everything.
		if bs, err := admin[n.ID].ListBuckets(ctx); err != nil || len(bs) != 3 {
			t.Errorf("node %s: admin lists %d buckets, %v", n.ID, len(bs), err)
		}
		if got, err := getObject(admin[n.ID], "results-a", n.ID); err != nil || !bytes.Equal(got, body) {
			t.Errorf("node %s: admin reads what grantfn wrote: %q, %v", n.ID, got, err)
		}
	}

	// The mount: the instance's view holds its buckets only.
	view := invoke(t, p.Client, "grantfn", "env HANDOFF_STORE_DIR")
	if view == "" {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			t.Skip("no /dev/fuse here: no store mount")
		}
		t.Fatalf("grantfn has no HANDOFF_STORE_DIR")
	}
	for _, n := range st.Nodes {
		if view == n.StoreDir {
			t.Fatalf("grantfn was handed the node-wide mount %s", view)
		}
	}
	if got := invoke(t, p.Client, "envfn", "env HANDOFF_STORE_DIR"); got != "" {
		t.Errorf("envfn, with no store section, was handed a mount: %s", got)
	}
	ents, err := os.ReadDir(view)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || !slices.Equal(names, []string{"corpus", "results-a"}) {
		t.Fatalf("ls of grantfn's view: %v, %v; want corpus, results-a", names, err)
	}
	if got, err := os.ReadFile(filepath.Join(view, "corpus", "obj")); err != nil || string(got) != "in corpus" {
		t.Fatalf("read through the view: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(view, "results-a", "by-file"), []byte("through the mount"), 0o644); err != nil {
		t.Fatalf("write through the view: %v", err)
	}
	if got, err := getObject(admin["n2"], "results-a", "by-file"); err != nil || string(got) != "through the mount" {
		t.Errorf("n2 reads the file written through the view: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(view, "corpus", "x"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a read grant through the view: %v; want EROFS", err)
	}
	if _, err := os.ReadFile(filepath.Join(view, "secret", "obj")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("read of another bucket through the view: %v; want EACCES", err)
	}
}
