package refpass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/ref"
)

// Status maps an error of Open, Put or a pull to an HTTP status and a stable
// code for the edges (node APIs, gateway).
func Status(err error) (int, string) {
	switch {
	case errors.Is(err, ref.ErrMalformed):
		return http.StatusBadRequest, "ref_malformed"
	case errors.Is(err, ref.ErrUnknownKey), errors.Is(err, ref.ErrBadSignature):
		return http.StatusForbidden, "ref_forged"
	case errors.Is(err, ref.ErrWrongReader):
		return http.StatusForbidden, "ref_wrong_reader"
	case errors.Is(err, ref.ErrExpired):
		return http.StatusGone, "ref_expired"
	case errors.Is(err, ref.ErrExhausted), errors.Is(err, buffer.ErrExhausted):
		return http.StatusGone, "ref_exhausted"
	case errors.Is(err, buffer.ErrNotFound):
		return http.StatusNotFound, "ref_gone"
	case errors.Is(err, ref.ErrInvalid):
		return http.StatusBadRequest, "ref_invalid"
	case errors.Is(err, buffer.ErrFull):
		return http.StatusInsufficientStorage, "buffers_full"
	case errors.Is(err, buffer.ErrSize):
		return http.StatusRequestEntityTooLarge, "payload_size"
	case errors.Is(err, ErrChecksum):
		return http.StatusBadGateway, "checksum_mismatch"
	case errors.Is(err, ErrUnreachable):
		return http.StatusBadGateway, "holder_unreachable"
	case errors.Is(err, errDraining):
		return http.StatusServiceUnavailable, "holder_draining"
	}
	return http.StatusInternalServerError, "internal"
}

// sentinel is the error a pulling node rebuilds from the holder's code, so
// errors.Is works across the network.
var sentinel = map[string]error{
	"ref_malformed":    ref.ErrMalformed,
	"ref_forged":       ref.ErrBadSignature,
	"ref_wrong_reader": ref.ErrWrongReader,
	"ref_expired":      ref.ErrExpired,
	"ref_exhausted":    ref.ErrExhausted,
	"ref_gone":         buffer.ErrNotFound,
	"holder_draining":  errDraining,
}

var errDraining = errors.New("refpass: holder is handing its buffers to a peer")

// Server returns the holder side of the peer protocol; serve it on a TCP
// listener of its own. clear allows payloads in the clear (see peerlink).
func (s *Service) Server(clear bool) *peerlink.Server {
	return &peerlink.Server{
		Handler: holder{s},
		TLS:     s.cfg.Member.ServerConfig(),
		Clear:   clear,
		Code:    func(err error) string { _, code := Status(err); return code },
		Logger:  s.log,
	}
}

// holder answers the peer protocol for a Service.
type holder struct{ s *Service }

func (h holder) Pull(ctx context.Context, token, reader string) (peerlink.Payload, int64, uint32, error) {
	s := h.s
	rf, err := s.verify(token, reader)
	if err == nil && !s.holds(rf.Holder) {
		err = fmt.Errorf("%w: node %s does not hold buffers of %s; pull from the holder", buffer.ErrNotFound, s.cfg.Node, rf.Holder)
	}
	if err == nil && s.draining.Load() {
		err = fmt.Errorf("%w: node %s is draining; retry in a moment", errDraining, s.cfg.Node)
	}
	if err != nil {
		s.stats.Refused.Add(1)
		return nil, 0, 0, err
	}
	p, err := s.openLocal(rf)
	if err != nil {
		return nil, 0, 0, err
	}
	sum, err := s.checksum(ctx, p.rd)
	if err != nil {
		p.Close()
		return nil, 0, 0, err
	}
	s.stats.Served.Add(1)
	s.stats.ServedBytes.Add(rf.Size)
	return p, rf.Size, sum, nil
}

func (h holder) Adopt(ctx context.Context, req peerlink.Request, body io.Reader) error {
	return h.s.adopt(ctx, req, body)
}

// pull opens a payload held by another node, retrying for a few seconds
// while its holder is draining or its adopter is not yet known.
func (s *Service) pull(ctx context.Context, r ref.Ref, token, reader string) (*Payload, error) {
	deadline := s.cfg.Clock.Now().Add(5 * time.Second)
	for {
		p, err := s.pullOnce(ctx, r, token, reader)
		retry := errors.Is(err, errDraining) || errors.Is(err, ErrUnreachable)
		if err == nil || !retry || s.cfg.Clock.Now().After(deadline) {
			if err != nil {
				s.stats.Refused.Add(1)
			}
			return p, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.cfg.Clock.After(100 * time.Millisecond):
		}
	}
}

// peerAddr resolves a holder to the address it is pulled from.
func (s *Service) peerAddr(holder string) (string, error) {
	if s.link == nil {
		return "", fmt.Errorf("%w: node %s has no cluster identity (TLS) and cannot pull from %s", ErrUnreachable, s.cfg.Node, holder)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	addr, ok := s.peers[holder]
	if !ok {
		return "", fmt.Errorf("%w: holder %s is not in this node's directory of %d members; it left before its buffers were handed over, or the directory is not yet current", ErrUnreachable, holder, len(s.peers))
	}
	return addr, nil
}

func (s *Service) pullOnce(ctx context.Context, r ref.Ref, token, reader string) (*Payload, error) {
	addr, err := s.peerAddr(r.Holder)
	if err != nil {
		return nil, err
	}
	body, ans, err := s.link.Pull(ctx, addr, token, reader)
	if err != nil {
		var re *peerlink.RemoteError
		if errors.As(err, &re) {
			if base, ok := sentinel[re.Code]; ok {
				return nil, fmt.Errorf("%w (holder %s: %s)", base, r.Holder, re.Message)
			}
			return nil, fmt.Errorf("%w: holder %s refused the pull: %s", ErrUnreachable, r.Holder, re.Message)
		}
		return nil, fmt.Errorf("%w: pull from holder %s at %s: %v", ErrUnreachable, r.Holder, addr, err)
	}
	want := r.Checksum
	if r.Deferred {
		// The holder computed it from its sealed copy; the bytes are
		// checked against it after their trip.
		want = ans.Checksum
	}
	if ans.Size != r.Size || ans.Checksum != want {
		body.Close()
		return nil, fmt.Errorf("%w: holder %s announced %d bytes (crc32c %08x) for a reference to %d bytes (%s)", ErrChecksum, r.Holder, ans.Size, ans.Checksum, r.Size, r)
	}
	s.stats.Pulls.Add(1)
	return &Payload{Ref: r, r: &verifying{r: &counting{r: body, n: &s.stats.PullBytes}, want: want, left: r.Size}, c: body}, nil
}

type counting struct {
	r io.Reader
	n interface{ Add(int64) int64 }
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
