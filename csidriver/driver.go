package csidriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/handoff-dev/handoff/store"
)

// DefaultName is the plugin name the driver reports when Config.Name is
// empty; a StorageClass names it as its provisioner.
const DefaultName = "store.handoff.dev"

// Config sets up a Driver.
type Config struct {
	// Name is the plugin name (GetPluginInfo); default DefaultName.
	Name string
	// Version is the driver's version, reported by GetPluginInfo.
	// Default "dev".
	Version string
	// NodeID names this node to the CO (NodeGetInfo). Required.
	NodeID string
	// Backend is the store volumes live in: each volume is one bucket.
	// Required. The driver only uses the Backend interface, so the node
	// agent's shared client can stand in for a local store.
	Backend store.Backend
	// Registry keeps the records of provisioned volumes. Required; see
	// OpenDirRegistry.
	Registry Registry
	// Mounter publishes volumes at target paths. Required; see
	// NewStoreMounter for the real one.
	Mounter Mounter
	// MaxVolumeBytes is the largest capacity a volume may ask for; a
	// larger request fails with OutOfRange. 0: no limit. The store has
	// no per-volume quota: capacity is what the volume was asked for, and
	// the node's memory and spill budgets bound what all volumes hold.
	MaxVolumeBytes int64
	// Log receives one line per failed call. Default slog.Default().
	Log *slog.Logger
}

// Driver serves the CSI Identity, Controller and Node services over a
// store.Backend. Its methods are safe for concurrent use.
type Driver struct {
	cfg Config // defaults filled in; read-only after New

	// cmu serializes the controller's CreateVolume and DeleteVolume, so
	// that a retry racing the call it retries sees its whole effect.
	cmu sync.Mutex

	// nmu guards pubs: the targets this driver published, by target path.
	nmu  sync.Mutex
	pubs map[string]publication

	smu sync.Mutex
	srv *grpc.Server // set by Serve
}

// publication is one NodePublishVolume in effect.
type publication struct {
	volumeID string
	readOnly bool
	mode     csi.VolumeCapability_AccessMode_Mode
}

// New checks cfg and returns a driver ready to Serve.
func New(cfg Config) (*Driver, error) {
	if cfg.Backend == nil {
		return nil, errors.New("csidriver: Config.Backend is nil; pass the store the volumes live in")
	}
	if cfg.Registry == nil {
		return nil, errors.New("csidriver: Config.Registry is nil; pass OpenDirRegistry(dir) or another Registry")
	}
	if cfg.Mounter == nil {
		return nil, errors.New("csidriver: Config.Mounter is nil; pass NewStoreMounter(...) or another Mounter")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("csidriver: Config.NodeID is empty; set it to the node's name (Kubernetes: spec.nodeName)")
	}
	if cfg.MaxVolumeBytes < 0 {
		return nil, fmt.Errorf("csidriver: Config.MaxVolumeBytes %d is negative; use 0 for no limit", cfg.MaxVolumeBytes)
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Driver{cfg: cfg, pubs: make(map[string]publication)}, nil
}

// Listen opens the endpoint a CO dials: "unix:///path/csi.sock" (or
// "unix:/path", or a bare absolute path). A socket file left by an
// earlier run is removed first; any other file there is an error.
func Listen(endpoint string) (net.Listener, error) {
	path, err := socketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("csidriver: %s exists and is not a socket; remove it or pick another --endpoint", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("csidriver: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("csidriver: listen on %s: %w", endpoint, err)
	}
	return ln, nil
}

// socketPath returns the file of a unix endpoint.
func socketPath(endpoint string) (string, error) {
	p := endpoint
	switch {
	case strings.HasPrefix(p, "unix://"):
		p = strings.TrimPrefix(p, "unix://")
	case strings.HasPrefix(p, "unix:"):
		p = strings.TrimPrefix(p, "unix:")
	case strings.Contains(p, "://"):
		return "", fmt.Errorf("csidriver: endpoint %q: only unix sockets are served; use unix:///path/csi.sock", endpoint)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("csidriver: endpoint %q: the socket path must be absolute, as in unix:///csi/csi.sock", endpoint)
	}
	return p, nil
}

// Serve serves the three services on ln until Stop. It returns nil after
// Stop.
func (d *Driver) Serve(ln net.Listener) error {
	s := grpc.NewServer(grpc.UnaryInterceptor(d.logErrors))
	csi.RegisterIdentityServer(s, identity{d: d})
	csi.RegisterControllerServer(s, controller{d: d})
	csi.RegisterNodeServer(s, node{d: d})
	d.smu.Lock()
	if d.srv != nil {
		d.smu.Unlock()
		return errors.New("csidriver: Serve called twice")
	}
	d.srv = s
	d.smu.Unlock()
	if err := s.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("csidriver: serve: %w", err)
	}
	return nil
}

// Stop stops serving, waiting for calls under way. Volumes stay
// published: the Mounter's owner decides when the mounts go (for the
// store mounter, Close).
func (d *Driver) Stop() {
	d.smu.Lock()
	s := d.srv
	d.smu.Unlock()
	if s != nil {
		s.GracefulStop()
	}
}

// logErrors logs every call that fails, with its method and code.
func (d *Driver) logErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		st := status.Convert(err)
		d.cfg.Log.Info("csi call failed", "method", info.FullMethod, "code", st.Code().String(), "err", st.Message())
	}
	return resp, err
}

// storeStatus turns a Backend error into a gRPC status: what the store
// says, with the code that tells the CO whether to retry.
func storeStatus(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + ": " + err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, store.ErrNoSuchBucket):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, store.ErrQuota):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, store.ErrInvalidName), errors.Is(err, store.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, store.ErrBucketNotEmpty):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, store.ErrClosed), errors.Is(err, store.ErrUnavailable):
		return status.Error(codes.Unavailable, msg)
	}
	return status.Error(codes.Internal, msg)
}
