package storefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/store"
)

// writer is an object being written through the mount. Every handle
// open for writing on one object shares its writer, so they agree on the
// file's size.
//
// Bytes stream into the Backend as they are written: the first 1 MiB is
// kept in memory (a small file becomes one Put of known size); past it
// the writer starts a multipart upload and pipes the bytes into one
// UploadPart per Options.PartSize. A commit (flush, fsync, last close)
// completes the object; a write after a commit starts a new upload that
// first copies the stored object back, since objects are immutable.
type writer struct {
	f *fsys

	// Guarded by f.mu.
	id   string // key in f.writers; "" once it is out of the map
	refs int    // open handles

	// mu guards all following fields. It is held across Backend calls
	// and pipe writes: a file's writes, commits and truncates run one at
	// a time, in order.
	mu          sync.Mutex
	bucket, key string
	size        int64 // the file's size as written
	mtime       time.Time
	dirty       bool // the file differs from what is stored
	unlinked    bool // deleted while open: its writes are dropped
	// base is the stored object the file starts with and that the
	// upload under way does not hold yet: writing on continues after
	// copying it. nil: the file starts empty.
	base *store.ObjectInfo
	err  error // sticky failure of the upload under way; truncate to 0 clears it

	small    []byte // bytes before the multipart upload starts
	uploadID string
	parts    []store.CompletePart
	part     *partStream // the part being streamed, nil: none
}

// partStream is an UploadPart reading from a pipe.
type partStream struct {
	number int
	pw     *io.PipeWriter
	n      int64 // bytes written into it
	done   chan partResult
}

type partResult struct {
	info store.PartInfo
	err  error
}

var errAborted = errors.New("storefs: upload aborted")

// openWriter returns the writer of bucket/key, creating it, and counts a
// handle on it. trunc empties the file (O_TRUNC, O_CREAT of a new file);
// otherwise the file starts as the stored object.
func (f *fsys) openWriter(ctx context.Context, bucket, key string, trunc bool) (*writer, syscall.Errno) {
	id := objID(bucket, key)
	f.mu.Lock()
	w := f.writers[id]
	if w != nil {
		w.refs++
		f.mu.Unlock()
		if trunc {
			if errno := w.truncate(0); errno != 0 {
				f.releaseWriter(w)
				return nil, errno
			}
		}
		return w, 0
	}
	w = &writer{f: f, id: id, refs: 1, bucket: bucket, key: key, mtime: time.Now()}
	w.mu.Lock() // before anyone else sees it
	f.writers[id] = w
	f.mu.Unlock()
	if trunc {
		w.dirty = true
		w.mu.Unlock()
		return w, 0
	}
	info, err := f.b.Head(ctx, bucket, key)
	switch {
	case err == nil:
		w.base, w.size, w.mtime = &info, info.Size, info.Modified
	case errors.Is(err, store.ErrNoSuchKey):
		w.dirty = true // gone since the lookup: a new, empty file
	default:
		w.mu.Unlock()
		f.releaseWriter(w)
		return nil, f.fail("open", bucket, key, err)
	}
	w.mu.Unlock()
	return w, 0
}

// releaseWriter drops a handle's count on w; the last one commits what
// is left (its errors are only logged: close has returned) and removes w.
func (f *fsys) releaseWriter(w *writer) {
	f.mu.Lock()
	w.refs--
	last := w.refs == 0
	if last && w.id != "" && f.writers[w.id] == w {
		delete(f.writers, w.id)
		w.id = ""
	}
	f.mu.Unlock()
	if !last {
		return
	}
	w.commit()
	w.mu.Lock()
	w.abort()
	w.mu.Unlock()
}

// unlinkWriter marks w deleted: its writes are dropped and the name is
// free for a new file.
func (f *fsys) unlinkWriter(w *writer) {
	f.mu.Lock()
	if w.id != "" && f.writers[w.id] == w {
		delete(f.writers, w.id)
		w.id = ""
	}
	f.mu.Unlock()
	w.mu.Lock()
	w.unlinked = true
	w.abort()
	w.mu.Unlock()
}

// moveWriter follows a rename: a writer of the old name (with nothing
// unstored, or the rename would have been refused) now writes the new
// one, whose stored object is info. A writer of the new name is
// orphaned: it continues an object that was replaced.
func (f *fsys) moveWriter(bucket, key, toBucket, toKey string, info store.ObjectInfo) {
	from, to := objID(bucket, key), objID(toBucket, toKey)
	f.mu.Lock()
	if old := f.writers[to]; old != nil {
		delete(f.writers, to)
		old.id = ""
	}
	w := f.writers[from]
	if w != nil {
		delete(f.writers, from)
		w.id = to
		f.writers[to] = w
	}
	f.mu.Unlock()
	if w != nil {
		w.mu.Lock()
		w.bucket, w.key = toBucket, toKey
		if w.base != nil {
			w.base = &info
		}
		w.mu.Unlock()
	}
}

// stat returns the file's size and mtime as written so far.
func (w *writer) stat() (int64, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size, w.mtime
}

// modified reports whether the file holds writes not yet stored.
func (w *writer) modified() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dirty
}

// pendingName returns w's name within the directory prefix, if it is a
// direct child, and whether an object of that name is stored.
func (w *writer) pendingName(prefix string) (name string, stored bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	name = strings.TrimPrefix(w.key, prefix)
	if strings.Contains(name, "/") || !validName(name) {
		return "", false
	}
	return name, w.base != nil || !w.dirty
}

func (w *writer) write(data []byte, off int64) (uint32, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, errnoOf(w.err)
	}
	if off < w.size {
		w.f.log.Info("storefs: write before the end of a file refused; objects are written sequentially, whole",
			"bucket", w.bucket, "key", w.key, "offset", off, "size", w.size)
		return 0, syscall.EOPNOTSUPP
	}
	if err := w.extend(off); err != nil {
		return 0, w.failed("write", err)
	}
	if err := w.push(data); err != nil {
		return 0, w.failed("write", err)
	}
	w.size += int64(len(data))
	w.dirty = true
	w.mtime = time.Now()
	return uint32(len(data)), 0
}

// extend copies the stored base into the upload, if it is not there
// yet, and fills the file with zeros up to size.
func (w *writer) extend(size int64) error {
	if w.base != nil {
		if err := w.copyBase(); err != nil {
			return err
		}
	}
	var zeros [64 << 10]byte
	for w.size < size {
		n := min(int64(len(zeros)), size-w.size)
		if err := w.push(zeros[:n]); err != nil {
			return err
		}
		w.size += n
		w.dirty = true
	}
	return nil
}

// copyBase starts the upload with the stored object the file continues.
func (w *writer) copyBase() error {
	base := w.base
	w.base = nil
	if base.Size == 0 {
		return nil
	}
	obj, err := w.f.b.Get(w.f.ctx, w.bucket, w.key, nil)
	if err != nil {
		return err
	}
	defer obj.Body.Close()
	if obj.Info.ETag != base.ETag || obj.Info.Size != base.Size {
		return fmt.Errorf("%w: %s/%s changed while open for writing; open it again", syscall.ESTALE, w.bucket, w.key)
	}
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(obj.Body, buf)
		if n > 0 {
			if err := w.push(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// failed records the failure of the upload under way: it is aborted and
// every later write or commit fails the same way, until truncate to 0.
func (w *writer) failed(op string, err error) syscall.Errno {
	w.err = err
	w.abort()
	return w.f.fail(op, w.bucket, w.key, err)
}

// push appends p to the upload under way.
func (w *writer) push(p []byte) error {
	if w.uploadID == "" {
		if len(w.small)+len(p) <= smallMax {
			w.small = append(w.small, p...)
			return nil
		}
		id, err := w.f.b.CreateUpload(w.f.ctx, w.bucket, w.key, w.putOptions())
		if err != nil {
			return err
		}
		w.uploadID = id
		small := w.small
		w.small = nil
		if err := w.pushPart(small); err != nil {
			return err
		}
	}
	return w.pushPart(p)
}

// pushPart streams p into the parts, a new one every PartSize bytes.
func (w *writer) pushPart(p []byte) error {
	for len(p) > 0 {
		if w.part == nil {
			w.startPart()
		}
		n := min(int64(len(p)), w.f.opts.PartSize-w.part.n)
		if _, err := w.part.pw.Write(p[:n]); err != nil {
			return err
		}
		w.part.n += n
		p = p[n:]
		if w.part.n == w.f.opts.PartSize {
			if err := w.endPart(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *writer) startPart() {
	pr, pw := io.Pipe()
	ps := &partStream{number: len(w.parts) + 1, pw: pw, done: make(chan partResult, 1)}
	bucket, key, id := w.bucket, w.key, w.uploadID
	go func() {
		info, err := w.f.b.UploadPart(w.f.ctx, bucket, key, id, ps.number, pr, -1, store.PartOptions{BlockTag: true})
		pr.CloseWithError(err) // fails the writes still blocked on the pipe with the cause
		ps.done <- partResult{info, err}
	}()
	w.part = ps
}

// endPart closes the part's pipe and waits for the part to be stored.
func (w *writer) endPart() error {
	ps := w.part
	w.part = nil
	ps.pw.Close()
	r := <-ps.done
	if r.err != nil {
		return r.err
	}
	w.parts = append(w.parts, store.CompletePart{Number: ps.number, ETag: r.info.ETag})
	return nil
}

func (w *writer) putOptions() store.PutOptions {
	return store.PutOptions{ContentType: mime.TypeByExtension(path.Ext(w.key))}
}

// commit stores the file as written, if it changed since the last
// commit. It runs on every flush (close) and fsync.
func (w *writer) commit() syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return errnoOf(w.err)
	}
	if !w.dirty {
		return 0
	}
	if w.unlinked {
		w.abort()
		w.dirty = false
		return 0
	}
	var info store.ObjectInfo
	var err error
	if w.uploadID == "" {
		info, err = w.f.b.Put(w.f.ctx, w.bucket, w.key, bytes.NewReader(w.small), int64(len(w.small)), w.putOptions())
	} else {
		if w.part != nil {
			err = w.endPart()
		}
		if err == nil {
			info, err = w.f.b.CompleteUpload(w.f.ctx, w.bucket, w.key, w.uploadID, w.parts)
		}
	}
	if err != nil {
		return w.failed("commit", err)
	}
	w.uploadID, w.parts, w.small = "", nil, nil
	w.base, w.size, w.mtime, w.dirty = &info, info.Size, info.Modified, false
	return 0
}

// truncate sets the file's size: 0 starts it over; its own size is a
// no-op; a larger size zero-fills. Anything else would rewrite stored
// bytes: EOPNOTSUPP.
func (w *writer) truncate(size int64) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case size == 0:
		w.abort()
		w.base, w.err, w.size, w.dirty, w.mtime = nil, nil, 0, true, time.Now()
		return 0
	case w.err != nil:
		return errnoOf(w.err)
	case size == w.size:
		return 0
	case size > w.size:
		if err := w.extend(size); err != nil {
			return w.failed("truncate", err)
		}
		w.mtime = time.Now()
		return 0
	}
	w.f.log.Info("storefs: truncate to a size other than 0 refused; objects are written whole", "bucket", w.bucket, "key", w.key, "size", size)
	return syscall.EOPNOTSUPP
}

// abort drops the upload under way. The caller holds w.mu.
func (w *writer) abort() {
	if w.part != nil {
		w.part.pw.CloseWithError(errAborted)
		<-w.part.done
		w.part = nil
	}
	if w.uploadID != "" {
		if err := w.f.b.AbortUpload(context.Background(), w.bucket, w.key, w.uploadID); err != nil && !errors.Is(err, store.ErrNoSuchUpload) {
			w.f.log.Warn("storefs: aborting an upload failed", "bucket", w.bucket, "key", w.key, "err", err)
		}
		w.uploadID = ""
	}
	w.parts, w.small = nil, nil
}
