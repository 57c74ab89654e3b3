package buffer

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/handoff-dev/handoff/memfd"
)

// Reader is one read of one buffer, from Store.Open. It reads through its
// own read-only file description, so Readers of the same buffer do not
// share an offset, and it keeps the buffer's bytes alive until Close, even
// after the buffer was freed, expired or the store closed.
//
// Read, WriteTo and File share the Reader's offset, so use one of them at
// a time; ReadAt, Info and Close are safe to call concurrently with
// anything.
type Reader struct {
	s      *Store
	e      *entry
	info   Info
	f      *os.File // own read-only description of e.f
	closed atomic.Bool
}

// reopen gives a Reader its own read-only description of f.
func reopen(f *os.File) (*os.File, error) {
	ro, err := memfd.ReopenReadOnly(f)
	if err != nil {
		return nil, fmt.Errorf("buffer: open a reader: %w", err)
	}
	return ro, nil
}

// Info describes the buffer; ReadsLeft is the count after this read.
func (r *Reader) Info() Info { return r.info }

// Read reads the payload sequentially.
func (r *Reader) Read(p []byte) (int, error) { return r.f.Read(p) }

// ReadAt reads len(p) bytes at off, independently of the offset.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// WriteTo writes the rest of the payload, from the current offset, to w.
// When w is an io.ReaderFrom, as a *net.TCPConn, an *os.File or an
// http.ResponseWriter is, it gets the Reader's *os.File behind an
// io.LimitedReader, which lets the kernel move the bytes itself
// (sendfile(2), splice(2) or copy_file_range(2)) without copying them
// through this process. io.Copy(w, r) takes this path too.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	off, err := r.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	rest := r.info.Size - off
	if rest <= 0 {
		return 0, nil
	}
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(&io.LimitedReader{R: r.f, N: rest})
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	// Hide the file's own WriterTo, which would copy in 32 KiB steps.
	return io.CopyBuffer(w, io.LimitReader(struct{ io.Reader }{r.f}, rest), *bufp)
}

// File returns the Reader's own read-only *os.File, for sendfile or for
// passing the descriptor to a process on this node (that process then
// reads or maps the very same pages: a sealed memfd, or for a spilled
// buffer an unlinked file). Its offset is the Reader's. It stays valid
// until Close; dup it (or pass it) to keep it longer.
//
// A memfd is sealed, so whoever holds the descriptor can never change the
// bytes. A spill file cannot be sealed; it is read-only by mode, which
// root ignores (see Info.Spilled before passing it on).
func (r *Reader) File() *os.File { return r.f }

// Close releases the Reader and, if it was the last user of a buffer that
// left the store, the buffer's memory. Closing twice is a no-op.
func (r *Reader) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := r.f.Close()
	r.s.mu.Lock()
	toClose := r.s.unrefLocked(r.e)
	r.s.mu.Unlock()
	closeFiles(toClose)
	return err
}
