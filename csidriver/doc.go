// Package csidriver is Handoff's Container Storage Interface driver: the
// Identity, Controller and Node services that provision store volumes
// and publish them into pods as the store's FUSE mount (package storefs).
//
// # Volumes
//
// A volume is one bucket of the store. CreateVolume names the bucket
// from the request's name (VolumeID: "csi-", a readable part of the name
// and 16 hex digits of its hash), so a retried call finds what the first
// one made; the volume's name, capacity and parameters go in a Registry,
// which tells a retry that matches from one that conflicts
// (AlreadyExists) and the driver's buckets from buckets others made
// (never adopted, never deleted). DeleteVolume empties and removes the
// bucket. An operator's own bucket can be published as a static
// PersistentVolume whose volume handle is the bucket's name.
//
// The store is shared, so every access mode is served, multi-node
// multi-writer included; block volumes are refused. The store has no
// per-volume quota: a volume's capacity is the one it asked for (within
// Config.MaxVolumeBytes), and the store's memory and spill budgets bound
// what all volumes hold together.
//
// # Publishing
//
// The node service has no staging step. NodePublishVolume mounts the
// volume at the target path through a Mounter; the real one,
// StoreMounter, mounts the whole store once per node (one FUSE server,
// one client of the store, shared by every pod) and bind-mounts the
// bucket's directory at each target, read-only for read-only publishes.
// NodeUnpublishVolume unmounts and removes the target, and succeeds when
// there is nothing left to do.
//
// # Usage
//
//	st, err := local.Open(local.Config{Dir: dir, Memory: 1 << 30})
//	reg, err := csidriver.OpenDirRegistry(filepath.Join(dir, "volumes"))
//	m := csidriver.NewStoreMounter(filepath.Join(dir, "mnt"), st, storefs.Options{})
//	defer m.Close()
//	d, err := csidriver.New(csidriver.Config{NodeID: node, Backend: st, Registry: reg, Mounter: m})
//	ln, err := csidriver.Listen("unix:///csi/csi.sock")
//	err = d.Serve(ln) // until d.Stop()
//
// `handoff csi` does this; docs/csi.md shows how to deploy it on
// Kubernetes.
package csidriver
