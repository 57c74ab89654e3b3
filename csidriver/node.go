package csidriver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/storefs"
)

// node is the CSI Node service. It publishes a volume by mounting its
// bucket at the target path; there is no staging step (the store needs
// no per-node device set-up), so STAGE_UNSTAGE_VOLUME is not advertised.
type node struct {
	csi.UnimplementedNodeServer
	d *Driver
}

func (n node) NodeGetInfo(ctx context.Context, req *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.d.cfg.NodeID}, nil
}

func (n node) NodeGetCapabilities(ctx context.Context, req *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{{
		Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{
			Type: csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		}},
	}}}, nil
}

// checkTarget refuses target paths the driver will not mount on.
func checkTarget(method, p string) error {
	if p == "" {
		return status.Errorf(codes.InvalidArgument, "%s: target_path is empty; give the directory to mount the volume on", method)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return status.Errorf(codes.InvalidArgument, "%s: target_path %q must be an absolute, clean path", method, p)
	}
	return nil
}

func (n node) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, c := req.GetVolumeId(), req.GetTargetPath(), req.GetVolumeCapability()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_id is empty; give the id CreateVolume returned")
	}
	if err := checkTarget("NodePublishVolume", target); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_capability is empty; give the access type (mount) and access mode")
	}
	if err := checkCapability(c); err != nil {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: "+err.Error())
	}
	mode := c.GetAccessMode().GetMode()
	ro := req.GetReadonly() || readOnlyMode(mode) || hasFlag(c, "ro")
	if err := exists(ctx, n.d.cfg.Backend, id); status.Code(err) == codes.NotFound && req.GetVolumeContext()[ContextBucket] == id {
		// The controller provisioned the volume, but in another node's
		// store: until the store is distributed, each node holds its
		// own, so this node starts the volume empty.
		if err := n.d.cfg.Backend.CreateBucket(ctx, id); err != nil && !errors.Is(err, store.ErrBucketExists) {
			return nil, storeStatus(err, "NodePublishVolume: create this node's bucket of volume %s", id)
		}
		n.d.cfg.Log.Warn("volume was provisioned in another node's store; this node's store starts it empty", "volume", id)
	} else if err != nil {
		return nil, err
	}

	n.d.nmu.Lock()
	defer n.d.nmu.Unlock()
	if p, ok := n.d.pubs[target]; ok {
		if p.volumeID == id && p.readOnly == ro {
			return &csi.NodePublishVolumeResponse{}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "NodePublishVolume: %s already has volume %s published (read-only %v); unpublish it before publishing volume %s (read-only %v) there", target, p.volumeID, p.readOnly, id, ro)
	}
	if !ro {
		for t, p := range n.d.pubs {
			if p.volumeID != id || p.readOnly {
				continue
			}
			if p.mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER || mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
				return nil, status.Errorf(codes.FailedPrecondition, "NodePublishVolume: volume %s is already published for writing at %s with a single-writer access mode; unpublish it there first, or use SINGLE_NODE_MULTI_WRITER (ReadWriteOncePod allows one pod only)", id, t)
			}
		}
	}
	// A target that answers ENOTCONN holds a dead mount of an earlier
	// run of the driver; the Mounter clears it.
	if _, err := os.Stat(target); !errors.Is(err, syscall.ENOTCONN) {
		if err := os.MkdirAll(target, 0o750); err != nil {
			return nil, status.Errorf(codes.Internal, "NodePublishVolume: create target %s: %v", target, err)
		}
	}
	if err := n.d.cfg.Mounter.Mount(target, id, ro); err != nil {
		code := codes.Internal
		if errors.Is(err, storefs.ErrUnavailable) {
			code = codes.FailedPrecondition
		}
		return nil, status.Errorf(code, "NodePublishVolume: mount volume %s at %s: %v", id, target, err)
	}
	n.d.pubs[target] = publication{volumeID: id, readOnly: ro, mode: mode}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n node) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "NodeUnpublishVolume: volume_id is empty; give the id of the published volume")
	}
	if err := checkTarget("NodeUnpublishVolume", target); err != nil {
		return nil, err
	}

	n.d.nmu.Lock()
	defer n.d.nmu.Unlock()
	if p, ok := n.d.pubs[target]; ok && p.volumeID != id {
		return nil, status.Errorf(codes.FailedPrecondition, "NodeUnpublishVolume: %s holds volume %s, not %s; unpublish it with its own id", target, p.volumeID, id)
	}
	// Unmount whatever is mounted there, ours or a mount left by an
	// earlier run of the driver (whose FUSE server is gone), then remove
	// the directory, as the spec asks. Both steps are idempotent.
	if err := n.d.cfg.Mounter.Unmount(target); err != nil {
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: unmount %s: %v", target, err)
	}
	delete(n.d.pubs, target)
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return nil, status.Errorf(codes.FailedPrecondition, "NodeUnpublishVolume: %s is unmounted but holds files of its own, so it was not removed; remove it by hand", target)
		}
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: remove target %s: %v", target, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
