package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/spec"
)

// TestStoreMountAcrossNodes writes a file through node n1's mount of the
// store and reads it through n2's, and checks that instances are told
// where their view of it is.
func TestStoreMountAcrossNodes(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse here: the store mount is off (the S3 API still serves the store)")
	}
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "envfn", func(f *spec.Function) { f.Store.ReadWrite = []string{"shared"} }))
	mounts := map[string]string{}
	checkFor(t, 20*time.Second, func() error {
		st, err := p.Client.Status(context.Background())
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.StoreDir == "" {
				return fmt.Errorf("node %s has not reported its store mount yet", n.ID)
			}
			if strings.HasPrefix(n.StoreDir, "off:") {
				t.Skipf("node %s cannot mount the store here: %s", n.ID, n.StoreDir)
			}
			mounts[n.ID] = n.StoreDir
		}
		if len(mounts) < 2 {
			return fmt.Errorf("%d nodes reported", len(mounts))
		}
		return nil
	})
	n1, n2 := mounts["n1"], mounts["n2"]
	if err := os.Mkdir(filepath.Join(n1, "shared"), 0o755); err != nil {
		t.Fatalf("mkdir a bucket through n1's mount: %v", err)
	}
	payload := filler(5<<20 + 123)
	if err := os.MkdirAll(filepath.Join(n1, "shared", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n1, "shared", "dir", "big.bin"), payload, 0o644); err != nil {
		t.Fatalf("write through n1's mount: %v", err)
	}
	// n2's view may trail by its cache timeout.
	checkFor(t, 10*time.Second, func() error {
		got, err := os.ReadFile(filepath.Join(n2, "shared", "dir", "big.bin"))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("n2 read %d bytes that differ from the %d written on n1", len(got), len(payload))
		}
		return nil
	})
	entries, err := os.ReadDir(filepath.Join(n2, "shared", "dir"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "big.bin" {
		t.Fatalf("ls through n2: %v, %v", entries, err)
	}
	if err := os.Remove(filepath.Join(n2, "shared", "dir", "big.bin")); err != nil {
		t.Fatalf("remove through n2: %v", err)
	}
	checkFor(t, 10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(n1, "shared", "dir", "big.bin")); !os.IsNotExist(err) {
			return fmt.Errorf("n1 still sees the removed file: %v", err)
		}
		return nil
	})
	// An instance is handed a view of its granted buckets, not the
	// node-wide mount (TestFunctionStoreGrants checks the view).
	out := invoke(t, p.Client, "envfn", "env HANDOFF_STORE_DIR")
	if out == "" || out == n1 || out == n2 {
		t.Fatalf("an instance sees HANDOFF_STORE_DIR=%q; want a view of its grants, not its node's mount (%s or %s)", out, n1, n2)
	}
	if ents, err := os.ReadDir(out); err != nil || len(ents) != 1 || ents[0].Name() != "shared" {
		t.Fatalf("the instance's view lists %v, %v; want its one granted bucket", ents, err)
	}
}
