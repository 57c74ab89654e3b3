package csidriver

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// register adds the driver's services to a gRPC server.
func register(s *grpc.Server, ids csi.IdentityServer) {
	csi.RegisterIdentityServer(s, ids)
}
