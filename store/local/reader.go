package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/meta"
)

// reader streams a byte range of an object block by block, each block
// checked against its CRC-32C (by the block tier, and against the CRC the
// metadata recorded) before a byte of it is returned. It holds a pin on
// the object's blocks until Close, so a concurrent delete or replace does
// not pull them from under it.
type reader struct {
	s           *Store
	ctx         context.Context // of the Get: remote block reads use it
	bucket, key string
	blocks      []meta.Block // the object's blocks
	pinned      []meta.Block // nil once Close has unpinned them
	off         int64        // object offset of the next byte to return
	left        int64        // bytes still to return
	err         error        // sticky

	bi   int    // index in blocks of the block in cur
	cur  []byte // verified bytes of block bi; nil if none loaded
	base int64  // object offset of cur[0]

	closeOnce sync.Once
}

// scratchPool recycles the buffers blocks are read into.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, blocks.DefaultSize); return &b }}

// load makes cur the block holding offset r.off.
func (r *reader) load() error {
	if r.cur != nil && r.off >= r.base && r.off < r.base+int64(len(r.cur)) {
		return nil
	}
	var base int64
	for i, b := range r.blocks {
		if r.off < base+b.Size {
			return r.read(i, base)
		}
		base += b.Size
	}
	return fmt.Errorf("store: offset %d past the object's blocks", r.off)
}

func (r *reader) read(i int, base int64) error {
	b := r.blocks[i]
	if r.cur == nil {
		bp := scratchPool.Get().(*[]byte)
		r.cur = (*bp)[:0]
	}
	data, err := r.s.blocks.Read(r.ctx, b, r.cur[:0])
	r.cur = data[:0]
	if err != nil {
		return fmt.Errorf("%w (object %s/%s, bytes %d-%d)", err, r.bucket, r.key, base, base+b.Size-1)
	}
	r.cur, r.bi, r.base = data, i, base
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if err := r.load(); err != nil {
		r.err = err
		return 0, err
	}
	src := r.cur[r.off-r.base:]
	src = src[:min(int64(len(src)), r.left)]
	n := copy(p, src)
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

// WriteTo writes the verified bytes of each block straight to w, sparing
// io.Copy a copy through its own buffer.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.left > 0 {
		if r.err != nil {
			return total, r.err
		}
		if err := r.load(); err != nil {
			r.err = err
			return total, err
		}
		src := r.cur[r.off-r.base:]
		src = src[:min(int64(len(src)), r.left)]
		n, err := w.Write(src)
		total += int64(n)
		r.off += int64(n)
		r.left -= int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, r.err
}

// Close releases the pin on the object's blocks. Reads after Close fail.
func (r *reader) Close() error {
	r.closeOnce.Do(func() {
		r.s.unpin(r.pinned)
		r.pinned = nil
		if r.cur != nil && cap(r.cur) <= 2*blocks.DefaultSize {
			b := r.cur[:0]
			scratchPool.Put(&b)
		}
		r.cur = nil
		if r.err == nil {
			r.err = errors.New("store: read after close")
		}
	})
	return nil
}
