package storefs_test

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// TestPushedInvalidation: with changes pushed, the kernel keeps names and
// sizes past CacheTimeout (an untold change stays unseen by stat), and
// Invalidate makes it forget them; reads follow the store either way.
func TestPushedInvalidation(t *testing.T) {
	var pushed atomic.Bool
	pushed.Store(true)
	const short = 50 * time.Millisecond
	m := mount(t, local.Config{}, storefs.Options{CacheTimeout: short, Pushed: pushed.Load})
	ctx := context.Background()
	if err := m.b.CreateBucket(ctx, "pushed"); err != nil {
		t.Fatal(err)
	}
	m.put(t, "pushed", "dir/obj", []byte("first"))
	path := m.path("pushed", "dir", "obj")
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if got := size(); got != 5 {
		t.Fatalf("size %d, want 5", got)
	}

	// Replaced behind the mount's back and not told: the kernel keeps
	// the old size well past CacheTimeout, but an open reads the new
	// bytes (every open asks the store).
	m.put(t, "pushed", "dir/obj", []byte("second!"))
	time.Sleep(4 * short)
	if got := size(); got != 5 {
		t.Fatalf("size %d after an untold change, want the kernel's 5: names and attributes are not kept long", got)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "second!" {
		t.Fatalf("read %q, %v after a replace; want the new object", got, err)
	}

	// Told: stat shows the new size at once.
	m.put(t, "pushed", "dir/obj", []byte("third, longer"))
	m.srv.Invalidate("pushed", "dir/obj")
	waitFor(t, func() bool { return size() == 13 }, "stat to show the told size 13")

	// A delete, told for the whole bucket, is seen by stat.
	if err := m.b.Delete(ctx, "pushed", "dir/obj"); err != nil {
		t.Fatal(err)
	}
	m.srv.Invalidate("pushed", "")
	waitFor(t, func() bool {
		_, err := os.Stat(path)
		return err != nil && err.(*os.PathError).Err == syscall.ENOENT
	}, "stat to say ENOENT after the told delete")

	// Not pushed: answers last CacheTimeout again.
	pushed.Store(false)
	m.put(t, "pushed", "dir/obj", []byte("four"))
	if got := size(); got != 4 {
		t.Fatalf("size %d, want 4", got)
	}
	m.put(t, "pushed", "dir/obj", []byte("fifth"))
	waitFor(t, func() bool { return size() == 5 }, "stat to show an untold change after CacheTimeout when not pushed")
}

// waitFor polls cond for up to 2 s: the kernel forgets on Invalidate's
// goroutine, just after it returns.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 2s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
