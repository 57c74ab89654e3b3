package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store/scoped"
	"github.com/handoff-dev/handoff/storefs"
)

// The store is also mounted as a filesystem (FUSE, package storefs) by
// each node agent, served by the agent's own client of the cluster store.
// The node-wide mount (DIR/store-mount, shown by `handoff status`) holds
// every bucket; it is for operators and tooling and is not handed to
// instances. An instance gets, as HANDOFF_STORE_DIR, a view of the store
// narrowed to its function's grants (package store/scoped): its own FUSE
// mount under DIR/store-views, one per distinct set of grants on the node,
// made at the first start of an instance that needs it and kept until the
// agent stops. Through it the instance lists only its granted buckets;
// a write to a bucket granted for reading is EROFS, any access to another
// bucket EACCES (the agent's log says which grant is missing). A function
// without a store section gets no mount. Where FUSE cannot be used the
// agent says so once at start-up and the S3 API still serves the store.
//
// What this isolates: instances run as the node agent's uid, so a process
// that looks for them can still open the node-wide mount or another
// function's view by path (both show in /proc/mounts): the view keeps
// honest programs to their grants and makes the grants the only paths
// handed out, not a wall. Making it one needs each instance in its own
// mount namespace with only its view mounted (and the node-wide mount and
// the other views absent), or instances run as uids of their own with the
// mounts' AllowOther off and each view owned by its function's uid.

// mountStore mounts the store under the node's directory, or records why
// it cannot. The returned func also unmounts every view.
func (a *Agent) mountStore() (unmount func()) {
	if a.views == nil { // no store: nothing to mount
		a.views = &storeViews{m: map[string]*storefs.Server{}}
	}
	a.views.dir = filepath.Join(a.cfg.Dir, "store-views")
	if a.cfg.NoStoreMount {
		a.mountErr = "turned off (--no-store-mount)"
		return func() {}
	}
	dir := filepath.Join(a.cfg.Dir, "store-mount")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.mountErr = err.Error()
		a.log.Warn("store mount off", "err", err)
		return func() {}
	}
	srv, err := storefs.Mount(dir, a.store, storefs.Options{Log: a.log, Pushed: a.views.pushed})
	if err != nil {
		a.mountErr = err.Error()
		a.log.Warn("store mount off: instances reach the store over S3 only", "err", err)
		return func() {}
	}
	a.mountDir = srv.Dir()
	a.views.mu.Lock()
	a.views.all = srv
	a.views.mu.Unlock()
	a.log.Info("store mounted", "dir", a.mountDir)
	return func() {
		a.views.unmountAll(a)
		if err := srv.Unmount(); err != nil {
			a.log.Warn("store unmount", "err", err)
		}
	}
}

// storeViews are the views of the store mounted for instances, by their
// grants.
type storeViews struct {
	dir string
	// pushed reports whether the metadata cache is told of every change
	// (metarpc.Cache.Serving): the mounts' kernel caches then keep names
	// and attributes long, and changed drops them.
	pushed func() bool
	// mu guards m, all and closed; it is held across a mount, so that two
	// instances starting at once share one view.
	mu     sync.Mutex
	m      map[string]*storefs.Server // by grantsID
	all    *storefs.Server            // the node-wide mount
	closed bool
}

// changed passes a change the metadata cache was told of to every mount
// (metarpc.CacheOptions.OnChange).
func (v *storeViews) changed(bucket, key string) {
	v.mu.Lock()
	srvs := make([]*storefs.Server, 0, len(v.m)+1)
	for _, srv := range v.m {
		srvs = append(srvs, srv)
	}
	if v.all != nil {
		srvs = append(srvs, v.all)
	}
	v.mu.Unlock()
	for _, srv := range srvs {
		srv.Invalidate(bucket, key)
	}
}

// grantsID names a set of grants: the same grants in any order, the same
// view.
func grantsID(g spec.Store) string {
	r, w := slices.Sorted(slices.Values(g.Read)), slices.Sorted(slices.Values(g.ReadWrite))
	sum := sha256.Sum256([]byte(strings.Join(w, ",") + "|" + strings.Join(r, ",")))
	return hex.EncodeToString(sum[:8])
}

// view returns the mount point of the view with grants g, mounting it
// first if need be.
func (v *storeViews) view(a *Agent, g spec.Store) (string, error) {
	id := grantsID(g)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return "", fmt.Errorf("the node agent is stopping")
	}
	if srv, ok := v.m[id]; ok {
		return srv.Dir(), nil
	}
	dir := filepath.Join(v.dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	srv, err := storefs.Mount(dir, scoped.New(a.store, "", g), storefs.Options{AllowOther: true, Log: a.log, Pushed: v.pushed})
	if err != nil {
		return "", err
	}
	v.m[id] = srv
	a.log.Info("store view mounted", "dir", dir, "read", g.Read, "readWrite", g.ReadWrite)
	return dir, nil
}

func (v *storeViews) unmountAll(a *Agent) {
	v.mu.Lock()
	v.closed = true
	m := v.m
	v.m = nil
	v.mu.Unlock()
	for _, srv := range m {
		if err := srv.Unmount(); err != nil {
			a.log.Warn("store view unmount", "err", err)
		}
	}
}

// mountEnv tells an instance of fn where its view of the store is
// mounted: none when the node has no mount or fn has no grant.
func (a *Agent) mountEnv(fn spec.Function) []string {
	if a.mountDir == "" || fn.Store.IsZero() {
		return nil
	}
	dir, err := a.views.view(a, fn.Store)
	if err != nil {
		a.log.Warn("store view off: the instance reaches the store over S3 only", "function", fn.Name, "err", err)
		return nil
	}
	return []string{"HANDOFF_STORE_DIR=" + dir}
}

// StoreMount describes the node's store mount for status: its path, or
// "off: why".
func (a *Agent) StoreMount() string {
	if a.mountDir != "" {
		return a.mountDir
	}
	return fmt.Sprintf("off: %s", a.mountErr)
}
