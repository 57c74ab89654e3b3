package refpass

import (
	"context"
	"fmt"

	"github.com/handoff-dev/handoff/buffer"
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
func (s *Service) Fetch(ctx context.Context, token, reader string) (*Payload, error) {
	r, err := s.verify(token, reader)
	if err != nil {
		s.stats.Refused.Add(1)
		return nil, err
	}
	if s.holds(r.Holder) {
		return s.openLocal(r)
	}
	info, err := s.land(ctx, r, token, reader, 1)
	if err != nil {
		return nil, err
	}
	return s.openCopy(r, info.ID)
}

// land pulls one read of r into a new buffer of this node's store that
// allows reads reads and expires with r, checks its checksum and returns
// it. It also returns the reads the holder says are left.
func (s *Service) land(ctx context.Context, r ref.Ref, token, reader string, reads uint32) (buffer.Info, error) {
	body, ans, err := s.startPull(ctx, r, token, reader)
	if err != nil {
		return buffer.Info{}, err
	}
	defer body.Close()
	info, err := s.cfg.Store.Put(ctx, &counting{r: body, n: &s.stats.PullBytes}, r.Size, buffer.Meta{Reads: reads, Expires: r.Expires, Issuer: r.Issuer})
	if err != nil {
		return buffer.Info{}, fmt.Errorf("refpass: landing %d bytes pulled from %s: %w", r.Size, r.Holder, err)
	}
	want := r.Checksum
	if r.Deferred {
		want = body.Checksum() // from the answer, or the trailer now read
	}
	if info.Checksum != want {
		_ = s.cfg.Store.Free(info.ID)
		return buffer.Info{}, fmt.Errorf("%w: got crc32c %08x, the holder says %08x; the payload was damaged in transit and was not delivered", ErrChecksum, info.Checksum, want)
	}
	_ = ans
	return info, nil
}

// openCopy opens one read of a local copy of r's payload.
func (s *Service) openCopy(r ref.Ref, id buffer.ID) (*Payload, error) {
	rd, err := s.cfg.Store.Open(id)
	if err != nil {
		return nil, describe(err, r)
	}
	return &Payload{Ref: r, r: rd, c: rd, f: rd.File(), rd: rd}, nil
}
