package csidriver

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/handoff-dev/handoff/store"
)

// identity is the CSI Identity service.
type identity struct {
	csi.UnimplementedIdentityServer
	d *Driver
}

var _ csi.IdentityServer = identity{}

func (i identity) GetPluginInfo(ctx context.Context, req *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: i.d.cfg.Name, VendorVersion: i.d.cfg.Version}, nil
}

func (i identity) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

// probeBucket is the bucket Probe asks the store about.
const probeBucket = "handoff-csi-probe"

// Probe asks the store about a bucket: a store that answers (even "no
// such bucket") is ready.
func (i identity) Probe(ctx context.Context, req *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	_, err := i.d.cfg.Backend.HeadBucket(ctx, probeBucket)
	if err != nil && !errors.Is(err, store.ErrNoSuchBucket) {
		return nil, storeStatus(err, "probe: the store does not answer")
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
