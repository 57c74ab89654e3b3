package storefs

import (
	"context"
	"strings"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Pushed invalidation (Options.Pushed).
//
// The kernel keeps what a LOOKUP or GETATTR answered (the name's inode,
// the file's size and mtime) for as long as the answer says, and while it
// does, an open or stat of the path costs no round trip to this server.
// A round trip costs 0.3-1 ms here when the machine is otherwise idle
// (both ends wake from sleep), which is most of a fresh process's first
// read of a small file. With Options.Pushed the answers are trusted for
// an hour rather than a second, and Invalidate, called with every change
// the store reports, has the kernel forget the changed name (and its
// directories) right after. Reads never depend on it: every open asks the
// store, so an open after a change reads the new object or fails with
// ENOENT; what the kernel may show stale for the moment Invalidate takes
// is a stat or a listing.
//
// The kernel's forgetting runs on a goroutine of its own, not in the
// caller: it takes the directory's lock, which an unlink, rename or
// mkdir through this mount holds while it waits for the store, and the
// store waits for the caller (the metadata cache acknowledging the
// change) before it answers. An answer is long-lived only if no
// Invalidate came while it was being made (fsys.gen unchanged): one that
// raced a change might describe the old object.

// trust returns the invalidation generation to hand to keep, before the
// store is asked: ok is false when changes are not pushed now.
func (f *fsys) trust() (gen uint64, ok bool) {
	if f.opts.Pushed == nil {
		return 0, false
	}
	gen = f.gen.Load()
	return gen, f.opts.Pushed()
}

// keepEntry makes out long-lived if nothing was invalidated since trust.
func (f *fsys) keepEntry(out *fuse.EntryOut, gen uint64, ok bool) {
	if ok && f.gen.Load() == gen {
		out.SetEntryTimeout(f.opts.PushedTimeout)
		out.SetAttrTimeout(f.opts.PushedTimeout)
	}
}

// keepAttr is keepEntry for a GETATTR's answer.
func (f *fsys) keepAttr(out *fuse.AttrOut, gen uint64, ok bool) {
	if ok && f.gen.Load() == gen {
		out.SetTimeout(f.opts.PushedTimeout)
	}
}

// Invalidate tells the server that object key of bucket changed (created,
// replaced or deleted) elsewhere or through it: the kernel forgets the
// name, every directory on its path (a directory may have appeared over
// a file, or gone with its last key), the file's attributes and its
// cached pages. key "" means the whole bucket; bucket "" everything. It
// does not wait for the kernel.
func (s *Server) Invalidate(bucket, key string) {
	s.fsys.gen.Add(1)
	select {
	case s.inval <- [2]string{bucket, key}:
	default: // the kernel is behind: forget everything once it catches up
		s.invalAll.Store(true)
		select {
		case s.inval <- [2]string{"", ""}:
		default:
		}
	}
}

// invalidations forgets what Invalidate names, in order, until ctx ends.
func (s *Server) invalidations(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-s.inval:
			if s.invalAll.Swap(false) {
				c = [2]string{"", ""}
			}
			s.invalidate(c[0], c[1])
		}
	}
}

func (s *Server) invalidate(bucket, key string) {
	root := s.root.EmbeddedInode()
	if bucket == "" {
		forgetTree(root)
		return
	}
	b := root.GetChild(bucket)
	if key == "" {
		root.NotifyEntry(bucket)
		if b != nil {
			forgetTree(b)
		}
		return
	}
	if b == nil {
		return
	}
	dir := b
	for name, rest, more := strings.Cut(key, "/"); name != ""; name, rest, more = strings.Cut(rest, "/") {
		forgetName(dir, name)
		ch := dir.GetChild(name)
		if ch == nil {
			return
		}
		if !more {
			if fn, ok := ch.Operations().(*fileNode); ok {
				fn.forgetCache()
				ch.NotifyContent(0, 0)
			}
			return
		}
		dir = ch
	}
}

// forgetName drops name in dir from the kernel and from dir's listing.
func forgetName(dir *fs.Inode, name string) {
	if d, ok := dir.Operations().(*dirNode); ok {
		d.forget(name)
	}
	dir.NotifyEntry(name)
}

// forgetTree drops every name under dir the kernel was told of.
func forgetTree(dir *fs.Inode) {
	for name, ch := range dir.Children() {
		if ch.IsDir() {
			forgetTree(ch)
		} else if fn, ok := ch.Operations().(*fileNode); ok {
			fn.forgetCache()
			ch.NotifyContent(0, 0)
		}
		forgetName(dir, name)
	}
}
