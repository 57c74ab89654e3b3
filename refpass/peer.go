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

// open verifies a pull or take on the holder and takes one read.
func (h holder) open(token, reader string) (*Payload, error) {
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
		return nil, err
	}
	return s.openLocal(rf)
}

// Pull serves one read. The bytes leave only once their content is fixed;
// a checksum not yet known is computed while they are sent when the puller
// takes a trailer (one pass), else in a pass before them.
func (h holder) Pull(ctx context.Context, req peerlink.Request) (peerlink.Pulled, error) {
	s := h.s
	p, err := h.open(req.Ref, req.Reader)
	if err != nil {
		return peerlink.Pulled{}, err
	}
	pd := peerlink.Pulled{Payload: p, Size: p.Ref.Size, ReadsLeft: p.rd.Info().ReadsLeft}
	if sum, ok := s.knownSum(p.rd); ok {
		pd.Checksum = sum // the content was fixed when the sum was taken
	} else if req.Trailer && p.Ref.Reads == 1 {
		// The one read of the reference: the bytes go out at once, while
		// the sender unmaps and the write seal is added (20-200 ms from
		// 64 MiB to 1 GiB here), since the seal is what keeps several
		// reads equal and there is no other read. The trailer's checksum
		// covers exactly the bytes sent: a sender that writes into a
		// buffer after sharing it garbles only its own hand-over, and the
		// sum is not remembered for anyone else.
		pd.Unsummed = true
	} else if req.Trailer {
		// Every read must get the same bytes: they leave once the content
		// is fixed. The answer goes out at once, and the puller allocates
		// its copy while the sender's unmap and the write seal finish here.
		id := p.rd.Info().ID
		pd.Unsummed = true
		pd.Wait = func(ctx context.Context) error { return s.fixed(ctx, p.rd) }
		pd.Summed = func(sum uint32) { s.rememberSum(id, sum) }
	} else if pd.Checksum, err = s.checksum(ctx, p.rd); err != nil {
		p.Close()
		return peerlink.Pulled{}, err
	}
	s.stats.Served.Add(1)
	s.stats.ServedBytes.Add(p.Ref.Size)
	return pd, nil
}

// Take accounts one read for a node that serves it from its own copy.
func (h holder) Take(ctx context.Context, token, reader string) (uint32, error) {
	p, err := h.open(token, reader)
	if err != nil {
		return 0, err
	}
	p.Close()
	h.s.stats.Taken.Add(1)
	return p.rd.Info().ReadsLeft, nil
}

func (h holder) Adopt(ctx context.Context, req peerlink.Request, body io.Reader) error {
	return h.s.adopt(ctx, req, body)
}

// pull opens a payload held by another node, streaming.
func (s *Service) pull(ctx context.Context, r ref.Ref, token, reader string) (*Payload, error) {
	body, ans, err := s.startPull(ctx, r, token, reader)
	if err != nil {
		return nil, err
	}
	v := &verifying{r: &counting{r: body, n: &s.stats.PullBytes}, want: r.Checksum, left: r.Size}
	if r.Deferred {
		// The holder computed it from its sealed copy (in its answer, or
		// after the bytes); the bytes are checked against it after their
		// trip.
		v.want = ans.Checksum
		if ans.Trailer {
			v.trailer = body
		}
	}
	return &Payload{Ref: r, r: v, c: body}, nil
}

// startPull asks the holder for a read, retrying for a few seconds while
// it is draining or its adopter is not yet known.
func (s *Service) startPull(ctx context.Context, r ref.Ref, token, reader string) (*peerlink.Body, peerlink.Answer, error) {
	deadline := s.cfg.Clock.Now().Add(5 * time.Second)
	for {
		body, ans, err := s.startPullOnce(ctx, r, token, reader)
		retry := errors.Is(err, errDraining) || errors.Is(err, ErrUnreachable)
		if err == nil || !retry || s.cfg.Clock.Now().After(deadline) {
			if err != nil {
				s.stats.Refused.Add(1)
			}
			return body, ans, err
		}
		select {
		case <-ctx.Done():
			return nil, peerlink.Answer{}, ctx.Err()
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

// holderError rebuilds the holder's refusal, so errors.Is works across the
// network.
func holderError(err error, r ref.Ref, addr string) error {
	var re *peerlink.RemoteError
	if errors.As(err, &re) {
		if base, ok := sentinel[re.Code]; ok {
			return fmt.Errorf("%w (holder %s: %s)", base, r.Holder, re.Message)
		}
		return fmt.Errorf("%w: holder %s refused: %s", ErrUnreachable, r.Holder, re.Message)
	}
	return fmt.Errorf("%w: holder %s at %s: %v", ErrUnreachable, r.Holder, addr, err)
}

func (s *Service) startPullOnce(ctx context.Context, r ref.Ref, token, reader string) (*peerlink.Body, peerlink.Answer, error) {
	addr, err := s.peerAddr(r.Holder)
	if err != nil {
		return nil, peerlink.Answer{}, err
	}
	body, ans, err := s.link.Pull(ctx, addr, token, reader)
	if err != nil {
		return nil, ans, holderError(err, r, addr)
	}
	sumOK := ans.Checksum == r.Checksum || r.Deferred || ans.Trailer
	if ans.Size != r.Size || !sumOK {
		body.Close()
		return nil, ans, fmt.Errorf("%w: holder %s announced %d bytes (crc32c %08x) for a reference to %d bytes (%s)", ErrChecksum, r.Holder, ans.Size, ans.Checksum, r.Size, r)
	}
	s.stats.Pulls.Add(1)
	return body, ans, nil
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
