package csidriver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/storefs"
)

// Mounter publishes a volume's bucket at a target directory and takes it
// away again. The driver calls it with the target created and a valid
// bucket name, one call at a time.
type Mounter interface {
	// Mount makes the bucket's objects show as files under target, which
	// exists; readOnly mounts refuse writes (EROFS).
	Mount(target, bucket string, readOnly bool) error
	// Unmount removes every mount at target. A target that is not
	// mounted, or does not exist, is not an error.
	Unmount(target string) error
}

// StoreMounter is the Mounter of a node: one storefs mount of the whole
// store under a root directory private to the driver, made on the first
// Mount, and a bind mount of the bucket's directory in it at each target
// (made read-only by the kernel for read-only publishes). Every volume
// on the node shares the one FUSE server and its connection to the
// store, so a pod that starts pays for no mount of its own; a file
// written through one target is at once visible through every other.
type StoreMounter struct {
	root string
	b    store.Backend
	opts storefs.Options

	// mu guards srv and binds.
	mu    sync.Mutex
	srv   *storefs.Server     // nil until the first Mount
	binds map[string]struct{} // targets bound from the root
}

// NewStoreMounter returns a mounter that mounts b at root (created if
// absent) when it first publishes a volume. opts.AllowOther is forced on:
// pods run as users other than the driver's.
func NewStoreMounter(root string, b store.Backend, opts storefs.Options) *StoreMounter {
	opts.AllowOther = true
	return &StoreMounter{root: root, b: b, opts: opts, binds: make(map[string]struct{})}
}

// mounted returns the root mount, mounting the store there first if it
// is not yet.
func (m *StoreMounter) mounted() error {
	if m.srv != nil {
		if _, err := os.Stat(m.root); !errors.Is(err, unix.ENOTCONN) {
			return nil
		}
		// The connection died under the server (aborted through
		// fusectl): mount afresh, which clears the dead mount first.
		m.srv = nil
	}
	if _, err := os.Stat(m.root); !errors.Is(err, unix.ENOTCONN) { // else storefs clears the dead mount
		if err := os.MkdirAll(m.root, 0o700); err != nil {
			return fmt.Errorf("csidriver: store mount directory: %w", err)
		}
	}
	srv, err := storefs.Mount(m.root, m.b, m.opts)
	if err != nil {
		return err // wraps storefs.ErrUnavailable when FUSE is missing
	}
	m.srv = srv
	return nil
}

// Mount binds root/bucket at target.
func (m *StoreMounter) Mount(target, bucket string, readOnly bool) error {
	if err := store.CheckBucketName(bucket); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mounted(); err != nil {
		return err
	}
	src := filepath.Join(m.root, bucket)
	if fi, err := os.Stat(src); err != nil {
		return fmt.Errorf("csidriver: the store mount does not show bucket %s: %w", bucket, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("csidriver: %s in the store mount is not a directory", src)
	}
	if _, err := os.Stat(target); errors.Is(err, unix.ENOTCONN) {
		// A bind left by an earlier run of the driver, whose FUSE
		// server died with it.
		if err := unmountAll(target); err != nil {
			return err
		}
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("csidriver: bind %s on %s: %w", src, target, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("csidriver: remount %s (read-only %v): %w", target, readOnly, err)
	}
	m.binds[target] = struct{}{}
	return nil
}

// Unmount unmounts target until nothing is mounted there: a busy mount
// is detached (it goes when its last user lets go), and a dead one left
// by an earlier run is cleared the same way.
func (m *StoreMounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := unmountAll(target); err != nil {
		return err
	}
	delete(m.binds, target)
	return nil
}

// unmountAll unmounts every mount stacked at target.
func unmountAll(target string) error {
	for range 16 {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more), or no such path
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("csidriver: unmount %s: %w; run `umount -l %s`", target, err, target)
		}
	}
	return fmt.Errorf("csidriver: %s still has mounts after 16 unmounts; inspect /proc/self/mountinfo", target)
}

// closeWait bounds how long Close waits for the FUSE server to stop.
const closeWait = 5 * time.Second

// Close unmounts every target this mounter bound, then the store mount.
// Pods still using a volume lose it (their mount is detached), so stop
// them first.
func (m *StoreMounter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for t := range m.binds {
		if err := unmountAll(t); err != nil {
			errs = append(errs, err)
		}
		delete(m.binds, t)
	}
	if m.srv != nil {
		done := make(chan error, 1)
		srv := m.srv
		go func() { done <- srv.Unmount() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-time.After(closeWait):
			errs = append(errs, fmt.Errorf("csidriver: the store mount at %s is still in use after %v (a detached volume still has open files); it goes when they close", m.root, closeWait))
		}
		m.srv = nil
	}
	return errors.Join(errs...)
}
