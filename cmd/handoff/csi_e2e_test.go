package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/storefs"
)

// TestCSIVolumeAcrossNodes provisions a volume through node agent n1's
// CSI driver, publishes it into a "pod" directory on each node, writes a
// file through n2's and reads it through n1's and through n1's S3 API:
// a CSI volume is a bucket of the cluster store, served by each node
// agent's shared client.
func TestCSIVolumeAcrossNodes(t *testing.T) {
	if err := storefs.Available(); err != nil {
		t.Skipf("FUSE is not available here, so no volume can be published: %v", err)
	}
	dir := t.TempDir()
	p := startPlatform(t, dir, "--csi")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := map[string]*grpc.ClientConn{}
	for _, id := range []string{"n1", "n2"} {
		sock := filepath.Join(dir, "nodes", id, node.CSISocket)
		checkFor(t, 20*time.Second, func() error { _, err := os.Stat(sock); return err })
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		clients[id] = cc
		info, err := csi.NewNodeClient(cc).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		if err != nil || info.GetNodeId() != id {
			t.Fatalf("NodeGetInfo on %s: %v, %v", id, info, err)
		}
	}

	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	vol, err := csi.NewControllerClient(clients["n1"]).CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-shared", VolumeCapabilities: []*csi.VolumeCapability{capability},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20},
	})
	if err != nil {
		t.Fatalf("CreateVolume through n1: %v", err)
	}
	id := vol.GetVolume().GetVolumeId()

	// A pod directory on each node, under the platform's directory so
	// that its teardown detaches whatever a failure leaves mounted.
	targets := map[string]string{}
	for n, cc := range clients {
		target := filepath.Join(dir, "pods", n, "volume")
		if err := os.MkdirAll(target, 0o750); err != nil {
			t.Fatal(err)
		}
		if _, err := csi.NewNodeClient(cc).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: id, TargetPath: target, VolumeCapability: capability,
		}); err != nil {
			t.Fatalf("NodePublishVolume on %s: %v", n, err)
		}
		targets[n] = target
	}
	payload := filler(3<<20 + 17)
	if err := os.WriteFile(filepath.Join(targets["n2"], "part-0"), payload, 0o644); err != nil {
		t.Fatalf("write through the volume on n2: %v", err)
	}
	checkFor(t, 10*time.Second, func() error { // n1's view may trail by its cache timeout
		got, err := os.ReadFile(filepath.Join(targets["n1"], "part-0"))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("n1 read %d bytes that differ from the %d written on n2", len(got), len(payload))
		}
		return nil
	})
	s3 := s3Clients(t, p, dir, 1)["n1"]
	obj, err := s3.GetObject(ctx, id, "part-0", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("S3 GET %s/part-0 through n1: %d bytes, %v", id, len(got), err)
	}

	for n, cc := range clients {
		if _, err := csi.NewNodeClient(cc).NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: targets[n]}); err != nil {
			t.Fatalf("NodeUnpublishVolume on %s: %v", n, err)
		}
		if _, err := os.Stat(filepath.Join(targets[n], "part-0")); !os.IsNotExist(err) {
			t.Errorf("%s: the volume still shows after NodeUnpublishVolume: %v", n, err)
		}
	}
	if _, err := csi.NewControllerClient(clients["n1"]).DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	checkFor(t, 10*time.Second, func() error {
		if ok, err := s3.BucketExists(ctx, id); err != nil || ok {
			return fmt.Errorf("bucket %s after DeleteVolume: exists %v, %v", id, ok, err)
		}
		return nil
	})
}
