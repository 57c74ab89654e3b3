package storefs

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/handoff-dev/handoff/store"
)

// fsys is the state one mount shares among its nodes.
type fsys struct {
	ctx     context.Context // cancelled at Unmount; outlives requests, for uploads and read-ahead
	b       store.Backend
	opts    Options
	log     *slog.Logger
	started time.Time // mtime of directories that have no marker object
	// gen counts Invalidate calls: an answer made while it moved is not
	// kept long by the kernel (pushed.go).
	gen atomic.Uint64

	// mu guards writers and every writer's id and refs. Lock order:
	// mu, then a writer's mu; mu is never held across a Backend call.
	mu      sync.Mutex
	writers map[string]*writer // by objID
}

func newFsys(ctx context.Context, b store.Backend, opts Options) *fsys {
	return &fsys{ctx: ctx, b: b, opts: opts, log: opts.Log, started: time.Now(), writers: make(map[string]*writer)}
}

// objID names an object in fsys.writers; bucket names hold no '/'.
func objID(bucket, key string) string { return bucket + "/" + key }

// writerFor returns the writer of an object open for writing, or nil.
func (f *fsys) writerFor(bucket, key string) *writer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writers[objID(bucket, key)]
}

// writersUnder returns the writers of objects whose keys start with
// prefix in bucket.
func (f *fsys) writersUnder(bucket, prefix string) []*writer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ws []*writer
	for id, w := range f.writers {
		if strings.HasPrefix(id, bucket+"/"+prefix) {
			ws = append(ws, w)
		}
	}
	return ws
}

// abortAll drops every upload under way, at unmount.
func (f *fsys) abortAll() {
	f.mu.Lock()
	ws := make([]*writer, 0, len(f.writers))
	for _, w := range f.writers {
		ws = append(ws, w)
	}
	clear(f.writers)
	f.mu.Unlock()
	for _, w := range ws {
		w.mu.Lock()
		w.abort()
		w.mu.Unlock()
	}
}

func (f *fsys) fileAttr(out *fuse.Attr, size int64, mtime time.Time) {
	out.Mode = syscall.S_IFREG | 0o644
	out.Nlink = 1
	out.Size = uint64(size)
	out.Blksize = chunkSize // cp and friends size their buffers by it
	out.Blocks = (uint64(size) + 511) / 512
	setTimes(out, mtime)
}

func (f *fsys) dirAttr(out *fuse.Attr, mtime time.Time) {
	if mtime.IsZero() {
		mtime = f.started
	}
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
	out.Size = 4096
	out.Blksize = 4096
	out.Blocks = 8
	setTimes(out, mtime)
}

func setTimes(out *fuse.Attr, t time.Time) {
	out.SetTimes(&t, &t, &t)
}

// statfs reports a large, mostly free filesystem: the store's budgets
// are not visible through the Backend, and a program that checks for
// room before writing should try and meet ENOSPC instead.
func statfs(out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.Blocks = 1 << 30 // 4 TiB
	out.Bfree = 1 << 30
	out.Bavail = 1 << 30
	out.Files = 1 << 30
	out.Ffree = 1 << 30
	out.NameLen = 255
	return 0
}

// validName reports whether a listed name can be a directory entry.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 && !strings.ContainsRune(name, 0)
}

// inodeFor returns parent's child called name if it is of the given
// kind (S_IFDIR or S_IFREG), so repeated lookups keep one inode, or a new
// inode for ops.
func inodeFor(ctx context.Context, parent *fs.Inode, name string, mode uint32, ops func() fs.InodeEmbedder) *fs.Inode {
	if ch := parent.GetChild(name); ch != nil && ch.Mode()&syscall.S_IFMT == mode {
		return ch
	}
	return parent.NewInode(ctx, ops(), fs.StableAttr{Mode: mode})
}
