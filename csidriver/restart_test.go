package csidriver

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// helperEnv, when set, makes TestDriverProcess serve a driver in the
// directory it names until the process is killed.
const helperEnv = "HANDOFF_CSIDRIVER_HELPER_DIR"

// TestDriverProcess is the driver process TestRestartAfterCrash kills;
// run alone, it does nothing.
func TestDriverProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process of TestRestartAfterCrash")
	}
	startDriverIn(t, dir)
	select {}
}

// TestRestartAfterCrash kills a driver process that has a volume
// published, leaving its mounts dead ("transport endpoint is not
// connected"), then starts a driver on the same state: it unpublishes
// the dead target, publishes again over a dead target, and mounts the
// store afresh over the dead root mount.
func TestRestartAfterCrash(t *testing.T) {
	needMounts(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "pods", "a"), filepath.Join(dir, "pods", "b")
	t.Cleanup(func() { // if the test fails with dead mounts, before TempDir's removal
		for _, p := range []string{a, b, filepath.Join(dir, "probe"), filepath.Join(dir, "mnt")} {
			unmountAll(p)
		}
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestDriverProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	sock := filepath.Join(dir, "csi.sock")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the driver process did not listen within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := &harness{dir: dir, sock: sock}
	var err error
	if first.conn, err = dial(sock); err != nil {
		t.Fatal(err)
	}
	defer first.conn.Close()
	id := createVolume(t, first, "pvc-crash")
	publish(t, first, id, a, false)
	publish(t, first, id, b, false)
	if err := os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed = true
	// The kernel aborts the FUSE connection when the dead process's
	// descriptors close; give it a moment.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := os.Stat(a)
		if errors.Is(err, syscall.ENOTCONN) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target after the driver died: %v, want ENOTCONN", err)
		}
	}

	h := startDriverIn(t, dir) // its probe mounts the store over the dead root
	unpublish(t, h, id, a)
	publish(t, h, id, b, false) // over the dead bind
	if err := os.WriteFile(filepath.Join(b, "g"), []byte("y"), 0o644); err != nil {
		t.Fatalf("write after re-publishing: %v", err)
	}
	unpublish(t, h, id, b)
	if _, err := ctrl(h).DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
}
