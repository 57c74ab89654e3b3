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
// reads go through a read-ahead buffer of 1 MiB chunks that one fetcher
// goroutine fills, Options.ReadAhead ahead of the reader, from a single
// streaming Get (one Backend call for a whole sequential pass, which
// keeps the object's blocks pinned until the file is closed). Other
// reads are one ranged Get each. If the object is replaced or deleted
// while open, reads fail with ESTALE rather than mix two versions.
type reader struct {
	f     *fsys
	info  store.ObjectInfo // the version read
	ahead int64            // chunks to read ahead

	// mu guards all following fields.
	mu     sync.Mutex
	chunks map[int64]*chunk // by index (offset / chunkSize)
	next   int64            // offset just past the last read
	// The fetcher fills the chunks not yet filled, lowest index first,
	// from body.
	fetching bool          // the fetcher goroutine runs; it owns body meanwhile
	body     *store.Object // open Get, positioned at chunk bodyAt
	bodyAt   int64
	closed   bool
}

// chunk is one chunk of the object. Every chunk in reader.chunks gets
// filled: the fetcher takes them in turn, and only filled chunks are
// dropped, so a read waiting on one is never left behind.
//
// A chunk's buffer is recycled (freeChunks) once nothing uses it: refs
// counts its place in reader.chunks and each read copying from it.
type chunk struct {
	ready chan struct{} // closed when data or err is set
	data  []byte
	err   error
	taken bool // the fetcher is filling it or has; guarded by reader.mu
	done  bool // filled; guarded by reader.mu
	refs  int  // guarded by reader.mu
}

// freeChunks recycles chunk buffers between reads and readers: a fresh
// 1 MiB buffer per chunk cost a page fault per 4 KiB (~19 µs each on the
// development VM), which bound the node agent's mount reads to a fifth of
// its S3 API. Buffers beyond its capacity are left to the GC.
var freeChunks = make(chan []byte, 64)

func chunkBuf(n int64) []byte {
	select {
	case b := <-freeChunks:
		return b[:n]
	default:
		return make([]byte, n, chunkSize)
	}
}

// unref drops one reference to c, recycling its buffer at the last.
// Called under reader.mu.
func (c *chunk) unref() {
	c.refs--
	if c.refs == 0 && cap(c.data) == chunkSize {
		select {
		case freeChunks <- c.data[:0]:
		default:
		}
		c.data = nil
	}
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
	if !seq || r.ahead == 0 || r.closed {
		r.mu.Unlock()
		if errno := r.direct(dest[:n], off); errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultData(dest[:n]), 0
	}
	cs := make([]*chunk, 0, last-first+1)
	end := min(last+r.ahead, (size-1)/chunkSize)
	for i := first; i <= end; i++ {
		c := r.chunks[i]
		if c == nil {
			c = &chunk{ready: make(chan struct{}), refs: 1}
			r.chunks[i] = c
		}
		if i <= last {
			c.refs++ // until this read is done with it
			cs = append(cs, c)
		}
	}
	for i, c := range r.chunks {
		if c.done && (i < first-1 || i > end) {
			delete(r.chunks, i)
			c.unref()
		}
	}
	if !r.fetching {
		r.fetching = true
		go r.fetcher()
	}
	r.mu.Unlock()

	for _, c := range cs {
		<-c.ready
		if c.err != nil {
			r.unref(cs)
			return nil, r.f.fail("read", r.info.Bucket, r.info.Key, c.err)
		}
	}
	res := &chunksResult{r: r, cs: cs, n: int(n)}
	done := int64(0)
	for i, c := range cs {
		start := max(off+done-(first+int64(i))*chunkSize, 0)
		v := c.data[start:min(int64(len(c.data)), start+n-done)]
		res.vecs = append(res.vecs, v)
		done += int64(len(v))
	}
	return res, 0
}

// chunksResult hands the kernel the chunks' bytes without a copy, the
// reply written from them with one writev, and holds the read's
// references on the chunks until go-fuse is Done with them.
//
// Slices is what makes go-fuse write the reply from the slices and call
// Done only after the write; where it takes Bytes instead (another
// platform, another path) Bytes copies into go-fuse's buffer, since
// go-fuse may then call Done before it writes.
type chunksResult struct {
	r    *reader
	cs   []*chunk
	vecs [][]byte
	n    int
	once sync.Once
}

// The method set go-fuse's (unexported) withSlice interface asks for.
var _ interface {
	fuse.ReadResult
	Slices() ([][]byte, fuse.Status)
} = (*chunksResult)(nil)

func (c *chunksResult) Slices() ([][]byte, fuse.Status) { return c.vecs, fuse.OK }

func (c *chunksResult) Size() int { return c.n }

func (c *chunksResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(buf) < c.n {
		buf = make([]byte, c.n)
	}
	k := 0
	for _, v := range c.vecs {
		k += copy(buf[k:], v)
	}
	return buf[:k], fuse.OK
}

func (c *chunksResult) Done() { c.once.Do(func() { c.r.unref(c.cs) }) }

func (r *reader) unref(cs []*chunk) {
	r.mu.Lock()
	for _, c := range cs {
		c.unref()
	}
	r.mu.Unlock()
}

// fetcher fills the chunks not yet taken, lowest index first, and exits
// when none is left.
func (r *reader) fetcher() {
	for {
		r.mu.Lock()
		var c *chunk
		i := int64(-1)
		for j, cj := range r.chunks {
			if !cj.taken && (c == nil || j < i) {
				c, i = cj, j
			}
		}
		if c == nil || r.closed {
			r.fetching = false
			if r.closed {
				r.closeBody()
				for _, cj := range r.chunks {
					if !cj.taken {
						cj.taken, cj.done, cj.err = true, true, errClosed
						close(cj.ready)
					}
				}
			}
			r.mu.Unlock()
			return
		}
		c.taken = true
		r.mu.Unlock()

		data, err := r.fill(i)

		r.mu.Lock()
		c.data, c.err, c.done = data, err, true
		close(c.ready)
		r.mu.Unlock()
	}
}

var errClosed = fmt.Errorf("%w: read after release", syscall.EBADF)

// fill reads chunk i from the streaming Get, opening it at i if it is
// elsewhere. Only the fetcher calls it.
func (r *reader) fill(i int64) ([]byte, error) {
	off := i * chunkSize
	if r.body == nil || r.bodyAt != i {
		r.closeBody()
		obj, err := r.f.b.Get(r.f.ctx, r.info.Bucket, r.info.Key, &store.Range{First: off, Last: -1})
		if err != nil {
			return nil, err
		}
		if err := r.check(obj.Info); err != nil {
			obj.Body.Close()
			return nil, err
		}
		r.body, r.bodyAt = obj, i
	}
	buf := chunkBuf(min(chunkSize, r.info.Size-off))
	if _, err := io.ReadFull(r.body.Body, buf); err != nil {
		select {
		case freeChunks <- buf[:0]:
		default:
		}
		r.closeBody()
		return nil, fmt.Errorf("storefs: reading %s/%s at %d: %w", r.info.Bucket, r.info.Key, off, err)
	}
	r.bodyAt++
	return buf, nil
}

func (r *reader) closeBody() {
	if r.body != nil {
		r.body.Body.Close()
		r.body = nil
	}
}

// close ends the reader, releasing its Get.
func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if !r.fetching {
		r.closeBody()
	}
	for i, c := range r.chunks {
		if c.done {
			delete(r.chunks, i)
			c.unref()
		}
	}
}

// check fails with ESTALE when info is not the version open saw.
func (r *reader) check(info store.ObjectInfo) error {
	if info.ETag != r.info.ETag || info.Size != r.info.Size || !info.Modified.Equal(r.info.Modified) {
		return fmt.Errorf("%w: %s/%s was replaced while open; open it again", syscall.ESTALE, r.info.Bucket, r.info.Key)
	}
	return nil
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
	if err := r.check(obj.Info); err != nil {
		return err
	}
	if _, err := io.ReadFull(obj.Body, p); err != nil {
		return fmt.Errorf("storefs: reading %s/%s at %d: %w", r.info.Bucket, r.info.Key, off, err)
	}
	return nil
}
