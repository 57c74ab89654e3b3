package buffer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/internal/crc32c"
	"github.com/handoff-dev/handoff/memfd"
)

const (
	// copyChunk is the size of the writes into a buffer: large enough that
	// system calls cost little next to the copying, small enough to stay
	// near the CPU caches and to check ctx often.
	copyChunk = 1 << 20
	// reserveStep is how much a Put of unknown size reserves at a time.
	// Bigger steps mean fewer trips through the budget's lock; the excess
	// of the last step is given back when the Put ends.
	reserveStep = 4 << 20
)

// copyBufs recycles the copy buffers of Puts and Readers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// errNoRoom is the budget's "no" inside the package: the wait ran out, or
// the request exceeds the whole budget. Put turns it into a spill or
// ErrFull.
var errNoRoom = errors.New("buffer: no room in the memory budget")

// Put reads a payload from r into a new buffer and returns its Info.
//
// A size >= 0 is the exact length: the memory is reserved and allocated
// (fallocate) up front, and a reader yielding more or fewer bytes fails
// with ErrSize. A size of -1
// means unknown: memory is reserved in steps as bytes arrive, and when the
// budget runs out midway, what was written moves to a spill file (one
// copy) and the Put continues there.
//
// When the budget has no room within Config.Wait, the payload goes to a
// spill file in Config.SpillDir, or Put fails with ErrFull when there is
// none. A payload larger than the whole budget spills at once.
//
// Put computes the CRC-32C while writing and seals the memfd before
// returning, so the bytes cannot change afterwards. ctx cancels the
// waiting and the copying between chunks; a Read of r that blocks is up to
// r (an HTTP request body, for one, ends when its request's context does).
// On any error nothing is kept and the reserved memory is given back.
// Errors wrap ErrInvalid, ErrExists, ErrSize, ErrFull, ErrClosed, ctx's
// error, or r's.
func (s *Store) Put(ctx context.Context, r io.Reader, size int64, m Meta) (Info, error) {
	info, err := s.put(ctx, r, size, m)
	if err != nil {
		s.refused(err)
		return Info{}, err
	}
	return info, nil
}

func (s *Store) put(ctx context.Context, r io.Reader, size int64, m Meta) (Info, error) {
	if err := s.check(&m, size); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	p := &put{
		s:        s,
		ctx:      ctx,
		id:       m.ID,
		size:     size,
		deadline: s.cfg.Clock.Now().Add(s.cfg.Wait),
	}
	defer p.abort()
	if err := p.begin(); err != nil {
		return Info{}, err
	}

	// Hide r's WriterTo: io.CopyBuffer would hand it p and let r choose
	// the write size, which for a net.Conn means 32 KiB writes.
	src := io.Reader(struct{ io.Reader }{r})
	if limit := p.limit(); limit >= 0 {
		src = io.LimitReader(r, limit+1) // one byte more, to notice an overlong reader
	}
	bufp := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(p, src, *bufp)
	copyBufs.Put(bufp)
	if err != nil {
		return Info{}, err
	}
	if size >= 0 && p.written != size {
		return Info{}, fmt.Errorf("%w: the payload ended after %d bytes, but %d were declared; send the exact length, or -1 if unknown", ErrSize, p.written, size)
	}
	return p.commit(m)
}

// check validates m and size for Put and Adopt, and gives m an id if it
// has none.
func (s *Store) check(m *Meta, size int64) error {
	switch {
	case size < -1:
		return fmt.Errorf("%w: size %d; use the payload's length, or -1 if unknown", ErrInvalid, size)
	case s.cfg.MaxSize > 0 && size > s.cfg.MaxSize:
		return fmt.Errorf("%w: payload of %d bytes exceeds the limit of %d (Config.MaxSize)", ErrSize, size, s.cfg.MaxSize)
	case m.Reads == 0:
		return fmt.Errorf("%w: Meta.Reads is 0; allow at least one read", ErrInvalid)
	case m.Expires.IsZero():
		return fmt.Errorf("%w: Meta.Expires is unset; set it from the clock plus a ttl", ErrInvalid)
	case !s.cfg.Clock.Now().Before(m.Expires):
		return fmt.Errorf("%w: Meta.Expires %s has passed; the payload would be dropped at once", ErrInvalid, m.Expires.UTC().Format(time.RFC3339))
	}
	if m.ID.IsZero() {
		m.ID = newID()
		return nil
	}
	// Fail before copying a payload that could not be kept; insertLocked
	// checks again.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: payload not kept", ErrClosed)
	}
	if s.index[m.ID] != nil {
		return fmt.Errorf("%w: buffer %s is already held here; a buffer id is used once", ErrExists, m.ID)
	}
	return nil
}

// refused counts a Put or Adopt that failed for want of memory.
func (s *Store) refused(err error) {
	if errors.Is(err, ErrFull) {
		s.mu.Lock()
		s.stats.Refusals++
		s.mu.Unlock()
	}
}

// put is one Put in progress: where its bytes go and what it holds. It is
// the io.Writer the payload is copied into.
type put struct {
	s        *Store
	ctx      context.Context
	id       ID
	size     int64     // declared size, or -1
	deadline time.Time // the end of all waiting for memory

	f        *os.File // memfd, or the spill file once spilled
	spilled  bool
	reserved int64 // budget bytes held for f; 0 once spilled
	written  int64
	crc      uint32
	kept     bool // committed: abort does nothing
}

// limit is the most bytes the payload may have, or -1 for no limit.
func (p *put) limit() int64 {
	switch {
	case p.size >= 0:
		return p.size
	case p.s.cfg.MaxSize > 0:
		return p.s.cfg.MaxSize
	}
	return -1
}

// begin makes the memfd and, for a known size, reserves all of it: or,
// when the budget has no room in time, opens a spill file instead.
func (p *put) begin() error {
	if p.size > 0 {
		if err := p.s.reserve(p.ctx, p.size, p.deadline); err != nil {
			if err != errNoRoom {
				return err
			}
			return p.spill(fmt.Sprintf("%d bytes", p.size))
		}
		p.reserved = p.size
	}
	f, err := memfd.Create("handoff-buffer-" + p.id.String())
	if err != nil {
		return err
	}
	p.f = f
	// A known size gets its pages in one call rather than one write at a
	// time (the reservation above already counts them).
	return memfd.Allocate(f, p.size)
}

// Write copies b into the buffer, reserving more memory first when the
// size is unknown.
func (p *put) Write(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n := int64(len(b))
	if limit := p.limit(); limit >= 0 && p.written+n > limit {
		if p.size >= 0 {
			return 0, fmt.Errorf("%w: the payload is longer than the %d bytes declared", ErrSize, p.size)
		}
		return 0, fmt.Errorf("%w: payload exceeds the limit of %d bytes (Config.MaxSize)", ErrSize, limit)
	}
	if !p.spilled && p.written+n > p.reserved {
		if err := p.grow(p.written + n - p.reserved); err != nil {
			return 0, err
		}
	}
	w, err := p.f.Write(b)
	p.crc = crc32c.Update(p.crc, b[:w])
	p.written += int64(w)
	if err != nil && p.spilled {
		return w, fmt.Errorf("%w: writing spill file in %s: %w", ErrFull, p.s.cfg.SpillDir, err)
	}
	return w, err
}

// grow reserves at least need more bytes for a Put of unknown size. It
// takes a whole step when that fits at once, else waits for need; when
// the wait runs out the Put moves to a spill file.
func (p *put) grow(need int64) error {
	step := min(int64(reserveStep), p.s.cfg.Memory/4)
	if limit := p.limit(); limit >= 0 {
		step = min(step, limit-p.reserved)
	}
	if step > need && p.s.tryReserve(step) {
		p.reserved += step
		return nil
	}
	err := p.s.reserve(p.ctx, need, p.deadline)
	if err == nil {
		p.reserved += need
		return nil
	}
	if err != errNoRoom {
		return err
	}
	return p.spill(fmt.Sprintf("more than %d bytes", p.written))
}

// spill moves the Put to a file in SpillDir: it copies what was written
// so far, gives the memory back and continues in the file. Without a
// SpillDir it fails with ErrFull; a failing spill, too.
func (p *put) spill(what string) error {
	dir := p.s.cfg.SpillDir
	if dir == "" {
		return fmt.Errorf("%w: no room for %s within %v (budget %d bytes); retry later, raise the node's buffer memory, or configure a spill directory",
			ErrFull, what, p.s.cfg.Wait, p.s.cfg.Memory)
	}
	sf, err := openSpill(dir, p.id)
	if err != nil {
		return fmt.Errorf("%w: no room in memory for %s, and the spill file failed: %w", ErrFull, what, err)
	}
	if p.written > 0 {
		bufp := copyBufs.Get().(*[]byte)
		_, err = io.CopyBuffer(struct{ io.Writer }{sf}, io.NewSectionReader(p.f, 0, p.written), *bufp)
		copyBufs.Put(bufp)
		if err != nil {
			sf.Close()
			return fmt.Errorf("%w: moving %d bytes to a spill file in %s: %w", ErrFull, p.written, dir, err)
		}
	}
	if p.f != nil {
		p.f.Close()
	}
	p.s.release(p.reserved)
	p.f, p.spilled, p.reserved = sf, true, 0
	return nil
}

// openSpill makes an unlinked file in dir, so that nothing is left behind
// whatever happens to the process.
//
// The file's mode is read-only (0400): unlike a memfd it cannot be
// sealed, and a process of the same user that is handed a Reader's
// descriptor could otherwise reopen it writable through /proc. (Root
// ignores the mode; so do not hand spilled buffers to processes running
// as root.)
func openSpill(dir string, id ID) (*os.File, error) {
	name := filepath.Join(dir, "handoff-buffer-"+id.String())
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o400)
	if err == nil {
		return os.NewFile(uintptr(fd), name+" (unlinked)"), nil
	}
	if err != unix.EOPNOTSUPP && err != unix.EISDIR && err != unix.EINVAL {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	// The file system (or an old kernel) has no O_TMPFILE: create and
	// unlink at once. A crash between the two leaves a file behind.
	f, err := os.CreateTemp(dir, "handoff-buffer-"+id.String()+"-*")
	if err != nil {
		return nil, err
	}
	if err := errors.Join(f.Chmod(0o400), os.Remove(f.Name())); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// commit seals the buffer, gives back unused memory and enters it into
// the index.
func (p *put) commit(m Meta) (Info, error) {
	if !p.spilled {
		if err := memfd.Seal(p.f); err != nil {
			return Info{}, err
		}
		p.s.release(p.reserved - p.written)
		p.reserved = p.written
	}
	e := &entry{
		info: Info{Meta: m, Size: p.written, Checksum: p.crc, Spilled: p.spilled, ReadsLeft: m.Reads},
		f:    p.f,
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if err := p.s.insertLocked(e); err != nil {
		return Info{}, err
	}
	// From here the entry owns p's file and reservation.
	p.kept = true
	p.s.stats.Puts++
	if p.spilled {
		p.s.stats.Spills++
	}
	return e.info, nil
}

// abort drops everything a Put that failed holds.
func (p *put) abort() {
	if p.kept {
		return
	}
	if p.f != nil {
		p.f.Close()
	}
	p.s.release(p.reserved)
}
