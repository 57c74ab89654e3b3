package buffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

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

// AdoptLive is Adopt for a memfd its writer still maps: it fixes the size
// at once and adds the write seal as soon as the last writable mapping is
// gone (retrying in the background until then, or until the buffer goes).
// The buffer can be opened and its descriptor passed at once; WaitSealed
// waits for the content to be fixed, as a pull to another node or a
// checksum must. Handing over 1 GiB then costs no pass over its pages:
// unmapping and the write seal's page scan (about 100 ms per GiB on a VM)
// happen after the hand-over, not before.
func (s *Store) AdoptLive(f *os.File, size int64, checksum uint32, m Meta) (Info, error) {
	info, err := s.adoptWith(f, size, checksum, m, true)
	if err != nil {
		f.Close()
		s.refused(err)
		return Info{}, err
	}
	return info, nil
}

func (s *Store) adopt(f *os.File, size int64, checksum uint32, m Meta) (Info, error) {
	return s.adoptWith(f, size, checksum, m, false)
}

func (s *Store) adoptWith(f *os.File, size int64, checksum uint32, m Meta, live bool) (Info, error) {
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
	// A live memfd whose writer holds no writable mapping (filled with
	// write(2), or unmapped already) takes every seal at once, which
	// spares a goroutine polling for it (starting one wakes another
	// thread, a good part of a small hand-over's cost).
	err := memfd.Seal(f)
	if live && errors.Is(err, memfd.ErrMapped) {
		err = memfd.SealSize(f) // the write seal follows (sealLater)
	} else {
		live = false
	}
	if err != nil {
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
	if live {
		e.sealed = make(chan struct{})
	}
	s.mu.Lock()
	err = s.insertLocked(e)
	if err == nil {
		s.stats.Adopts++
		if live {
			e.refs++ // sealLater's, so the file stays open while it tries
		}
	}
	info := e.info
	s.mu.Unlock()
	if err != nil {
		s.release(size)
		return Info{}, err
	}
	if live {
		go s.sealLater(e)
	}
	return info, nil
}

// sealLater adds the write seal to a live-adopted memfd once its writer
// has unmapped it, polling (1 ms, backing off to 4 ms) until it succeeds
// or the buffer leaves the store. A failed attempt costs little (the kernel
// refuses at once while a writable mapping exists), and a pull to another
// node waits for the seal, so the poll stays fine-grained: unmapping 1 GiB
// takes 0.15-0.5 s on a VM, and a coarse poll would add to that.
func (s *Store) sealLater(e *entry) {
	defer func() {
		s.mu.Lock()
		toClose := s.unrefLocked(e)
		s.mu.Unlock()
		closeFiles(toClose)
	}()
	wait := time.Millisecond
	for {
		err := memfd.Seal(e.f)
		if err == nil || !errors.Is(err, memfd.ErrMapped) {
			s.mu.Lock()
			e.sealErr = err
			s.mu.Unlock()
			close(e.sealed)
			return
		}
		// Keep trying while anyone may still read the buffer: it is in the
		// index, or a Reader holds it (ours is the one ref left otherwise).
		s.mu.Lock()
		gone := s.closed || (e.gone != nil && e.refs == 1)
		if gone {
			e.sealErr = fmt.Errorf("%w: the buffer went before its writer unmapped it", ErrNotFound)
		}
		s.mu.Unlock()
		if gone {
			close(e.sealed)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 4*time.Millisecond)
	}
}

// WaitSealed waits until buffer id's content is fixed (at once for all but
// AdoptLive buffers whose writer has not yet unmapped them). It fails with
// ErrNotFound once the buffer is gone, or with ctx's error.
func (s *Store) WaitSealed(ctx context.Context, id ID) error {
	s.mu.Lock()
	e, toClose, err := s.lookupLocked(id)
	s.mu.Unlock()
	closeFiles(toClose)
	if err != nil {
		return err
	}
	return s.waitSealed(ctx, e, id)
}

// WaitSealed waits until the content this Reader reads is fixed; see
// Store.WaitSealed.
func (r *Reader) WaitSealed(ctx context.Context) error {
	return r.s.waitSealed(ctx, r.e, r.info.ID)
}

func (s *Store) waitSealed(ctx context.Context, e *entry, id ID) error {
	if e.sealed == nil {
		return nil
	}
	select {
	case <-e.sealed:
		s.mu.Lock()
		defer s.mu.Unlock()
		if e.sealErr != nil {
			return fmt.Errorf("%w: buffer %s could not be sealed: %w", ErrInvalid, id, e.sealErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("buffer %s: its writer still maps it writable, so its content is not fixed yet: %w", id, ctx.Err())
	}
}
