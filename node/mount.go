package node

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/handoff-dev/handoff/storefs"
)

// The store is also mounted as a filesystem (FUSE, package storefs) by
// each node agent, served by the agent's own client of the cluster store,
// and its path handed to every instance as HANDOFF_STORE_DIR: programs
// that only know files read and write store objects. Where FUSE cannot be
// used the agent says so once at start-up and the S3 API still serves the
// store.

// mountStore mounts the store under the node's directory, or records why
// it cannot.
func (a *Agent) mountStore() (unmount func()) {
	if a.cfg.NoStoreMount {
		a.mountErr = "turned off (--no-store-mount)"
		return func() {}
	}
	dir := filepath.Join(a.cfg.Dir, "store-mount")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		a.mountErr = err.Error()
		a.log.Warn("store mount off", "err", err)
		return func() {}
	}
	srv, err := storefs.Mount(dir, a.store, storefs.Options{AllowOther: true, Log: a.log})
	if err != nil {
		a.mountErr = err.Error()
		a.log.Warn("store mount off: instances reach the store over S3 only", "err", err)
		return func() {}
	}
	a.mountDir = srv.Dir()
	a.log.Info("store mounted", "dir", a.mountDir)
	return func() {
		if err := srv.Unmount(); err != nil {
			a.log.Warn("store unmount", "err", err)
		}
	}
}

// mountEnv tells an instance where the store is mounted, if it is.
func (a *Agent) mountEnv() []string {
	if a.mountDir == "" {
		return nil
	}
	return []string{"HANDOFF_STORE_DIR=" + a.mountDir}
}

// StoreMount describes the node's store mount for status: its path, or
// "off: why".
func (a *Agent) StoreMount() string {
	if a.mountDir != "" {
		return a.mountDir
	}
	return fmt.Sprintf("off: %s", a.mountErr)
}
