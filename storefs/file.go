package storefs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/store"
)

// fileNode is an object.
type fileNode struct {
	fs.Inode
	fsys *fsys

	// mu guards all following fields.
	mu          sync.Mutex
	bucket, key string // changed by a rename
	// seen is the object the last open saw; an open that finds it
	// unchanged keeps the kernel's page cache.
	seen store.ObjectInfo
	// size is the size the kernel was last told (a lookup or getattr),
	// -1 when unknown; the page cache reads no further than it.
	size int64
}

// told records the size the kernel was given for the file.
func (n *fileNode) told(size int64) {
	n.mu.Lock()
	n.size = size
	n.mu.Unlock()
}

// smallCached is the largest object read through the kernel's page cache
// when Options.PageCache is off: a small file read again, unchanged, is
// then served by the kernel with no request to the server, while large
// sequential reads keep direct I/O.
const smallCached = 1 << 20

var (
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeStatfser  = (*fileNode)(nil)
)

func (n *fileNode) name() (bucket, key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bucket, n.key
}

func (n *fileNode) forgetCache() {
	n.mu.Lock()
	n.seen = store.ObjectInfo{}
	n.size = -1 // writes through the kernel change the size it holds
	n.mu.Unlock()
}

func (n *fileNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	bucket, key := n.name()
	w := n.fsys.writerFor(bucket, key)
	if h, ok := fh.(*handle); ok && h.w != nil {
		w = h.w
	}
	if w != nil {
		size, mtime := w.stat()
		n.fsys.fileAttr(&out.Attr, size, mtime)
		return 0
	}
	gen, pushed := n.fsys.trust()
	info, err := n.fsys.b.Head(ctx, bucket, key)
	if err != nil {
		return n.fsys.fail("getattr", bucket, key, err)
	}
	n.fsys.fileAttr(&out.Attr, info.Size, info.Modified)
	n.fsys.keepAttr(out, gen, pushed)
	n.told(info.Size)
	return 0
}

// Setattr changes the size only: to 0, to the size it has, or beyond it
// (zero-filled) while the file is being written. Mode, owner and times
// are accepted and ignored, so `cp -p`, `tar` and `touch` work.
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	bucket, key := n.name()
	if size, ok := in.GetSize(); ok {
		w := n.fsys.writerFor(bucket, key)
		if h, ok := fh.(*handle); ok && h.w != nil {
			w = h.w
		}
		if w != nil {
			if errno := w.truncate(int64(size)); errno != 0 {
				return errno
			}
		} else {
			info, err := n.fsys.b.Head(ctx, bucket, key)
			if err != nil {
				return n.fsys.fail("truncate", bucket, key, err)
			}
			switch {
			case int64(size) == info.Size:
			case size == 0:
				if _, err := n.fsys.b.Put(ctx, bucket, key, strings.NewReader(""), 0, store.PutOptions{ContentType: info.ContentType, Meta: info.Meta}); err != nil {
					return n.fsys.fail("truncate", bucket, key, err)
				}
				n.forgetCache()
			default:
				n.fsys.log.Info("storefs: truncate to a size other than 0 refused; objects are written whole", "bucket", bucket, "key", key, "size", size)
				return syscall.EOPNOTSUPP
			}
		}
	}
	return n.Getattr(ctx, fh, out)
}

// Open opens the object for reading, or for writing (O_WRONLY, O_RDWR):
// see the package documentation for what writing allows.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	bucket, key := n.name()
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		r, errno := n.openReader(ctx, bucket, key)
		if errno != 0 {
			return nil, 0, errno
		}
		var fuseFlags uint32
		n.mu.Lock()
		if r.info.ETag != "" && r.info.ETag == n.seen.ETag && r.info.Size == n.seen.Size && r.info.Modified.Equal(n.seen.Modified) {
			fuseFlags = fuse.FOPEN_KEEP_CACHE
		}
		n.seen = r.info
		// The page cache reads up to the size the kernel holds: a small
		// object goes through it only when that is the object's size.
		small := r.info.Size <= smallCached && r.info.Size == n.size && r.info.ETag != ""
		n.mu.Unlock()
		if !n.fsys.opts.PageCache && !small {
			fuseFlags = fuse.FOPEN_DIRECT_IO
		}
		// A reader's close has nothing to store: the kernel need not
		// send a FLUSH, a round trip on every close(2).
		fuseFlags |= fuse.FOPEN_NOFLUSH
		return &handle{node: n, r: r}, fuseFlags, 0
	}
	w, errno := n.fsys.openWriter(ctx, bucket, key, flags&syscall.O_TRUNC != 0)
	if errno != 0 {
		return nil, 0, errno
	}
	n.forgetCache()
	return &handle{node: n, w: w}, 0, 0
}

// openReader snapshots the object for reading. A file being written that
// was never stored reads as empty.
func (n *fileNode) openReader(ctx context.Context, bucket, key string) (*reader, syscall.Errno) {
	info, err := n.fsys.b.Head(ctx, bucket, key)
	if err != nil {
		if errors.Is(err, store.ErrNoSuchKey) && n.fsys.writerFor(bucket, key) != nil {
			return newReader(n.fsys, store.ObjectInfo{Bucket: bucket, Key: key}), 0
		}
		return nil, n.fsys.fail("open", bucket, key, err)
	}
	return newReader(n.fsys, info), 0
}

// handle is an open file: a reader, a writer or, for O_RDWR, a writer
// that reads the stored object until it is written to.
type handle struct {
	node *fileNode
	w    *writer // nil when opened read-only

	mu sync.Mutex // guards r
	r  *reader
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.w != nil && h.w.modified() {
		bucket, key := h.node.name()
		h.node.fsys.log.Info("storefs: read of a file with unstored writes refused; close it and open it again", "bucket", bucket, "key", key)
		return nil, syscall.EOPNOTSUPP
	}
	h.mu.Lock()
	r := h.r
	if r == nil {
		// Opened for writing, read before any write.
		bucket, key := h.node.name()
		var errno syscall.Errno
		if r, errno = h.node.openReader(ctx, bucket, key); errno != 0 {
			h.mu.Unlock()
			return nil, errno
		}
		h.r = r
	}
	h.mu.Unlock()
	return r.read(dest, off)
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.w == nil {
		return 0, syscall.EBADF
	}
	h.mu.Lock()
	if h.r != nil {
		h.r.close() // what it read is stale now
		h.r = nil
	}
	h.mu.Unlock()
	return h.w.write(data, off)
}

// Flush stores what was written, on every close of a descriptor.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if h.w == nil {
		return 0
	}
	return h.w.commit()
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.Flush(ctx)
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.w != nil {
		h.node.fsys.releaseWriter(h.w)
	}
	h.mu.Lock()
	if h.r != nil {
		h.r.close()
	}
	h.mu.Unlock()
	return 0
}

// Rename moves a file: the Backend has no rename, so it copies the
// object to the new key and deletes the old one, which costs a read and
// a write of the whole object. A directory is EXDEV, which `mv` answers
// by copying the tree file by file.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	nd, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EPERM // files cannot live at the root
	}
	src, errno := d.key(name)
	if errno != 0 {
		return errno
	}
	dst, errno := nd.key(newName)
	if errno != 0 {
		return errno
	}
	if ch := d.GetChild(name); ch != nil && ch.IsDir() {
		return syscall.EXDEV
	}
	if isDir, _, err := d.isDir(ctx, src); err != nil {
		return d.fsys.fail("rename", d.bucket, src, err)
	} else if isDir {
		return syscall.EXDEV
	}
	if isDir, _, err := nd.isDir(ctx, dst); err != nil {
		return d.fsys.fail("rename", nd.bucket, dst, err)
	} else if isDir {
		return syscall.EISDIR
	}
	if d.bucket == nd.bucket && src == dst {
		return 0
	}
	for _, w := range []*writer{d.fsys.writerFor(d.bucket, src), d.fsys.writerFor(nd.bucket, dst)} {
		if w != nil && w.modified() {
			d.fsys.log.Info("storefs: rename of a file with unstored writes refused; close it first", "bucket", d.bucket, "key", src)
			return syscall.EBUSY
		}
	}
	if flags&unix.RENAME_NOREPLACE != 0 {
		if _, err := d.fsys.b.Head(ctx, nd.bucket, dst); err == nil {
			return syscall.EEXIST
		}
	}
	info, err := d.fsys.copyObject(ctx, d.bucket, src, nd.bucket, dst)
	if err != nil {
		return d.fsys.fail("rename", d.bucket, src, err)
	}
	if err := d.fsys.b.Delete(ctx, d.bucket, src); err != nil {
		return d.fsys.fail("rename", d.bucket, src, err)
	}
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.mu.Lock()
			fn.bucket, fn.key, fn.seen, fn.size = nd.bucket, dst, store.ObjectInfo{}, -1
			fn.mu.Unlock()
		}
	}
	d.fsys.moveWriter(d.bucket, src, nd.bucket, dst, info)
	d.forget(name)
	nd.forget(newName)
	return 0
}

// copyObject copies an object through the Backend, streaming, keeping
// its content type, metadata and what remains of its time to live.
func (f *fsys) copyObject(ctx context.Context, bucket, key, toBucket, toKey string) (store.ObjectInfo, error) {
	obj, err := f.b.Get(ctx, bucket, key, nil)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	defer obj.Body.Close()
	opts := store.PutOptions{ContentType: obj.Info.ContentType, Meta: obj.Info.Meta}
	if !obj.Info.Expires.IsZero() {
		if opts.TTL = time.Until(obj.Info.Expires); opts.TTL <= 0 {
			return store.ObjectInfo{}, store.ErrNoSuchKey
		}
	}
	return f.b.Put(ctx, toBucket, toKey, obj.Body, obj.Length, opts)
}
