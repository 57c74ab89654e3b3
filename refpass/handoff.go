package refpass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/ref"
)

// Handoff moves every unread buffer to another member before this node
// exits, so that references it signed keep working: the adopter stores each
// under the same id with the reads that were left, and answers pulls for
// this node's id (the control plane points this node's id at it). From the
// call on, this node refuses pulls with "draining" (pullers retry and find
// the adopter).
//
// It returns how many buffers moved. With no other member, the buffers are
// lost and the error says so.
func (s *Service) Handoff(ctx context.Context) (int, error) {
	s.draining.Store(true)
	// Copies of payloads held elsewhere (broadcast) are not this node's to
	// hand over: their holders still have them.
	s.mu.Lock()
	copies := s.copies
	s.copies = map[string]*localCopy{}
	s.mu.Unlock()
	for key, c := range copies {
		select {
		case <-c.ready:
			s.forget(key, c)
		case <-ctx.Done(): // its pull fails as the node goes
		}
	}
	infos := s.cfg.Store.List()
	if len(infos) == 0 {
		return 0, nil
	}
	to := s.successor()
	if to == "" {
		return 0, fmt.Errorf("refpass: node %s is leaving with %d unread buffer(s) and no other member to hand them to; their references will fail", s.cfg.Node, len(infos))
	}
	moved := 0
	var errs []error
	for _, info := range infos {
		if err := s.handOne(ctx, to, info); err != nil {
			errs = append(errs, fmt.Errorf("buffer %s: %w", info.ID, err))
			continue
		}
		moved++
	}
	s.log.Info("handed unread buffers to a peer", "to", to, "moved", moved, "failed", len(errs))
	return moved, errors.Join(errs...)
}

// successor picks the member that adopts this node's buffers: the first
// other member by id, so every draining node of a cluster agrees.
func (s *Service) successor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.peers))
	for id := range s.peers {
		if id != s.cfg.Node {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

func (s *Service) handOne(ctx context.Context, to string, info buffer.Info) error {
	rd, err := s.cfg.Store.Open(info.ID)
	if err != nil {
		return nil // read or expired meanwhile: nothing to move
	}
	defer rd.Close()
	addr, err := s.peerAddr(to)
	if err != nil {
		return err
	}
	sum, err := s.checksum(ctx, rd)
	if err != nil {
		return err
	}
	err = s.link.Adopt(ctx, addr, peerlink.Request{
		Holder: s.cfg.Node, Buffer: info.ID.String(), ReadsLeft: info.ReadsLeft,
		Expires: info.Expires.Unix(), Issuer: info.Issuer, Size: info.Size, Checksum: sum,
	}, rd, rd.File())
	if err != nil {
		return fmt.Errorf("hand to %s: %w", to, err)
	}
	_ = s.cfg.Store.Free(info.ID)
	return nil
}

// adopt stores a draining member's buffer under its own id, so the
// references that member signed keep working here.
func (s *Service) adopt(ctx context.Context, req peerlink.Request, body io.Reader) error {
	id, err := buffer.ParseID(req.Buffer)
	if err != nil || req.ReadsLeft == 0 || req.Holder == "" || req.Size < 0 {
		return fmt.Errorf("%w: adopt request with missing or bad fields", ref.ErrMalformed)
	}
	info, err := s.cfg.Store.Put(ctx, body, req.Size, buffer.Meta{
		ID: id, Reads: req.ReadsLeft, Expires: time.Unix(req.Expires, 0), Issuer: req.Issuer,
	})
	if err != nil {
		return err
	}
	if info.Checksum != req.Checksum {
		_ = s.cfg.Store.Free(id)
		return fmt.Errorf("%w: adopted buffer %s has crc32c %08x, its holder says %08x", ErrChecksum, id, info.Checksum, req.Checksum)
	}
	s.mu.Lock()
	s.aliases[req.Holder] = true
	s.mu.Unlock()
	s.stats.Adopted.Add(1)
	return nil
}

// Adopted lists the members whose buffers this node holds, for the control
// plane's directory.
func (s *Service) Adopted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.aliases))
	for id := range s.aliases {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
