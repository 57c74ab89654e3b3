package refpass

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/ref"
)

// Fetch is Open for a receiver that needs the payload in this node's
// memory, to map it: a payload held elsewhere is pulled in full into this
// node's store, and its checksum checked, before Fetch returns. The
// Payload then reads the local buffer, and File is never nil.
//
// The pull lands straight in the store, which computes the CRC-32C as it
// writes: the bytes are passed over once on this side, where streaming
// them through Open into a Put would checksum them twice.
//
// A reference that allows more than one read is pulled to this node once
// and kept (see openShared).
func (s *Service) Fetch(ctx context.Context, token, reader string) (*Payload, error) {
	r, err := s.verify(token, reader)
	if err != nil {
		s.stats.Refused.Add(1)
		return nil, err
	}
	if s.holds(r.Holder) {
		return s.openLocal(r)
	}
	if r.Reads > 1 {
		return s.openShared(ctx, r, token, reader)
	}
	info, _, err := s.land(ctx, r, token, reader, false)
	if err != nil {
		return nil, err
	}
	return s.openCopy(r, info.ID)
}

// land pulls one read of r into a new buffer of this node's store that
// expires with r, checks its checksum and returns it with the reads the
// holder says are left. The buffer allows one read, or with keep one more
// for each read left, for openShared.
func (s *Service) land(ctx context.Context, r ref.Ref, token, reader string, keep bool) (buffer.Info, uint32, error) {
	body, ans, err := s.startPull(ctx, r, token, reader)
	if err != nil {
		return buffer.Info{}, 0, err
	}
	defer body.Close()
	reads := uint32(1)
	if keep {
		reads += min(ans.ReadsLeft, r.Reads-1) // a holder cannot widen the reference
	}
	info, err := s.cfg.Store.Put(ctx, &counting{r: body, n: &s.stats.PullBytes}, r.Size, buffer.Meta{Reads: reads, Expires: r.Expires, Issuer: r.Issuer})
	if err != nil {
		return buffer.Info{}, 0, fmt.Errorf("refpass: landing %d bytes pulled from %s: %w", r.Size, r.Holder, err)
	}
	want := r.Checksum
	if r.Deferred {
		want = body.Checksum() // from the answer, or the trailer now read
	}
	if info.Checksum != want {
		_ = s.cfg.Store.Free(info.ID)
		return buffer.Info{}, 0, fmt.Errorf("%w: got crc32c %08x, the holder says %08x; the payload was damaged in transit and was not delivered", ErrChecksum, info.Checksum, want)
	}
	return info, reads - 1, nil
}

// openCopy opens one read of a local copy of r's payload.
func (s *Service) openCopy(r ref.Ref, id buffer.ID) (*Payload, error) {
	rd, err := s.cfg.Store.Open(id)
	if err != nil {
		return nil, describe(err, r)
	}
	return &Payload{Ref: r, r: rd, c: rd, f: rd.File(), rd: rd}, nil
}

// Broadcast: a reference that allows several reads, read by receivers on
// this node, is pulled here once; every further read on this node is served
// from that copy. The holder still counts every read, since reads are a
// capability's budget: for each further read this node asks the holder to
// take one (peerlink "take": the holder verifies the reference and the
// reader as for a pull, and counts the read, but sends no bytes), and
// serves the copy only when the holder agreed. Budgets stay exact across
// nodes (no reads are granted ahead to a node that may not use them), and
// a take is one small round trip on a pooled connection where a pull moves
// the whole payload.
//
// The copy is a buffer of this node's store allowing as many reads as the
// holder had left at the pull, plus the first; it expires with the
// reference, and is freed when the holder answers that no reads are left
// (or that the buffer is gone), or when this node served its last read.
// Only a reader that this node verified (signature, expiry, reader) and
// whose read the holder took ever reaches it.

// localCopy is this node's copy of a payload held elsewhere.
type localCopy struct {
	ready chan struct{} // closed when the first pull ended
	id    buffer.ID     // the copy in the store; zero when the pull kept none
}

// errNoCopy means a copy vanished (freed or expired) before it could be
// read; the caller pulls again.
var errNoCopy = errors.New("refpass: local copy gone")

// openShared opens one read of r from this node's copy, pulling the copy
// first when there is none.
func (s *Service) openShared(ctx context.Context, r ref.Ref, token, reader string) (*Payload, error) {
	key := r.Holder + "/" + buffer.ID(r.Buffer).String()
	for attempt := 0; ; attempt++ {
		if attempt >= 3 {
			// Copies keep vanishing under this reader: pull its read alone.
			info, _, err := s.land(ctx, r, token, reader, false)
			if err != nil {
				return nil, err
			}
			return s.openCopy(r, info.ID)
		}
		s.mu.Lock()
		c := s.copies[key]
		if c == nil {
			c = &localCopy{ready: make(chan struct{})}
			s.copies[key] = c
			s.mu.Unlock()
			return s.pullCopy(ctx, key, c, r, token, reader)
		}
		s.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.id.IsZero() {
			continue // that pull failed or kept nothing: pull now
		}
		p, err := s.readCopy(ctx, key, c, r, token, reader)
		if errors.Is(err, errNoCopy) {
			continue
		}
		return p, err
	}
}

// pullCopy pulls r into a new copy for key and opens the first read of it.
func (s *Service) pullCopy(ctx context.Context, key string, c *localCopy, r ref.Ref, token, reader string) (*Payload, error) {
	defer close(c.ready)
	info, left, err := s.land(ctx, r, token, reader, true)
	var p *Payload
	if err == nil {
		p, err = s.openCopy(r, info.ID) // before anyone else: the holder took this read
	}
	if err != nil || left == 0 {
		s.forget(key, c)
		return p, err
	}
	c.id = info.ID
	s.mu.Lock()
	s.copyIDs[info.ID] = true
	s.mu.Unlock()
	return p, nil
}

// readCopy serves one further read from c once the holder took it.
func (s *Service) readCopy(ctx context.Context, key string, c *localCopy, r ref.Ref, token, reader string) (*Payload, error) {
	// Pin the copy first: a read the holder takes is never lost to a copy
	// that vanished meanwhile.
	rd, err := s.cfg.Store.Open(c.id)
	if err != nil {
		s.forget(key, c)
		return nil, errNoCopy
	}
	left, err := s.take(ctx, r, token, reader)
	if err != nil {
		rd.Close()
		if errors.Is(err, errTakeUnknown) {
			// A holder from before take: pull every read.
			s.forget(key, c)
			info, _, err := s.land(ctx, r, token, reader, false)
			if err != nil {
				return nil, err
			}
			return s.openCopy(r, info.ID)
		}
		if errors.Is(err, buffer.ErrNotFound) || errors.Is(err, ref.ErrExhausted) || errors.Is(err, ref.ErrExpired) {
			s.forget(key, c)
		}
		return nil, err
	}
	if left == 0 {
		s.forget(key, c) // the last read: the copy goes when rd closes
	}
	s.stats.Copied.Add(1)
	return &Payload{Ref: r, r: rd, c: rd, f: rd.File(), rd: rd}, nil
}

// forget drops the copy for key and frees its buffer (open reads keep
// their bytes until they close).
func (s *Service) forget(key string, c *localCopy) {
	s.mu.Lock()
	if s.copies[key] == c {
		delete(s.copies, key)
	}
	id := c.id
	delete(s.copyIDs, id)
	s.mu.Unlock()
	if !id.IsZero() {
		_ = s.cfg.Store.Free(id)
	}
}

// errTakeUnknown means the holder does not know take.
var errTakeUnknown = errors.New("refpass: the holder cannot take reads without sending the bytes")

// take has the holder account one read of r for reader, retrying for a few
// seconds while it is draining or its adopter is not yet known, and
// returns the reads left.
func (s *Service) take(ctx context.Context, r ref.Ref, token, reader string) (uint32, error) {
	deadline := s.cfg.Clock.Now().Add(5 * time.Second)
	for {
		left, err := s.takeOnce(ctx, r, token, reader)
		retry := errors.Is(err, errDraining) || errors.Is(err, ErrUnreachable)
		if err == nil || !retry || s.cfg.Clock.Now().After(deadline) {
			if err != nil && !errors.Is(err, errTakeUnknown) {
				s.stats.Refused.Add(1)
			}
			return left, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-s.cfg.Clock.After(100 * time.Millisecond):
		}
	}
}

func (s *Service) takeOnce(ctx context.Context, r ref.Ref, token, reader string) (uint32, error) {
	addr, err := s.peerAddr(r.Holder)
	if err != nil {
		return 0, err
	}
	left, err := s.link.Take(ctx, addr, token, reader)
	var re *peerlink.RemoteError
	if errors.As(err, &re) && re.Code == "bad_request" {
		return 0, fmt.Errorf("%w: %s", errTakeUnknown, re.Message)
	}
	if err != nil {
		return 0, holderError(err, r, addr)
	}
	return left, nil
}
