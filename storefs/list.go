package storefs

import (
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/handoff-dev/handoff/store"
)

// listStream lists a directory with List and the "/" delimiter, a page
// at a time as the kernel reads on. Objects and common prefixes come in
// separate sorted lists; it merges them in key order. A prefix "x/"
// shadows an object "x" (Lookup resolves the name to the directory), so
// an object is held back until the listing has passed "x/".
type listStream struct {
	d       *dirNode
	pending []string // files being written, not yet stored

	after   string // List's After for the next page
	fetched bool   // a page has been fetched
	more    bool   // the last page was truncated
	objs    []store.ObjectInfo
	prefs   []string
	held    []store.ObjectInfo // objects whose "key/" may still follow
	out     []fuse.DirEntry    // entries ready to return
	err     syscall.Errno
	emitted map[string]bool // pending names already listed from the store
}

func (s *listStream) HasNext() bool {
	s.fill()
	return len(s.out) > 0 || s.err != 0
}

func (s *listStream) Next() (fuse.DirEntry, syscall.Errno) {
	s.fill()
	if s.err != 0 {
		err := s.err
		s.err = 0
		return fuse.DirEntry{}, err
	}
	e := s.out[0]
	s.out = s.out[1:]
	return e, 0
}

func (s *listStream) Close() {}

// fill makes entries ready, fetching pages until it has some or the
// listing ends.
func (s *listStream) fill() {
	for len(s.out) == 0 && s.err == 0 {
		if len(s.objs) == 0 && len(s.prefs) == 0 {
			if s.fetched && !s.more {
				s.finish()
				return
			}
			if !s.fetch() {
				return
			}
			continue
		}
		// Take the lesser head of the two sorted lists.
		if len(s.prefs) > 0 && (len(s.objs) == 0 || s.prefs[0] < s.objs[0].Key) {
			p := s.prefs[0]
			s.prefs = s.prefs[1:]
			s.release(p)
			s.dir(p)
		} else {
			o := s.objs[0]
			s.objs = s.objs[1:]
			s.release(o.Key)
			if o.Key != s.d.prefix { // the directory's own marker
				s.held = append(s.held, o)
			}
		}
	}
}

func (s *listStream) fetch() bool {
	ctx := s.d.fsys.ctx
	res, err := s.d.fsys.b.List(ctx, s.d.bucket, store.ListOptions{
		Prefix: s.d.prefix, Delimiter: "/", After: s.after, Max: store.MaxListKeys,
	})
	if err != nil {
		s.err = s.d.fsys.fail("readdir", s.d.bucket, s.d.prefix, err)
		return false
	}
	s.fetched = true
	s.more = res.Truncated
	s.after = res.Next
	s.objs = res.Objects
	s.prefs = res.CommonPrefixes
	return true
}

// release emits the held objects whose "key/" can no longer follow, as
// the listing has reached next: every held x with x+"/" < next. (The
// order of x+"/" is not that of x: "x.a/" < "x/".) An object x with
// next == x+"/" is shadowed by that directory and dropped.
func (s *listStream) release(next string) {
	kept := s.held[:0]
	for _, o := range s.held {
		switch d := o.Key + "/"; {
		case d == next:
		case d < next:
			s.file(o)
		default:
			kept = append(kept, o)
		}
	}
	s.held = kept
}

func (s *listStream) finish() {
	for _, o := range s.held {
		s.file(o)
	}
	s.held = nil
	for _, name := range s.pending {
		if !s.emitted[name] {
			s.out = append(s.out, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
		}
	}
	s.pending = nil
}

func (s *listStream) file(o store.ObjectInfo) {
	name := strings.TrimPrefix(o.Key, s.d.prefix)
	if !validName(name) || strings.Contains(name, "/") {
		return
	}
	s.add(name, entry{size: o.Size, mtime: o.Modified})
}

func (s *listStream) dir(p string) {
	name := strings.TrimSuffix(strings.TrimPrefix(p, s.d.prefix), "/")
	if !validName(name) {
		return
	}
	s.add(name, entry{dir: true})
}

func (s *listStream) add(name string, e entry) {
	mode := uint32(syscall.S_IFREG)
	if e.dir {
		mode = syscall.S_IFDIR
	}
	s.out = append(s.out, fuse.DirEntry{Name: name, Mode: mode})
	if len(s.pending) > 0 {
		if s.emitted == nil {
			s.emitted = make(map[string]bool)
		}
		s.emitted[name] = true
	}
	s.d.mu.Lock()
	if s.d.listed != nil && len(s.d.listed) < 100_000 {
		s.d.listed[name] = e
	}
	s.d.mu.Unlock()
}
