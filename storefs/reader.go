package storefs

import (
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/handoff-dev/handoff/store"
)

// reader reads one version of an object: the one open saw. Sequential
// reads go through a read-ahead buffer of 1 MiB chunks, each one ranged
// Get, fetched Options.ReadAhead ahead of the reader; other reads are one
// ranged Get each. If the object is replaced or deleted while open, reads
// fail with ESTALE rather than mix two versions.
type reader struct {
	f     *fsys
	info  store.ObjectInfo // the version read
	ahead int64            // chunks to read ahead

	// mu guards all following fields.
	mu     sync.Mutex
	chunks map[int64]*chunk // by index: offset / chunkSize
	next   int64            // offset just past the last read
}

// chunk is one chunk of the object, fetched or being fetched.
type chunk struct {
	ready chan struct{} // closed when data or err is set
	data  []byte
	err   error
}

func newReader(f *fsys, info store.ObjectInfo) *reader {
	return &reader{f: f, info: info, ahead: f.opts.ReadAhead / chunkSize, chunks: make(map[int64]*chunk)}
}

func (r *reader) read(dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := r.info.Size
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), size-off)
	first, last := off/chunkSize, (off+n-1)/chunkSize

	r.mu.Lock()
	seq := off == r.next || r.chunks[first] != nil || r.chunks[first-1] != nil
	r.next = off + n
	if !seq || r.ahead == 0 {
		r.mu.Unlock()
		if errno := r.direct(dest[:n], off); errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	cs := make([]*chunk, 0, last-first+1)
	for i := first; i <= last; i++ {
		cs = append(cs, r.chunk(i))
	}
	for i := last + 1; i <= last+r.ahead && i*chunkSize < size; i++ {
		r.chunk(i)
	}
	for i := range r.chunks {
		if i < first-1 || i > last+r.ahead {
			delete(r.chunks, i)
		}
	}
	r.mu.Unlock()

	for _, c := range cs {
		<-c.ready
		if c.err != nil {
			return nil, r.f.fail("read", r.info.Bucket, r.info.Key, c.err)
		}
	}
	if first == last {
		// The whole read is in one chunk: hand the kernel its bytes.
		start := off - first*chunkSize
		return fuse.ReadResultData(cs[0].data[start : start+n]), 0
	}
	done := int64(0)
	for i, c := range cs {
		start := max(off+done-(first+int64(i))*chunkSize, 0)
		done += int64(copy(dest[done:n], c.data[start:]))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// chunk returns chunk i, starting its fetch if it is not held. The
// caller holds r.mu.
func (r *reader) chunk(i int64) *chunk {
	if c := r.chunks[i]; c != nil {
		return c
	}
	c := &chunk{ready: make(chan struct{})}
	r.chunks[i] = c
	go func() {
		off := i * chunkSize
		buf := make([]byte, min(chunkSize, r.info.Size-off))
		c.err = r.fetch(buf, off)
		c.data = buf
		close(c.ready)
	}()
	return c
}

// direct reads len(p) bytes at off with one ranged Get.
func (r *reader) direct(p []byte, off int64) syscall.Errno {
	if err := r.fetch(p, off); err != nil {
		return r.f.fail("read", r.info.Bucket, r.info.Key, err)
	}
	return 0
}

// fetch fills p from off with a ranged Get of the version open saw.
func (r *reader) fetch(p []byte, off int64) error {
	obj, err := r.f.b.Get(r.f.ctx, r.info.Bucket, r.info.Key, &store.Range{First: off, Last: off + int64(len(p)) - 1})
	if err != nil {
		return err
	}
	defer obj.Body.Close()
	if obj.Info.ETag != r.info.ETag || obj.Info.Size != r.info.Size || !obj.Info.Modified.Equal(r.info.Modified) {
		return fmt.Errorf("%w: %s/%s was replaced while open; open it again", syscall.ESTALE, r.info.Bucket, r.info.Key)
	}
	if _, err := io.ReadFull(obj.Body, p); err != nil {
		return fmt.Errorf("storefs: reading %s/%s at %d: %w", r.info.Bucket, r.info.Key, off, err)
	}
	return nil
}
