package metarpc

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/meta"
)

var ctx = context.Background()

// serve runs a Handler over a fresh database behind a token check, as the
// control plane mounts it, and returns a client of it.
func serve(t *testing.T) (*Client, *httptest.Server) {
	t.Helper()
	db, err := meta.Open(filepath.Join(t.TempDir(), "store.db"), meta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := &Handler{DB: db, Members: func() map[string]string { return map[string]string{"n1-x": "127.0.0.1:1"} }}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/store/meta/{op}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Token") != "sesame" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &Client{BaseURL: srv.URL + "/v1/store/meta", Header: http.Header{"X-Token": {"sesame"}}}, srv
}

// TestStoreOverRPC runs a store whose metadata lives behind the RPC:
// objects, listing, multipart and the sentinels of errors.
func TestStoreOverRPC(t *testing.T) {
	c, _ := serve(t)
	st, err := local.Open(local.Config{Meta: c, Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx, "bkt"); !errors.Is(err, store.ErrBucketExists) {
		t.Fatalf("second create: %v", err)
	}
	if err := st.CreateBucket(ctx, "B_ad"); !errors.Is(err, store.ErrInvalidBucketName) || !errors.Is(err, store.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	body := bytes.Repeat([]byte("handoff "), 300_000)
	info, err := st.Put(ctx, "bkt", "dir/k", bytes.NewReader(body), int64(len(body)), store.PutOptions{ContentType: "text/plain", Meta: map[string]string{"a": "b"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(body)
	if info.ETag != hex.EncodeToString(sum[:]) || info.Expires.IsZero() {
		t.Fatalf("put gave %+v", info)
	}
	o, err := st.Get(ctx, "bkt", "dir/k", &store.Range{First: 10, Last: 19})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o.Body)
	o.Body.Close()
	if !bytes.Equal(got, body[10:20]) || o.Info.Meta["a"] != "b" || o.Info.ContentType != "text/plain" {
		t.Fatalf("get gave %q, %+v", got, o.Info)
	}
	res, err := st.List(ctx, "bkt", store.ListOptions{Delimiter: "/"})
	if err != nil || len(res.CommonPrefixes) != 1 || res.CommonPrefixes[0] != "dir/" {
		t.Fatalf("list: %+v, %v", res, err)
	}
	if _, err := st.Head(ctx, "bkt", "nope"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("head of a missing key: %v", err)
	}
	if _, err := st.Head(ctx, "nobkt", "k"); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("head in a missing bucket: %v", err)
	}

	id, err := st.CreateUpload(ctx, "bkt", "big", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1 := bytes.Repeat([]byte{1}, store.MinPartSize)
	pi1, err := st.UploadPart(ctx, "bkt", "big", id, 1, bytes.NewReader(p1), int64(len(p1)), store.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pi2, err := st.UploadPart(ctx, "bkt", "big", id, 2, strings.NewReader("tail"), 4, store.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := st.ListParts(ctx, "bkt", "big", id, store.ListPartsOptions{})
	if err != nil || len(parts.Parts) != 2 {
		t.Fatalf("list parts: %+v, %v", parts, err)
	}
	if _, err := st.CompleteUpload(ctx, "bkt", "big", id, []store.CompletePart{{Number: 1, ETag: pi1.ETag}, {Number: 1, ETag: pi1.ETag}}); !errors.Is(err, store.ErrInvalidPartOrder) {
		t.Fatalf("parts out of order: %v", err)
	}
	big, err := st.CompleteUpload(ctx, "bkt", "big", id, []store.CompletePart{{Number: 1, ETag: pi1.ETag}, {Number: 2, ETag: pi2.ETag}})
	if err != nil || big.Size != int64(len(p1))+4 || !strings.HasSuffix(big.ETag, "-2") {
		t.Fatalf("complete: %+v, %v", big, err)
	}
	if err := st.Delete(ctx, "bkt", "big"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "bkt", "dir/k"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	if s := st.Stats(); s.Blocks != 0 {
		t.Fatalf("%d blocks left after every delete", s.Blocks)
	}
	m, err := c.Members(ctx)
	if err != nil || m["n1-x"] != "127.0.0.1:1" {
		t.Fatalf("members: %v, %v", m, err)
	}
}

// TestUnreachableIsUnavailable checks that a metadata service that cannot
// be reached, or refuses the caller, is a clear error and never a success.
func TestUnreachableIsUnavailable(t *testing.T) {
	c, srv := serve(t)
	bad := &Client{BaseURL: c.BaseURL, Header: http.Header{"X-Token": {"wrong"}}}
	if err := bad.CreateBucket("bkt"); err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a refused caller: %v", err)
	}
	srv.Close()
	st, err := local.Open(local.Config{Meta: c, Memory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Put(ctx, "bkt", "k", strings.NewReader("x"), 1, store.PutOptions{})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "metadata service") {
		t.Fatalf("put with the control plane gone: %v", err)
	}
	if s := st.Stats(); s.Blocks != 0 {
		t.Fatalf("a failed put kept %d blocks", s.Blocks)
	}
}
