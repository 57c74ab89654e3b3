package scoped_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/scoped"
	"github.com/handoff-dev/handoff/storefs"
)

var grants = spec.Store{Read: []string{"corpus"}, ReadWrite: []string{"results", "scratch-*"}}

func open(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Open(local.Config{Dir: t.TempDir(), Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, b := range []string{"corpus", "results", "other"} {
		if err := st.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, b, "obj", strings.NewReader("in "+b), -1, store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestScopedBackend(t *testing.T) {
	v := scoped.New(open(t), "counter", grants)
	ctx := context.Background()
	bs, err := v.ListBuckets(ctx)
	if err != nil || len(bs) != 2 || bs[0].Name != "corpus" || bs[1].Name != "results" {
		t.Fatalf("ListBuckets: %v, %v", bs, err)
	}
	if _, err := v.Head(ctx, "corpus", "obj"); err != nil {
		t.Fatalf("read grant: %v", err)
	}
	if _, err := v.Put(ctx, "results", "k", strings.NewReader("x"), 1, store.PutOptions{}); err != nil {
		t.Fatalf("readWrite grant: %v", err)
	}
	if err := v.CreateBucket(ctx, "scratch-a"); err != nil {
		t.Fatalf("readWrite pattern: %v", err)
	}
	_, err = v.Put(ctx, "corpus", "k", strings.NewReader("x"), 1, store.PutOptions{})
	var de *scoped.DeniedError
	if !errors.As(err, &de) || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "move it to store.readWrite in counter's spec") {
		t.Fatalf("write to a read grant: %v", err)
	}
	if _, err := v.Get(ctx, "other", "obj", nil); !errors.Is(err, syscall.EACCES) || !strings.Contains(err.Error(), `no grant for bucket "other"`) {
		t.Fatalf("read of an ungranted bucket: %v", err)
	}
	if _, err := v.List(ctx, "other", store.ListOptions{}); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("list of an ungranted bucket: %v", err)
	}
}

// TestScopedMount serves the view through a real FUSE mount: the function
// sees its buckets only, reads and writes as granted, and gets EROFS and
// EACCES elsewhere.
func TestScopedMount(t *testing.T) {
	if err := storefs.Available(); err != nil {
		t.Skipf("no FUSE here: %v", err)
	}
	st := open(t)
	dir := t.TempDir()
	srv, err := storefs.Mount(dir, scoped.New(st, "counter", grants), storefs.Options{CacheTimeout: -1})
	if err != nil {
		if errors.Is(err, storefs.ErrUnavailable) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })

	ents, err := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, ",") != "corpus,results" {
		t.Fatalf("ls of the view: %v, %v; want corpus,results", names, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "corpus", "obj")); err != nil || string(b) != "in corpus" {
		t.Fatalf("read a read grant: %q, %v", b, err)
	}
	payload := bytes.Repeat([]byte("r"), 3<<20)
	if err := os.WriteFile(filepath.Join(dir, "results", "out"), payload, 0o644); err != nil {
		t.Fatalf("write a readWrite grant: %v", err)
	}
	if o, err := st.Head(context.Background(), "results", "out"); err != nil || o.Size != int64(len(payload)) {
		t.Fatalf("the store holds %+v, %v", o, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "scratch-1"), 0o755); err != nil {
		t.Fatalf("mkdir a bucket of a readWrite pattern: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "corpus", "x"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to a read grant: %v; want EROFS", err)
	}
	if err := os.Remove(filepath.Join(dir, "corpus", "obj")); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("remove in a read grant: %v; want EROFS", err)
	}
	if _, err := os.ReadFile(filepath.Join(dir, "other", "obj")); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("read of an ungranted bucket: %v; want EACCES", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "mine"), 0o755); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("mkdir of an ungranted bucket: %v; want EACCES", err)
	}
}
