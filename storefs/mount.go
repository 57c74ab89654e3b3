package storefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/store"
)

// ErrUnavailable means FUSE cannot be used on this machine or by this
// process: /dev/fuse is missing or the mount is not permitted. The store
// stays reachable over its other paths (the S3 API); the error says what
// to change to get the mount.
var ErrUnavailable = errors.New("storefs: FUSE is not available")

// Defaults of Options.
const (
	DefaultCacheTimeout  = time.Second
	DefaultPushedTimeout = time.Hour
	DefaultReadAhead     = 8 << 20
	DefaultPartSize      = 64 << 20
	// chunkSize is the unit of read-ahead: one Get per chunk, the size of
	// a store block and of the largest request the kernel sends.
	chunkSize = 1 << 20
	// smallMax is the most a writer buffers before it starts a multipart
	// upload; files up to this size are stored with one Put.
	smallMax = 1 << 20
)

// Options tune a mount. The zero value is usable.
type Options struct {
	// CacheTimeout is how long the kernel trusts a name, a directory
	// entry or a file's attributes before asking again. It bounds how
	// stale `ls` and `stat` can be about objects written elsewhere (on
	// another node, or over S3); opens always consult the store. 0 means
	// DefaultCacheTimeout; negative means no caching.
	CacheTimeout time.Duration
	// Pushed, when set, reports whether the server is told of every
	// change to the store (Server.Invalidate) for as long as it returns
	// true, changes made through this mount included. Names and
	// attributes the kernel learns while it does are trusted for
	// PushedTimeout instead of CacheTimeout: a fresh process's open of a
	// file looked up before costs no LOOKUP. Invalidate drops them from
	// the kernel when they change; the caller calls Invalidate("", "")
	// when Pushed turns false, since changes may then go untold.
	Pushed func() bool
	// PushedTimeout is how long the kernel trusts what it learnt while
	// Pushed was true; 0 means DefaultPushedTimeout.
	PushedTimeout time.Duration
	// ReadAhead is how many bytes past a sequential reader's position
	// are fetched in advance. 0 means DefaultReadAhead; negative: none.
	ReadAhead int64
	// PartSize is the part size of the multipart uploads that files
	// larger than 1 MiB are written with; the largest file is 10,000
	// parts. 0 means DefaultPartSize; at least store.MinPartSize.
	PartSize int64
	// PageCache serves reads through the kernel's page cache, which
	// keeps what was read across opens of an unchanged object and makes
	// many small reads cheap. By default reads bypass it (direct I/O):
	// each read goes from the read-ahead buffer straight into the
	// reader's memory, which made sequential reads of 1 GiB 4.5x faster
	// here (1.6 GB/s against 0.35 GB/s), at the cost of a round trip to
	// the server per read(2) and no caching between opens. Objects of
	// up to 1 MiB go through the page cache either way (when the size
	// the kernel holds is theirs), so that a small file read again,
	// unchanged, costs no read request. mmap works either way (with
	// direct I/O from kernel 6.6 on).
	PageCache bool
	// UID and GID own every file and directory; 0 means the server
	// process's own.
	UID, GID uint32
	// AllowOther lets users other than the one that mounted (the
	// instances' users) use the mount. Permissions are not checked
	// beyond that: every user may read and write everything.
	AllowOther bool
	// Log receives the errors behind EIO and other failures a program
	// only sees as an errno. Default slog.Default().
	Log *slog.Logger
	// Debug logs every FUSE request (very verbose).
	Debug bool
}

// Server is a mounted store. Unmount it when done; Wait returns when it
// has stopped serving.
type Server struct {
	dir    string
	root   *rootNode
	fuse   *fuse.Server
	fsys   *fsys
	cancel context.CancelFunc

	// inval queues Invalidate's work for the goroutine that tells the
	// kernel; invalAll is set when it overflowed.
	inval    chan [2]string
	invalAll atomic.Bool

	unmountOnce sync.Once
	unmountErr  error
}

// Mount mounts the store b at dir, which must be an existing directory,
// and serves it until Unmount. A stale mount left at dir by a crashed
// server ("transport endpoint is not connected") is lazily unmounted
// first. An error wrapping ErrUnavailable means FUSE cannot be used here
// at all; carry on without the mount.
func Mount(dir string, b store.Backend, opts Options) (*Server, error) {
	if b == nil {
		return nil, fmt.Errorf("storefs: Mount: backend is nil; pass the store to serve")
	}
	if opts.CacheTimeout == 0 {
		opts.CacheTimeout = DefaultCacheTimeout
	}
	if opts.CacheTimeout < 0 {
		opts.CacheTimeout = 0
	}
	if opts.PushedTimeout <= 0 {
		opts.PushedTimeout = DefaultPushedTimeout
	}
	if opts.ReadAhead == 0 {
		opts.ReadAhead = DefaultReadAhead
	}
	if opts.ReadAhead < 0 {
		opts.ReadAhead = 0
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < store.MinPartSize {
		return nil, fmt.Errorf("storefs: Options.PartSize %d is below the store's minimum part size %d", opts.PartSize, store.MinPartSize)
	}
	if opts.UID == 0 {
		opts.UID = uint32(os.Getuid())
	}
	if opts.GID == 0 {
		opts.GID = uint32(os.Getgid())
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if err := clearStale(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("storefs: mount point: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("storefs: mount point %s is not a directory", dir)
	}

	ctx, cancel := context.WithCancel(context.Background())
	f := newFsys(ctx, b, opts)
	timeout := opts.CacheTimeout
	var zero time.Duration
	fopts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:            "handoff-store",
			Name:              "handoff",
			DirectMount:       true,
			DirectMountStrict: true,
			AllowOther:        opts.AllowOther,
			// One request up to a store block: 1 MiB reads and writes
			// rather than the default 128 KiB.
			MaxWrite: chunkSize,
			// O_TRUNC arrives in Open rather than as a separate
			// SETATTR after it.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			DisableXAttrs:     true,
			// Replies come from memory; splicing them through a pipe
			// only adds a copy (and fails past the pipe size, 1 MiB).
			DisableSplice: true,
			Debug:         opts.Debug,
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &zero, // a file created elsewhere shows at once
		UID:             opts.UID,
		GID:             opts.GID,
	}
	root := &rootNode{fsys: f}
	srv, err := fs.Mount(dir, root, fopts)
	if err != nil {
		cancel()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: mounting %s is not permitted (%v); run the node agent as root or with CAP_SYS_ADMIN (in a container: --cap-add SYS_ADMIN --device /dev/fuse); the S3 API still serves the store", ErrUnavailable, dir, err)
		}
		if errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("%w: the kernel has no FUSE filesystem (%v); load it with `modprobe fuse`; the S3 API still serves the store", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("storefs: mount %s: %w", dir, err)
	}
	if err := setReadAhead(dir, opts.ReadAhead); err != nil {
		opts.Log.Info("storefs: kernel read-ahead left at its default; sequential reads will be slower", "err", err)
	}
	s := &Server{dir: dir, root: root, fuse: srv, fsys: f, cancel: cancel, inval: make(chan [2]string, 1024)}
	go s.invalidations(ctx)
	return s, nil
}

// setReadAhead raises the kernel's read-ahead for the mount, which FUSE
// caps at 128 KiB, so sequential reads arrive as requests of up to 1 MiB
// (MaxWrite) several at a time rather than 128 KiB one by one. It is a
// property of the mount's backing device, set in sysfs (root only).
func setReadAhead(dir string, bytes int64) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	kb := max(bytes, chunkSize) >> 10
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(strconv.FormatInt(kb, 10)), 0)
}

// Available reports whether this process can use FUSE at all: an error
// wrapping ErrUnavailable that says what to do, or nil. Mount calls it;
// the node agent may call it at start-up to say early that the mount is
// off.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	switch {
	case err == nil:
		f.Close()
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: /dev/fuse is missing; load the module (`modprobe fuse`) or, in a container, pass --device /dev/fuse; the S3 API still serves the store", ErrUnavailable)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: cannot open /dev/fuse (%v); run the node agent as root or give it access to /dev/fuse and CAP_SYS_ADMIN; the S3 API still serves the store", ErrUnavailable, err)
	default:
		return fmt.Errorf("%w: cannot open /dev/fuse: %v", ErrUnavailable, err)
	}
}

// clearStale detaches a dead FUSE mount at dir, which a crashed server
// leaves behind: every access to it fails with ENOTCONN.
func clearStale(dir string) error {
	_, err := os.Stat(dir)
	if !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("storefs: %s holds a dead mount and unmounting it failed: %w; run `umount -l %s`", dir, err, dir)
	}
	return nil
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Unmount unmounts the store. Writes not yet closed are lost (their
// uploads aborted). When programs still hold files or the working
// directory in the mount, Unmount retries for a second, then detaches
// the mount lazily: it disappears from the namespace at once and the
// kernel lets go when the last user does.
func (s *Server) Unmount() error {
	s.unmountOnce.Do(func() {
		var err error
		for range 10 {
			if err = s.fuse.Unmount(); err == nil || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(s.dir, syscall.MNT_DETACH)
		}
		s.cancel()
		s.fsys.abortAll()
		if err != nil {
			s.unmountErr = fmt.Errorf("storefs: unmount %s: %w", s.dir, err)
		}
	})
	return s.unmountErr
}

// Wait blocks until the server stops serving: after Unmount, or when the
// mount is removed from outside (umount).
func (s *Server) Wait() { s.fuse.Wait() }
