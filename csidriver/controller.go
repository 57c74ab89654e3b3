package csidriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/handoff-dev/handoff/store"
)

// reservedParamPrefix marks the parameters Kubernetes' external
// provisioner may pass through for itself; the driver ignores them.
const reservedParamPrefix = "csi.storage.k8s.io/"

// controller is the CSI Controller service.
type controller struct {
	csi.UnimplementedControllerServer
	d *Driver
}

// VolumeID returns the id, and the bucket, of the volume a CreateVolume
// request names: "csi-", the name's first 40 letters, digits and hyphens
// in lower case, "-" and 16 hex digits of the name's SHA-256. The same
// name always gives the same bucket, so a retried CreateVolume finds the
// volume it made; different names never share one (but for a hash
// collision), and the id is a valid bucket name whatever the name holds.
func VolumeID(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	prefix := strings.Trim(b.String(), "-")
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:8])
	if prefix == "" {
		return "csi-" + h
	}
	return "csi-" + prefix + "-" + h
}

// checkParameters refuses the parameters the driver does not know. It
// takes none yet: every volume is a bucket of the node's store.
func checkParameters(p map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if strings.HasPrefix(k, reservedParamPrefix) {
			continue
		}
		return fmt.Errorf("parameter %q is not supported: store volumes take no StorageClass parameters yet; remove it", k)
	}
	return nil
}

// ownParameters returns the parameters that describe the volume, without
// the CO's reserved ones.
func ownParameters(p map[string]string) map[string]string {
	var own map[string]string
	for k, v := range p {
		if !strings.HasPrefix(k, reservedParamPrefix) {
			if own == nil {
				own = make(map[string]string)
			}
			own[k] = v
		}
	}
	return own
}

// capacity picks the capacity of a new volume from a request's range:
// the required bytes, else the limit, else 0 (unknown: the store holds
// what its budgets allow).
func (c controller) capacity(r *csi.CapacityRange) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "capacity range [%d, %d] has a negative bound; give byte counts >= 0", req, lim)
	}
	if lim > 0 && req > lim {
		return 0, status.Errorf(codes.InvalidArgument, "capacity range: required %d bytes exceed the limit %d; raise the limit or ask for less", req, lim)
	}
	n := req
	if n == 0 {
		n = lim
	}
	if max := c.d.cfg.MaxVolumeBytes; max > 0 && req > max {
		return 0, status.Errorf(codes.OutOfRange, "a volume of %d bytes exceeds the largest this store offers, %d bytes; ask for less or raise the store's budgets", req, max)
	}
	if max := c.d.cfg.MaxVolumeBytes; max > 0 && n > max {
		n = max // only the limit was given: the largest within it
	}
	return n, nil
}

// fits reports whether an existing volume's capacity lies in a range.
func fits(capacity int64, r *csi.CapacityRange) bool {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	return (req == 0 || capacity >= req) && (lim == 0 || capacity <= lim)
}

// lookup reads a volume's registry record; nil if there is none.
func (c controller) lookup(id string) (*Record, error) {
	r, ok, err := c.d.cfg.Registry.Get(id)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the record of volume %s: %v", id, err)
	}
	if !ok {
		return nil, nil
	}
	return &r, nil
}

func (c controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: name is empty; give the volume a name (Kubernetes: the PV name)")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities(), "CreateVolume: volume_capabilities"); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkParameters(req.GetParameters()); err != nil {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: "+err.Error())
	}
	if req.GetVolumeContentSource() != nil {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: creating a volume from a snapshot or another volume is not supported; create an empty volume and copy the data in")
	}
	capacity, err := c.capacity(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	params := ownParameters(req.GetParameters())
	id := VolumeID(name)
	b := c.d.cfg.Backend

	c.d.cmu.Lock()
	defer c.d.cmu.Unlock()
	rec, err := c.lookup(id)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if rec.Name != name {
			return nil, status.Errorf(codes.AlreadyExists, "volume id %s of name %q is taken by volume %q (a hash collision); pick another name", id, name, rec.Name)
		}
		if !fits(rec.Capacity, req.GetCapacityRange()) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with a capacity of %d bytes, outside the requested range [%d, %d]; ask for a range that holds it, or delete the volume first", name, rec.Capacity, req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes())
		}
		if !maps.Equal(rec.Parameters, params) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with parameters %v, not %v; use the same parameters or delete the volume first", name, rec.Parameters, params)
		}
		capacity = rec.Capacity
	} else {
		// A bucket of this name that the registry does not know was made
		// by someone else (over S3 or the mount): never adopt it.
		if _, err := b.HeadBucket(ctx, id); err == nil {
			return nil, status.Errorf(codes.AlreadyExists, "bucket %s for volume %q exists but was not provisioned by this driver; delete the bucket or pick another volume name", id, name)
		} else if !errors.Is(err, store.ErrNoSuchBucket) {
			return nil, storeStatus(err, "CreateVolume %q: look up bucket %s", name, id)
		}
		// The record goes first: a retry after a failure below finds it
		// and finishes the bucket.
		rec = &Record{Name: name, Capacity: capacity, Parameters: params, Created: time.Now().UTC()}
		if err := c.d.cfg.Registry.Put(id, *rec); err != nil {
			return nil, status.Errorf(codes.Internal, "CreateVolume %q: record the volume: %v", name, err)
		}
	}
	if err := b.CreateBucket(ctx, id); err != nil && !errors.Is(err, store.ErrBucketExists) {
		return nil, storeStatus(err, "CreateVolume %q: create bucket %s", name, id)
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      id,
		CapacityBytes: capacity,
		VolumeContext: volumeContext(id),
	}}, nil
}

func (c controller) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteVolume: volume_id is empty; give the id CreateVolume returned")
	}
	if store.CheckBucketName(id) != nil {
		return &csi.DeleteVolumeResponse{}, nil // no such volume: done
	}
	b := c.d.cfg.Backend

	c.d.cmu.Lock()
	defer c.d.cmu.Unlock()
	rec, err := c.lookup(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		if _, err := b.HeadBucket(ctx, id); err == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "bucket %s was not provisioned by this driver, so DeleteVolume leaves it; delete it over S3 if it is no longer needed", id)
		}
		return &csi.DeleteVolumeResponse{}, nil
	}
	// Empty the bucket, then remove it, then the record: a retry after a
	// failure finds the record and carries on.
	after := ""
	for {
		page, err := b.List(ctx, id, store.ListOptions{After: after})
		if errors.Is(err, store.ErrNoSuchBucket) {
			break
		}
		if err != nil {
			return nil, storeStatus(err, "DeleteVolume %s: list its objects", id)
		}
		for _, o := range page.Objects {
			if err := b.Delete(ctx, id, o.Key); err != nil && !errors.Is(err, store.ErrNoSuchBucket) {
				return nil, storeStatus(err, "DeleteVolume %s: delete object %q", id, o.Key)
			}
		}
		if !page.Truncated {
			break
		}
		after = page.Next
	}
	if err := b.DeleteBucket(ctx, id); errors.Is(err, store.ErrBucketNotEmpty) {
		return nil, status.Errorf(codes.FailedPrecondition, "DeleteVolume %s: the bucket still holds files being written (unfinished multipart uploads) or objects written while it was emptied; stop the pods that use the volume and retry", id)
	} else if err != nil && !errors.Is(err, store.ErrNoSuchBucket) {
		return nil, storeStatus(err, "DeleteVolume %s: delete its bucket", id)
	}
	if err := c.d.cfg.Registry.Delete(id); err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteVolume %s: delete its record: %v", id, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// exists reports whether a volume id names a bucket that may be
// published: any bucket, whether this driver provisioned it or an
// operator made it for a static PersistentVolume.
func exists(ctx context.Context, b store.Backend, id string) error {
	if store.CheckBucketName(id) != nil {
		return status.Errorf(codes.NotFound, "volume %s does not exist: it is not a valid bucket name; use the id CreateVolume returned", id)
	}
	if _, err := b.HeadBucket(ctx, id); errors.Is(err, store.ErrNoSuchBucket) {
		return status.Errorf(codes.NotFound, "volume %s does not exist: the store has no bucket %s; create the volume (or the bucket) first", id, id)
	} else if err != nil {
		return storeStatus(err, "look up volume %s", id)
	}
	return nil
}

func (c controller) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume_id is empty; give the id CreateVolume returned")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume_capabilities is empty; give the capabilities to check")
	}
	if err := exists(ctx, c.d.cfg.Backend, id); err != nil {
		return nil, err
	}
	if err := checkCapabilities(req.GetVolumeCapabilities(), "volume_capabilities"); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	if err := checkParameters(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

// ContextBucket is the volume context key that names a provisioned
// volume's bucket. A node whose store lacks the bucket creates it when
// the context names it (see NodePublishVolume).
const ContextBucket = "bucket"

// volumeContext is the context of a volume the controller provisioned.
func volumeContext(id string) map[string]string {
	return map[string]string{ContextBucket: id}
}

// tokenPrefix starts every ListVolumes token: "after:" and the last
// volume id of the page before. Tokens stay valid when volumes come and
// go between pages.
const tokenPrefix = "after:"

func (c controller) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	max := int(req.GetMaxEntries())
	if max < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "ListVolumes: max_entries %d is negative; give 0 for all volumes or a page size", max)
	}
	after := ""
	if tok := req.GetStartingToken(); tok != "" {
		after = strings.TrimPrefix(tok, tokenPrefix)
		if !strings.HasPrefix(tok, tokenPrefix) || store.CheckBucketName(after) != nil {
			return nil, status.Errorf(codes.Aborted, "ListVolumes: starting_token %q was not returned by this driver; start again without a token", tok)
		}
	}
	resp := &csi.ListVolumesResponse{}
	for {
		want := store.MaxListKeys
		if max > 0 {
			want = max - len(resp.Entries)
		}
		entries, more, err := c.d.cfg.Registry.List(after, want)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "ListVolumes: %v", err)
		}
		for _, e := range entries {
			resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: &csi.Volume{
				VolumeId:      e.ID,
				CapacityBytes: e.Capacity,
				VolumeContext: volumeContext(e.ID),
			}})
			after = e.ID
		}
		switch {
		case !more:
			return resp, nil
		case max > 0:
			resp.NextToken = tokenPrefix + after
			return resp, nil
		}
	}
}

func (c controller) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}
