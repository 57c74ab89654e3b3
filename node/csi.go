package node

import (
	"fmt"
	"path/filepath"

	"github.com/handoff-dev/handoff/csidriver"
	"github.com/handoff-dev/handoff/storefs"
)

// The node agent can serve the CSI driver (package csidriver) over the
// cluster store it already holds a client of: a volume is a bucket of the
// cluster store, so a pod on any node sees what pods on other nodes wrote
// to it, and programs that speak S3 reach the same objects through any
// node's S3 API. The volume records stay under the agent's directory
// (one controller per cluster: run the CSI controller sidecars beside
// one agent), and the FUSE mount that NodePublishVolume binds from is the
// agent's own, made on the first publish.

// CSISocket is where the agent serves CSI under its directory when
// Config.CSIEndpoint is "default".
const CSISocket = "csi.sock"

// serveCSI serves the CSI driver on Config.CSIEndpoint until stop. It
// returns a nil stop when CSI is off.
func (a *Agent) serveCSI(errc chan<- error) (stop func(), err error) {
	ep := a.cfg.CSIEndpoint
	if ep == "" {
		return nil, nil
	}
	if ep == "default" {
		ep = "unix://" + filepath.Join(a.cfg.Dir, CSISocket)
	}
	reg, err := csidriver.OpenDirRegistry(filepath.Join(a.cfg.Dir, "csi", "volumes"))
	if err != nil {
		return nil, err
	}
	m := csidriver.NewStoreMounter(filepath.Join(a.cfg.Dir, "csi", "mnt"), a.store, storefs.Options{Log: a.log})
	d, err := csidriver.New(csidriver.Config{NodeID: a.cfg.ID, Version: a.cfg.Version, Backend: a.store, Registry: reg, Mounter: m, Log: a.log})
	if err != nil {
		return nil, err
	}
	ln, err := csidriver.Listen(ep)
	if err != nil {
		return nil, fmt.Errorf("node %s: CSI: %w", a.cfg.ID, err)
	}
	go func() {
		if err := d.Serve(ln); err != nil {
			errc <- fmt.Errorf("node %s: CSI: %w", a.cfg.ID, err)
		}
	}()
	a.log.Info("CSI driver serving", "endpoint", ep)
	return func() {
		d.Stop()
		if err := m.Close(); err != nil {
			a.log.Warn("CSI volumes unmounted with errors", "err", err)
		}
	}, nil
}
