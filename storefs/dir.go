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

	"github.com/handoff-dev/handoff/store"
)

// rootNode is the mount's root: one directory per bucket.
type rootNode struct {
	fs.Inode
	fsys *fsys
}

var (
	_ fs.NodeLookuper  = (*rootNode)(nil)
	_ fs.NodeReaddirer = (*rootNode)(nil)
	_ fs.NodeMkdirer   = (*rootNode)(nil)
	_ fs.NodeRmdirer   = (*rootNode)(nil)
	_ fs.NodeCreater   = (*rootNode)(nil)
	_ fs.NodeRenamer   = (*rootNode)(nil)
	_ fs.NodeGetattrer = (*rootNode)(nil)
	_ fs.NodeStatfser  = (*rootNode)(nil)
	_ fs.NodeFsyncer   = (*rootNode)(nil)
)

func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fsys.dirAttr(&out.Attr, time.Time{})
	return 0
}

func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }

// Fsync of a directory succeeds: mkdir, rmdir, unlink and rename are
// stored before they return.
func (r *rootNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno { return 0 }

func (r *rootNode) bucketInode(ctx context.Context, name string) *fs.Inode {
	return inodeFor(ctx, r.EmbeddedInode(), name, syscall.S_IFDIR, func() fs.InodeEmbedder {
		return &dirNode{fsys: r.fsys, bucket: name}
	})
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if store.CheckBucketName(name) != nil {
		return nil, syscall.ENOENT
	}
	gen, pushed := r.fsys.trust()
	info, err := r.fsys.b.HeadBucket(ctx, name)
	if err != nil {
		return nil, r.fsys.fail("lookup", name, "", err)
	}
	r.fsys.dirAttr(&out.Attr, info.Created)
	r.fsys.keepEntry(out, gen, pushed)
	return r.bucketInode(ctx, name), 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	bs, err := r.fsys.b.ListBuckets(ctx)
	if err != nil {
		return nil, r.fsys.fail("readdir", "", "", err)
	}
	ents := make([]fuse.DirEntry, 0, len(bs))
	for _, b := range bs {
		ents = append(ents, fuse.DirEntry{Name: b.Name, Mode: syscall.S_IFDIR})
	}
	return fs.NewListDirStream(ents), 0
}

// Mkdir creates a bucket.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := r.fsys.b.CreateBucket(ctx, name); err != nil {
		return nil, r.fsys.fail("mkdir", name, "", err)
	}
	r.fsys.dirAttr(&out.Attr, time.Now())
	return r.bucketInode(ctx, name), 0
}

// Rmdir deletes an empty bucket.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if len(r.fsys.writersUnder(name, "")) > 0 {
		return syscall.ENOTEMPTY
	}
	if err := r.fsys.b.DeleteBucket(ctx, name); err != nil {
		return r.fsys.fail("rmdir", name, "", err)
	}
	return 0
}

// Create refuses: the root holds only buckets.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

// Rename of a bucket is EXDEV: `mv` then copies and deletes.
func (r *rootNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EXDEV
}

// dirNode is a bucket (prefix "") or a key prefix ending in "/" within
// it. Directories are never renamed, so bucket and prefix are fixed.
type dirNode struct {
	fs.Inode
	fsys   *fsys
	bucket string
	prefix string // "" or "a/b/"

	// mu guards the listing cache: what the latest readdir saw, which
	// serves the lookups `ls -l` makes right after it.
	mu       sync.Mutex
	listed   map[string]entry
	listedAt time.Time
}

// entry is a name in a directory as a listing saw it.
type entry struct {
	dir   bool
	size  int64
	mtime time.Time
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
)

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	gen, pushed := d.fsys.trust()
	var mtime time.Time
	if d.prefix == "" {
		if info, err := d.fsys.b.HeadBucket(ctx, d.bucket); err == nil {
			mtime = info.Created
		}
	} else if info, err := d.fsys.b.Head(ctx, d.bucket, d.prefix); err == nil {
		mtime = info.Modified
	}
	d.fsys.dirAttr(&out.Attr, mtime)
	d.fsys.keepAttr(out, gen, pushed)
	return 0
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno { return statfs(out) }

// Fsync of a directory succeeds, as the root's does.
func (d *dirNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno { return 0 }

func (d *dirNode) key(name string) (string, syscall.Errno) {
	key := d.prefix + name
	if len(key)+1 > store.MaxKeyLen { // +1: room for a directory's "/"
		return "", syscall.ENAMETOOLONG
	}
	if store.CheckKey(key) != nil {
		return "", syscall.EINVAL
	}
	return key, 0
}

func (d *dirNode) fileInode(ctx context.Context, name, key string) *fs.Inode {
	return inodeFor(ctx, d.EmbeddedInode(), name, syscall.S_IFREG, func() fs.InodeEmbedder {
		return &fileNode{fsys: d.fsys, bucket: d.bucket, key: key, size: -1}
	})
}

func (d *dirNode) dirInode(ctx context.Context, name, key string) *fs.Inode {
	return inodeFor(ctx, d.EmbeddedInode(), name, syscall.S_IFDIR, func() fs.InodeEmbedder {
		return &dirNode{fsys: d.fsys, bucket: d.bucket, prefix: key + "/"}
	})
}

// forget drops names from the listing cache after a change through the
// mount.
func (d *dirNode) forget(names ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range names {
		delete(d.listed, n)
	}
}

func (d *dirNode) cached(name string) (entry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.listed[name]
	if ok && time.Since(d.listedAt) >= d.fsys.opts.CacheTimeout {
		return entry{}, false
	}
	return e, ok
}

// Lookup finds name as an object being written, then as a directory (a
// key prefix), then as an object: a prefix shadows an object of the same
// name, as the listing does.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	key, errno := d.key(name)
	if errno != 0 {
		return nil, errno
	}
	if w := d.fsys.writerFor(d.bucket, key); w != nil {
		size, mtime := w.stat()
		d.fsys.fileAttr(&out.Attr, size, mtime)
		return d.fileInodeSized(ctx, name, key, -1), 0
	}
	if e, ok := d.cached(name); ok {
		if e.dir {
			d.fsys.dirAttr(&out.Attr, e.mtime)
			return d.dirInode(ctx, name, key), 0
		}
		d.fsys.fileAttr(&out.Attr, e.size, e.mtime)
		return d.fileInodeSized(ctx, name, key, e.size), 0
	}
	gen, pushed := d.fsys.trust()
	isDir, mtime, err := d.isDir(ctx, key)
	if err != nil {
		return nil, d.fsys.fail("lookup", d.bucket, key, err)
	}
	if isDir {
		d.fsys.dirAttr(&out.Attr, mtime)
		d.fsys.keepEntry(out, gen, pushed)
		return d.dirInode(ctx, name, key), 0
	}
	info, err := d.fsys.b.Head(ctx, d.bucket, key)
	if err != nil {
		return nil, d.fsys.fail("lookup", d.bucket, key, err)
	}
	d.fsys.fileAttr(&out.Attr, info.Size, info.Modified)
	// A file being written through this mount changes size as it goes.
	if d.fsys.writerFor(d.bucket, key) == nil {
		d.fsys.keepEntry(out, gen, pushed)
	}
	return d.fileInodeSized(ctx, name, key, info.Size), 0
}

// fileInodeSized is fileInode for a lookup that tells the kernel the
// file's size (-1: a size that may change, of a file being written).
func (d *dirNode) fileInodeSized(ctx context.Context, name, key string, size int64) *fs.Inode {
	ino := d.fileInode(ctx, name, key)
	if fn, ok := ino.Operations().(*fileNode); ok {
		fn.told(size)
	}
	return ino
}

// isDir reports whether any key starts with key+"/", and the mtime of its
// marker object if that is the first.
func (d *dirNode) isDir(ctx context.Context, key string) (bool, time.Time, error) {
	res, err := d.fsys.b.List(ctx, d.bucket, store.ListOptions{Prefix: key + "/", Max: 1})
	if err != nil || len(res.Objects) == 0 {
		return false, time.Time{}, err
	}
	var mtime time.Time
	if o := res.Objects[0]; o.Key == key+"/" {
		mtime = o.Modified
	}
	return true, mtime, nil
}

// Mkdir creates a directory as a zero-byte marker object "prefix/name/",
// which keeps it when empty and shows it to S3 clients.
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	key, errno := d.key(name)
	if errno != 0 {
		return nil, errno
	}
	if d.fsys.writerFor(d.bucket, key) != nil {
		return nil, syscall.EEXIST
	}
	if isDir, _, err := d.isDir(ctx, key); err != nil {
		return nil, d.fsys.fail("mkdir", d.bucket, key, err)
	} else if isDir {
		return nil, syscall.EEXIST
	}
	if _, err := d.fsys.b.Head(ctx, d.bucket, key); err == nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, store.ErrNoSuchKey) {
		return nil, d.fsys.fail("mkdir", d.bucket, key, err)
	}
	info, err := d.fsys.b.Put(ctx, d.bucket, key+"/", strings.NewReader(""), 0, store.PutOptions{})
	if err != nil {
		return nil, d.fsys.fail("mkdir", d.bucket, key+"/", err)
	}
	d.forget(name)
	d.fsys.dirAttr(&out.Attr, info.Modified)
	return d.dirInode(ctx, name, key), 0
}

// Rmdir removes an empty directory: its marker object, if it has one.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	key, errno := d.key(name)
	if errno != 0 {
		return errno
	}
	marker := key + "/"
	if len(d.fsys.writersUnder(d.bucket, marker)) > 0 {
		return syscall.ENOTEMPTY
	}
	res, err := d.fsys.b.List(ctx, d.bucket, store.ListOptions{Prefix: marker, Max: 2})
	if err != nil {
		return d.fsys.fail("rmdir", d.bucket, marker, err)
	}
	hasMarker := false
	for _, o := range res.Objects {
		if o.Key != marker {
			return syscall.ENOTEMPTY
		}
		hasMarker = true
	}
	d.forget(name)
	if !hasMarker {
		// An implicit directory (keys under it, no marker) whose last
		// key went: it is gone already.
		if _, err := d.fsys.b.Head(ctx, d.bucket, key); err == nil {
			return syscall.ENOTDIR
		}
		return 0
	}
	if err := d.fsys.b.Delete(ctx, d.bucket, marker); err != nil {
		return d.fsys.fail("rmdir", d.bucket, marker, err)
	}
	return 0
}

// Create opens a new, empty file for writing; the object is stored when
// the file is flushed (closed).
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	key, errno := d.key(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if isDir, _, err := d.isDir(ctx, key); err != nil {
		return nil, nil, 0, d.fsys.fail("create", d.bucket, key, err)
	} else if isDir {
		return nil, nil, 0, syscall.EISDIR
	}
	if flags&syscall.O_EXCL != 0 {
		if _, err := d.fsys.b.Head(ctx, d.bucket, key); err == nil || d.fsys.writerFor(d.bucket, key) != nil {
			return nil, nil, 0, syscall.EEXIST
		}
	}
	w, errno := d.fsys.openWriter(ctx, d.bucket, key, true)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	d.forget(name)
	ino := d.fileInode(ctx, name, key)
	fn := ino.Operations().(*fileNode)
	fn.forgetCache()
	d.fsys.fileAttr(&out.Attr, 0, time.Now())
	return ino, &handle{node: fn, w: w}, 0, 0
}

// Unlink deletes the object. A file still open for writing is forgotten:
// its writes are dropped, as they would be on a POSIX filesystem.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	key, errno := d.key(name)
	if errno != 0 {
		return errno
	}
	w := d.fsys.writerFor(d.bucket, key)
	if w != nil {
		d.fsys.unlinkWriter(w)
	}
	if _, err := d.fsys.b.Head(ctx, d.bucket, key); err != nil {
		if w != nil && errors.Is(err, store.ErrNoSuchKey) {
			d.forget(name)
			return 0
		}
		return d.fsys.fail("unlink", d.bucket, key, err)
	}
	if err := d.fsys.b.Delete(ctx, d.bucket, key); err != nil {
		return d.fsys.fail("unlink", d.bucket, key, err)
	}
	d.forget(name)
	return 0
}

// Readdir lists the directory page by page.
func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	// Files created through the mount and not yet stored are listed
	// too, after the stored ones.
	var pending []string
	for _, w := range d.fsys.writersUnder(d.bucket, d.prefix) {
		if name, committed := w.pendingName(d.prefix); name != "" && !committed {
			pending = append(pending, name)
		}
	}
	d.mu.Lock()
	d.listed = make(map[string]entry)
	d.listedAt = time.Now()
	d.mu.Unlock()
	return &listStream{d: d, pending: pending}, 0
}
