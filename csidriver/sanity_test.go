package csidriver

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// harness is a driver over a real local store, with the real store
// mounter, served on a Unix socket in a temporary directory.
type harness struct {
	dir     string
	sock    string
	backend *local.Store
	mounter *StoreMounter
	driver  *Driver
	conn    *grpc.ClientConn
}

// needMounts skips the test when this process cannot mount FUSE, saying
// why: the node service's proof is a real mount, never a fake.
func needMounts(t *testing.T) {
	t.Helper()
	if err := storefs.Available(); err != nil {
		t.Skipf("csidriver: skipping, FUSE mounts are needed to publish volumes: %v", err)
	}
}

func startDriver(t *testing.T) *harness {
	t.Helper()
	needMounts(t)
	return startDriverIn(t, t.TempDir())
}

// startDriverIn starts a driver whose store, registry, mounts and socket
// are in dir, which may hold those of an earlier driver.
func startDriverIn(t *testing.T, dir string) *harness {
	t.Helper()
	st, err := local.Open(local.Config{Dir: filepath.Join(dir, "store"), Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m := NewStoreMounter(filepath.Join(dir, "mnt"), st, storefs.Options{CacheTimeout: -1})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg, err := OpenDirRegistry(filepath.Join(dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{NodeID: "node-a", Backend: st, Registry: reg, Mounter: m, Version: "test", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	ln, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(ln) }()
	conn, err := dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{dir: dir, sock: sock, backend: st, mounter: m, driver: d, conn: conn}
	t.Cleanup(func() {
		conn.Close()
		d.Stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	// A first mount tells a machine where FUSE exists but mounting is
	// not permitted (a container without CAP_SYS_ADMIN) from a failure.
	probe := filepath.Join(dir, "probe")
	os.Mkdir(probe, 0o755)
	if err := st.CreateBucket(context.Background(), "probe"); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(probe, "probe", false); errors.Is(err, storefs.ErrUnavailable) {
		t.Skipf("csidriver: skipping, FUSE mounts are needed to publish volumes: %v", err)
	} else if err != nil {
		t.Fatalf("probe mount: %v", err)
	}
	if err := m.Unmount(probe); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBucket(context.Background(), "probe"); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSanity runs the CSI sanity suite against the driver, publishing
// volumes as real FUSE mounts.
func TestSanity(t *testing.T) {
	h := startDriver(t)
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix:" + h.sock
	cfg.TargetPath = filepath.Join(h.dir, "target")
	cfg.StagingPath = filepath.Join(h.dir, "staging")
	cfg.TestVolumeSize = 1 << 30
	cfg.IdempotentCount = 3
	sanity.Test(t, cfg)
}

// dial connects a gRPC client to the driver's socket.
func dial(sock string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func ctrl(h *harness) csi.ControllerClient { return csi.NewControllerClient(h.conn) }
func nodec(h *harness) csi.NodeClient      { return csi.NewNodeClient(h.conn) }

// mountCap is a filesystem capability with the given access mode.
func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}
