package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/handoff-dev/handoff/csidriver"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

const csiUsage = "csi --endpoint unix:///SOCK --node-id ID --store-dir D"

// cmdCSI serves the CSI driver (identity, controller and node) over a
// store of its own, until SIGINT or SIGTERM.
func cmdCSI(args []string) error {
	fs := newFlags("csi", csiUsage)
	endpoint := fs.String("endpoint", "", "Unix socket the container orchestrator dials, as unix:///csi/csi.sock")
	nodeID := fs.String("node-id", "", "this node's name (Kubernetes: the Pod's spec.nodeName)")
	dir := fs.String("store-dir", "", "state directory: the store's metadata, spill files, volume records and the mount the volumes are bound from")
	storeMem := fs.String("store-memory", "1Gi", "memory budget of the store")
	storeDisk := fs.String("store-disk", "", "disk budget of the store's spill files (default: no limit but the disk)")
	maxVol := fs.String("max-volume", "", "the largest capacity a volume may ask for (default: no limit)")
	name := fs.String("name", csidriver.DefaultName, "plugin name; a StorageClass names it as its provisioner")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *endpoint == "" || *nodeID == "" || *dir == "" {
		return errors.New("--endpoint, --node-id and --store-dir are required (see `handoff csi -h`)")
	}
	size := func(flag, v string) (int64, error) {
		if v == "" {
			return 0, nil
		}
		n, err := spec.ParseBytes(v)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--%s %q: give a size such as 4Gi", flag, v)
		}
		return int64(n), nil
	}
	mem, err := size("store-memory", *storeMem)
	if err != nil {
		return err
	}
	if mem == 0 {
		return errors.New("--store-memory is empty: give the store's memory budget, such as 4Gi")
	}
	disk, err := size("store-disk", *storeDisk)
	if err != nil {
		return err
	}
	max, err := size("max-volume", *maxVol)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	spill := filepath.Join(*dir, "spill")
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return fmt.Errorf("store spill directory: %w", err)
	}
	st, err := local.Open(local.Config{Dir: filepath.Join(*dir, "store"), Memory: mem, SpillDir: spill, Disk: disk})
	if err != nil {
		return err
	}
	defer st.Close()
	reg, err := csidriver.OpenDirRegistry(filepath.Join(*dir, "volumes"))
	if err != nil {
		return err
	}
	if err := storefs.Available(); err != nil {
		log.Warn("volumes cannot be published on this node; the controller still works", "err", err)
	}
	m := csidriver.NewStoreMounter(filepath.Join(*dir, "mnt"), st, storefs.Options{Log: log})
	defer func() {
		if err := m.Close(); err != nil {
			log.Warn("unmount", "err", err)
		}
	}()
	d, err := csidriver.New(csidriver.Config{Name: *name, Version: versionString(), NodeID: *nodeID,
		Backend: st, Registry: reg, Mounter: m, MaxVolumeBytes: max, Log: log})
	if err != nil {
		return err
	}
	ln, err := csidriver.Listen(*endpoint)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		d.Stop()
	}()
	log.Info("serving CSI", "name", *name, "node", *nodeID, "endpoint", *endpoint)
	return d.Serve(ln)
}
