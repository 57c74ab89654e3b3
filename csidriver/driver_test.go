package csidriver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
)

// wantCode fails the test unless err is a gRPC status with code c.
func wantCode(t *testing.T, err error, c codes.Code) {
	t.Helper()
	if got := status.Code(err); got != c {
		t.Fatalf("got %v (%v), want code %v", got, err, c)
	}
}

func createVolume(t *testing.T, h *harness, name string) string {
	t.Helper()
	resp, err := ctrl(h).CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name:               name,
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume().GetVolumeId()
}

func publish(t *testing.T, h *harness, id, target string, readOnly bool) {
	t.Helper()
	_, err := nodec(h).NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId:         id,
		TargetPath:       target,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
		Readonly:         readOnly,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unpublish(t *testing.T, h *harness, id, target string) {
	t.Helper()
	if _, err := nodec(h).NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target %s after unpublish: %v, want it removed", target, err)
	}
}

// TestPublishTwoTargets publishes one volume at two targets, as two pods
// on a node would have it, and a third time read-only: a file written
// through one shows in the others and in the store, an object put in the
// store shows as a file, and the read-only target refuses writes.
func TestPublishTwoTargets(t *testing.T) {
	h := startDriver(t)
	ctx := context.Background()
	id := createVolume(t, h, "pvc-two-targets")
	pods := filepath.Join(h.dir, "pods")
	a, b, ro := filepath.Join(pods, "a", "mount"), filepath.Join(pods, "b", "mount"), filepath.Join(pods, "ro", "mount")
	publish(t, h, id, a, false)
	publish(t, h, id, b, false)
	publish(t, h, id, ro, true)
	publish(t, h, id, a, false) // idempotent

	data := bytes.Repeat([]byte("handoff "), 300_000) // 2.4 MB: a multipart upload
	if err := os.MkdirAll(filepath.Join(a, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "out", "part-0"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{b, ro} {
		got, err := os.ReadFile(filepath.Join(dir, "out", "part-0"))
		if err != nil {
			t.Fatalf("read through %s: %v", dir, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes through %s, want the %d written through %s", len(got), dir, len(data), a)
		}
	}
	obj, err := h.backend.Get(ctx, id, "out/part-0", nil)
	if err != nil {
		t.Fatalf("the file is not in the store: %v", err)
	}
	got, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("store object holds %d bytes, want %d", len(got), len(data))
	}

	msg := "put over S3"
	if _, err := h.backend.Put(ctx, id, "from-s3.txt", strings.NewReader(msg), int64(len(msg)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b, "from-s3.txt")); err != nil || string(got) != msg {
		t.Fatalf("object put in the store reads as %q, %v through the mount", got, err)
	}

	err = os.WriteFile(filepath.Join(ro, "nope"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write through the read-only target: %v, want EROFS", err)
	}

	// A target holds one volume: another volume, or the same one
	// read-only, there is AlreadyExists.
	other := createVolume(t, h, "pvc-other")
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: other, TargetPath: a,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
	})
	wantCode(t, err, codes.AlreadyExists)
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: id, TargetPath: a, Readonly: true,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
	})
	wantCode(t, err, codes.AlreadyExists)

	for _, dir := range []string{a, b, ro} {
		unpublish(t, h, id, dir)
		unpublish(t, h, id, dir) // idempotent
	}
	if _, err := ctrl(h).DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.backend.HeadBucket(ctx, id); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("bucket after DeleteVolume: %v, want it gone", err)
	}
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: id, TargetPath: a,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER),
	})
	wantCode(t, err, codes.NotFound)
}

// TestControllerErrors checks the answers the sanity suite does not ask
// for: block volumes, foreign fsTypes, parameters, capacity ranges and
// buckets the driver did not make.
func TestControllerErrors(t *testing.T) {
	h := startDriver(t)
	ctx := context.Background()
	c := ctrl(h)
	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	_, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "blk", VolumeCapabilities: []*csi.VolumeCapability{block}})
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "filesystem (mount) volume") {
		t.Errorf("block refusal does not say what to use instead: %v", err)
	}
	ext4 := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	ext4.GetMount().FsType = "ext4"
	_, err = c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "ext4", VolumeCapabilities: []*csi.VolumeCapability{ext4}})
	wantCode(t, err, codes.InvalidArgument)

	rw := []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
	_, err = c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "p", VolumeCapabilities: rw, Parameters: map[string]string{"replicas": "2"}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "p", VolumeCapabilities: rw,
		Parameters: map[string]string{"csi.storage.k8s.io/pvc/name": "data"}})
	if err != nil {
		t.Fatalf("reserved parameters must be ignored: %v", err)
	}
	_, err = c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "r", VolumeCapabilities: rw,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30, LimitBytes: 1 << 30}})
	wantCode(t, err, codes.InvalidArgument)

	// Block in ValidateVolumeCapabilities is not confirmed, with a reason.
	id := createVolume(t, h, "v")
	vr, err := c.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{block}})
	if err != nil || vr.GetConfirmed() != nil || vr.GetMessage() == "" {
		t.Fatalf("validate block: %v, %v; want unconfirmed with a message", vr, err)
	}
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: filepath.Join(h.dir, "blk"), VolumeCapability: block})
	wantCode(t, err, codes.InvalidArgument)

	// A volume that does not exist is NotFound, unless its context says
	// the controller made it in another node's store: then this node
	// starts it empty.
	elsewhere := VolumeID("elsewhere")
	target := filepath.Join(h.dir, "elsewhere")
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: elsewhere, TargetPath: target, VolumeCapability: rw[0]})
	wantCode(t, err, codes.NotFound)
	_, err = nodec(h).NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: elsewhere, TargetPath: target, VolumeCapability: rw[0],
		VolumeContext: map[string]string{ContextBucket: elsewhere}})
	if err != nil {
		t.Fatalf("publish a volume provisioned elsewhere: %v", err)
	}
	unpublish(t, h, elsewhere, target)

	// A bucket someone else made is published (static volumes) but
	// never adopted nor deleted by the controller.
	foreign := VolumeID("taken")
	if err := h.backend.CreateBucket(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "taken", VolumeCapabilities: rw})
	wantCode(t, err, codes.AlreadyExists)
	_, err = c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: foreign})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := c.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: foreign, VolumeCapabilities: rw}); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryOutlivesStore restarts the driver's store (whose objects
// die with it) and checks that the controller still knows its volumes:
// a retried CreateVolume succeeds, DeleteVolume deletes, ListVolumes
// lists.
func TestRegistryOutlivesStore(t *testing.T) {
	dir := t.TempDir()
	reg, err := OpenDirRegistry(filepath.Join(dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	open := func() *local.Store {
		st, err := local.Open(local.Config{Dir: filepath.Join(dir, "store"), Memory: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	ctx := context.Background()
	req := &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}}
	st := open()
	c := controller{d: &Driver{cfg: Config{Backend: st, Registry: reg}}}
	v, err := c.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, v.Volume.VolumeId, "f", strings.NewReader("x"), 1, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = open()
	defer st.Close()
	c = controller{d: &Driver{cfg: Config{Backend: st, Registry: reg}}}
	if v2, err := c.CreateVolume(ctx, req); err != nil || v2.Volume.VolumeId != v.Volume.VolumeId || v2.Volume.CapacityBytes != 1<<20 {
		t.Fatalf("retried CreateVolume after a restart: %v, %v", v2, err)
	}
	if l, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{}); err != nil || len(l.Entries) != 1 {
		t.Fatalf("ListVolumes after a restart: %v, %v", l, err)
	}
	if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.Volume.VolumeId}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.HeadBucket(ctx, v.Volume.VolumeId); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("bucket after DeleteVolume: %v", err)
	}
}

func TestMaxVolumeBytes(t *testing.T) {
	d := &Driver{cfg: Config{MaxVolumeBytes: 1 << 30}}
	c := controller{d: d}
	if _, err := c.capacity(&csi.CapacityRange{RequiredBytes: 2 << 30}); status.Code(err) != codes.OutOfRange {
		t.Fatalf("over the maximum: %v, want OutOfRange", err)
	}
	if n, err := c.capacity(&csi.CapacityRange{LimitBytes: 4 << 30}); err != nil || n != 1<<30 {
		t.Fatalf("limit only, above the maximum: %d, %v; want the maximum", n, err)
	}
	if n, err := c.capacity(nil); err != nil || n != 0 {
		t.Fatalf("no range: %d, %v; want 0 (unknown)", n, err)
	}
}

func TestListVolumesPages(t *testing.T) {
	h := startDriver(t)
	ctx := context.Background()
	want := map[string]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		want[createVolume(t, h, "pvc-"+n)] = true
	}
	got := map[string]bool{}
	tok := ""
	pages := 0
	for {
		resp, err := ctrl(h).ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetEntries()) > 2 {
			t.Fatalf("page of %d entries, want at most 2", len(resp.GetEntries()))
		}
		for _, e := range resp.GetEntries() {
			got[e.GetVolume().GetVolumeId()] = true
		}
		if tok = resp.GetNextToken(); tok == "" {
			break
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages listing %v, want 3 pages listing %v", pages, got, want)
	}
	_, err := ctrl(h).ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "pvc-a"})
	wantCode(t, err, codes.Aborted)
}

func TestVolumeID(t *testing.T) {
	for name, want := range map[string]string{
		"pvc-0f1e2d3c-aaaa-bbbb-cccc-0123456789ab":   "csi-pvc-0f1e2d3c-aaaa-bbbb-cccc-0123456789ab-",
		"pvc-0f1e2d3c-aaaa-bbbb-cccc-0123456789abcd": "csi-pvc-0f1e2d3c-aaaa-bbbb-cccc-0123456789ab-",
		"My Volume!": "csi-my-volume-",
		"!!!":        "csi-",
	} {
		id := VolumeID(name)
		if !strings.HasPrefix(id, want) || store.CheckBucketName(id) != nil || VolumeID(name) != id {
			t.Errorf("VolumeID(%q) = %q, want a stable valid bucket name starting %q", name, id, want)
		}
	}
	if VolumeID("a-b") == VolumeID("a_b") {
		t.Error("names that look alike share a bucket")
	}
}

// FuzzVolumeID checks that any name the CO sends becomes a valid bucket.
func FuzzVolumeID(f *testing.F) {
	for _, s := range []string{"", "pvc-1", "Ünïcödé", strings.Repeat("x", 200), "a..b", "192.168.0.1", "-.-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id := VolumeID(name)
		if err := store.CheckBucketName(id); err != nil {
			t.Fatalf("VolumeID(%q) = %q: %v", name, id, err)
		}
		if !strings.HasPrefix(id, "csi-") {
			t.Fatalf("VolumeID(%q) = %q lacks the csi- prefix", name, id)
		}
	})
}

func TestSocketPath(t *testing.T) {
	for ep, want := range map[string]string{
		"unix:///csi/csi.sock": "/csi/csi.sock",
		"unix:/csi/csi.sock":   "/csi/csi.sock",
		"/csi/csi.sock":        "/csi/csi.sock",
	} {
		if got, err := socketPath(ep); err != nil || got != want {
			t.Errorf("socketPath(%q) = %q, %v; want %q", ep, got, err, want)
		}
	}
	for _, ep := range []string{"tcp://127.0.0.1:10000", "unix://csi.sock", ""} {
		if _, err := socketPath(ep); err == nil {
			t.Errorf("socketPath(%q) succeeded, want an error", ep)
		}
	}
}
