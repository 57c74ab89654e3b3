package s3api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/handoff-dev/handoff/s3api"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store/local"
)

var testRoot = []byte("function key root of the test cluster")

// startGranted serves a store with function keys under testRoot, and
// makes buckets corpus, results and other with an object each.
func startGranted(t *testing.T) *server {
	t.Helper()
	st, err := local.Open(local.Config{Dir: t.TempDir(), Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := serve(t, st, testRoot)
	admin := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	for _, b := range []string{"corpus", "results", "other"} {
		if err := admin.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
		body := []byte("in " + b)
		if _, err := admin.PutObject(ctx, b, "obj", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func serve(t *testing.T, st *local.Store, root []byte) *server {
	t.Helper()
	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: testAccess, SecretKey: testSecret, FunctionKeys: root})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptestServer(t, h)
	u, _ := url.Parse(srv)
	return &server{store: st, host: u.Host}
}

var counterGrants = spec.Store{Read: []string{"corpus"}, ReadWrite: []string{"results", "scratch-*"}}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(c *minio.Client, bucket, key string) (string, error) {
	o, err := c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", err
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	return string(b), err
}

func put(c *minio.Client, bucket, key, body string) error {
	_, err := c.PutObject(context.Background(), bucket, key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
	return err
}

// TestFunctionKeyGrants: a function's key reads and writes what its grants
// say, and is refused elsewhere with a message that names the grant to add.
func TestFunctionKeyGrants(t *testing.T) {
	s := startGranted(t)
	ak, sk := s3api.FunctionKey(testRoot, "counter", counterGrants)
	if !strings.HasPrefix(ak, "fn-counter") {
		t.Fatalf("access key %q does not name the function", ak)
	}
	c := s.client(t, ak, sk)
	ctx := context.Background()

	if got, err := get(c, "corpus", "obj"); err != nil || got != "in corpus" {
		t.Fatalf("read of a read grant: %q, %v", got, err)
	}
	if err := put(c, "results", "out", "counted"); err != nil {
		t.Fatalf("write of a readWrite grant: %v", err)
	}
	if got, err := get(c, "results", "out"); err != nil || got != "counted" {
		t.Fatalf("read back: %q, %v", got, err)
	}
	if err := c.MakeBucket(ctx, "scratch-1", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make a bucket of a readWrite pattern: %v", err)
	}
	if err := put(c, "scratch-1", "tmp", "x"); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for o := range c.ListObjects(ctx, "corpus", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list a read grant: %v", o.Err)
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "obj" {
		t.Fatalf("listed %v", keys)
	}

	denied := func(what string, err error, want string) {
		t.Helper()
		e := minio.ToErrorResponse(err)
		if e.Code != "AccessDenied" || !strings.Contains(e.Message, want) {
			t.Errorf("%s: %v (%s: %q); want AccessDenied saying %q", what, err, e.Code, e.Message, want)
		}
	}
	denied("write of a read grant", put(c, "corpus", "x", "y"),
		`Function counter may only read bucket "corpus": its spec grants it in store.read. To write it (PUT), move "corpus" to store.readWrite in counter's spec`)
	denied("delete in a read grant", c.RemoveObject(ctx, "corpus", "obj", minio.RemoveObjectOptions{}), "store.readWrite")
	for e := range c.RemoveObjects(ctx, "corpus", func() <-chan minio.ObjectInfo {
		ch := make(chan minio.ObjectInfo, 1)
		ch <- minio.ObjectInfo{Key: "obj"}
		close(ch)
		return ch
	}(), minio.RemoveObjectsOptions{}) {
		denied("multi-delete in a read grant", e.Err, "store.readWrite")
	}
	_, err := get(c, "other", "obj")
	denied("read of an ungranted bucket", err,
		`Function counter has no grant for bucket "other". Add "other" to store.read (to read it) or store.readWrite (to write it too) in counter's spec`)
	denied("write of an ungranted bucket", put(c, "other", "x", "y"), "no grant")
	denied("make an ungranted bucket", c.MakeBucket(ctx, "mine", minio.MakeBucketOptions{}), "no grant")
	denied("delete an ungranted bucket", c.RemoveBucket(ctx, "other"), "no grant")
	if ok, err := c.BucketExists(ctx, "other"); ok || err == nil {
		t.Errorf("HeadBucket of an ungranted bucket: %v, %v", ok, err)
	}

	// ListBuckets shows only the granted buckets.
	bs, err := c.ListBuckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "corpus,results,scratch-1" {
		t.Errorf("the function lists buckets %v; want corpus,results,scratch-1", names)
	}
	// A function without grants lists none and reads nothing.
	ak0, sk0 := s3api.FunctionKey(testRoot, "echo", spec.Store{})
	bare := s.client(t, ak0, sk0)
	if bs, err := bare.ListBuckets(ctx); err != nil || len(bs) != 0 {
		t.Errorf("a function with no grant lists %v, %v", bs, err)
	}
	_, err = get(bare, "corpus", "obj")
	denied("read without a store section", err, `Function echo has no grant for bucket "corpus"`)

	// The admin credential still does everything.
	admin := s.client(t, testAccess, testSecret)
	if bs, err := admin.ListBuckets(ctx); err != nil || len(bs) != 4 {
		t.Errorf("admin lists %d buckets, %v; want 4", len(bs), err)
	}
	if err := put(admin, "other", "by-admin", "x"); err != nil {
		t.Errorf("admin write: %v", err)
	}
}

// TestFunctionKeyForgeries: a key is good only with its own secret, under
// the cluster's root; widening the grants in the key breaks it.
func TestFunctionKeyForgeries(t *testing.T) {
	s := startGranted(t)
	ak, sk := s3api.FunctionKey(testRoot, "counter", counterGrants)
	otherAK, otherSK := s3api.FunctionKey(testRoot, "reader", spec.Store{Read: []string{"other"}})
	_, foreignSK := s3api.FunctionKey([]byte("another cluster"), "counter", counterGrants)
	wideAK := ak + "_rother"
	for _, c := range []struct{ what, ak, sk, code string }{
		{"a wrong secret", ak, "0123456789012345678901234567890123456789", "SignatureDoesNotMatch"},
		{"another function's secret", ak, otherSK, "SignatureDoesNotMatch"},
		{"another cluster's secret", ak, foreignSK, "SignatureDoesNotMatch"},
		{"a key widened with a grant", wideAK, sk, "SignatureDoesNotMatch"},
		{"a key renamed to another function", "fn-reader_rother", sk, "SignatureDoesNotMatch"},
		{"a malformed function key", "fn-Bad_x", sk, "InvalidAccessKeyId"},
		{"an unknown key", "AKIAOTHER", sk, "InvalidAccessKeyId"},
	} {
		_, err := get(s.client(t, c.ak, c.sk), "other", "obj")
		if got := code(err); got != c.code {
			t.Errorf("%s: %v; want %s", c.what, err, c.code)
		}
	}
	// The genuine key of the function granted "other" reads it.
	if got, err := get(s.client(t, otherAK, otherSK), "other", "obj"); err != nil || got != "in other" {
		t.Errorf("reader: %q, %v", got, err)
	}
}

// TestFunctionKeyOnEveryNode: two handlers with the same root (two node
// agents of one cluster) accept each other's keys, and a presigned URL
// carries the function's grants.
func TestFunctionKeyOnEveryNode(t *testing.T) {
	s1 := startGranted(t)
	s2 := serve(t, s1.store, testRoot)
	ak, sk := s3api.FunctionKey(testRoot, "counter", counterGrants)
	if got, err := get(s2.client(t, ak, sk), "corpus", "obj"); err != nil || got != "in corpus" {
		t.Fatalf("second node: %q, %v", got, err)
	}
	c := s1.client(t, ak, sk)
	for bucket, want := range map[string]int{"corpus": 200, "other": 403} {
		u, err := c.PresignedGetObject(context.Background(), bucket, "obj", time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("presigned GET of %s: %d; want %d", bucket, resp.StatusCode, want)
		}
	}
	// Without a root, function keys are refused.
	st := s1.store
	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: testAccess, SecretKey: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(httptestServer(t, h))
	if _, err := get((&server{host: u.Host}).client(t, ak, sk), "corpus", "obj"); code(err) != "InvalidAccessKeyId" {
		t.Errorf("a node without function keys: %v", err)
	}
	if _, err := s3api.New(s3api.Config{Backend: st, AccessKey: "fn-admin", SecretKey: "x"}); err == nil {
		t.Errorf("an admin key that looks like a function's was accepted")
	}
}

func TestParseFunctionKey(t *testing.T) {
	ak, _ := s3api.FunctionKey(testRoot, "wc-count", counterGrants)
	if ak != "fn-wc-count_wresults_wscratch-*_rcorpus" {
		t.Fatalf("access key %q", ak)
	}
	name, g, err := s3api.ParseFunctionKey(ak)
	if err != nil || name != "wc-count" || strings.Join(g.Read, ",") != "corpus" || strings.Join(g.ReadWrite, ",") != "results,scratch-*" {
		t.Fatalf("parse: %q %+v %v", name, g, err)
	}
	for _, bad := range []string{"handoff", "fn-", "fn-a_", "fn-a_xcorpus", "fn-a_r", "fn-a_rAB", "fn-A", "fn-a_r*x*", "fn-a-", "fn-" + strings.Repeat("a", 64)} {
		if _, _, err := s3api.ParseFunctionKey(bad); err == nil {
			t.Errorf("ParseFunctionKey(%q) accepted", bad)
		}
	}
}
