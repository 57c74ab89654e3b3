package buffer

import (
	"context"
	"fmt"
	"os"

	"github.com/handoff-dev/handoff/memfd"
)

// Adopt takes ownership of f, a memfd an instance filled and passed to the
// node agent, as a buffer of size bytes with the given CRC-32C, without
// copying it. Adopt seals f, checks that it is a memfd of exactly size
// bytes, and reserves size in the memory budget, waiting up to
// Config.Wait; it never spills, since spilling would be a copy.
//
// Adopt trusts checksum: it is an integrity check for the receiver, who
// verifies it against the bytes it reads, not a proof of authenticity;
// an instance that lies about it only makes its own receivers fail.
//
// On error f is closed and nothing is kept. Errors wrap ErrInvalid (with
// memfd.ErrNotMemfd, memfd.ErrNotSealable, or memfd.ErrMapped when the
// instance still has the memfd mapped writable), ErrSize, ErrExists,
// ErrFull or ErrClosed.
func (s *Store) Adopt(f *os.File, size int64, checksum uint32, m Meta) (Info, error) {
	info, err := s.adopt(f, size, checksum, m)
	if err != nil {
		f.Close()
		s.refused(err)
		return Info{}, err
	}
	return info, nil
}

func (s *Store) adopt(f *os.File, size int64, checksum uint32, m Meta) (Info, error) {
	if size < 0 {
		return Info{}, fmt.Errorf("%w: size %d; an adopted memfd has a known length", ErrInvalid, size)
	}
	if err := s.check(&m, size); err != nil {
		return Info{}, err
	}
	if ok, err := memfd.IsMemfd(f); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if !ok {
		return Info{}, fmt.Errorf("%w: %w: %s; pass a file made by memfd_create", ErrInvalid, memfd.ErrNotMemfd, f.Name())
	}
	// Seal before measuring: until then the instance could still resize it.
	if err := memfd.Seal(f); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("buffer: adopt %s: %w", f.Name(), err)
	}
	if fi.Size() != size {
		return Info{}, fmt.Errorf("%w: the memfd holds %d bytes, but %d were declared", ErrSize, fi.Size(), size)
	}
	if err := s.reserve(context.Background(), size, s.cfg.Clock.Now().Add(s.cfg.Wait)); err != nil {
		if err == errNoRoom {
			return Info{}, fmt.Errorf("%w: no room for %d bytes within %v (budget %d bytes); retry later, raise the node's buffer memory, or send the payload as a stream so it can spill",
				ErrFull, size, s.cfg.Wait, s.cfg.Memory)
		}
		return Info{}, err
	}
	e := &entry{
		info: Info{Meta: m, Size: size, Checksum: checksum, ReadsLeft: m.Reads},
		f:    f,
	}
	s.mu.Lock()
	err = s.insertLocked(e)
	if err == nil {
		s.stats.Adopts++
	}
	s.mu.Unlock()
	if err != nil {
		s.release(size)
		return Info{}, err
	}
	return e.info, nil
}
