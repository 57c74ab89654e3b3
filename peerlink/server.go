package peerlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// Payload is what a Handler gives for a pull. File, when not nil, is the
// payload's own descriptor at its start, for sendfile.
type Payload interface {
	io.Reader
	File() *os.File
	Close() error
}

// Pulled is one read a Handler opened for a pull.
type Pulled struct {
	Payload  Payload
	Size     int64
	Checksum uint32
	// Unsummed says the checksum is not known yet: the server computes it
	// while it sends the bytes and sends it as a trailer, then hands it to
	// Summed (when not nil) so that later pulls need no pass of their own.
	// Set it only when the request offered to take a trailer.
	Unsummed bool
	Summed   func(checksum uint32)
	// ReadsLeft is how many reads the reference allows after this one.
	ReadsLeft uint32
	// Wait, when not nil, is called after the answer went out and before
	// the first byte (only with Unsummed, whose answer needs no fixed
	// content): the puller prepares for the bytes, such as allocating
	// their memory, while the holder waits for them to be fixed. An error
	// drops the connection, which the puller sees as a payload cut short.
	Wait func(ctx context.Context) error
}

// Handler answers requests on the holder's side.
type Handler interface {
	// Pull opens one read of the payload behind req.Ref for req.Reader.
	Pull(ctx context.Context, req Request) (Pulled, error)
	// Take takes one read of the payload behind ref for reader without
	// sending its bytes, and says how many reads are left after it.
	Take(ctx context.Context, ref, reader string) (readsLeft uint32, err error)
	// Adopt stores a draining member's buffer read from body (req.Size
	// bytes).
	Adopt(ctx context.Context, req Request, body io.Reader) error
}

// StreamHandler takes workflow streams on the consumer's side.
type StreamHandler interface {
	// Accept checks that req names a channel this member waits for (it
	// may wait a little for the channel to be set up) and returns the
	// function that takes the stream. take owns c until it returns (it may
	// keep a duplicate of the socket): the raw TCP socket when the stream
	// travels in the clear, else the TLS connection. The stream ends when
	// the sender closes or half-closes.
	Accept(ctx context.Context, req Request) (take func(c net.Conn) error, err error)
}

// Server serves the peer protocol on a TCP listener, doing the TLS itself
// so that it keeps the TCP socket for clear payloads.
type Server struct {
	Handler Handler
	TLS     *tls.Config        // requires and verifies cluster client certificates
	Clear   bool               // this end allows clear payloads
	Code    func(error) string // an error's stable code (default "internal")
	Logger  *slog.Logger
	// Streams takes workflow streams; nil refuses them.
	Streams StreamHandler
	// Blocks serves the store's blocks (block.go); nil refuses them.
	Blocks BlockHandler

	mu    sync.Mutex // guards conns
	conns map[net.Conn]bool
}

// Serve accepts connections until ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	cfg := s.TLS.Clone()
	cfg.SessionTicketsDisabled = true // nothing may arrive unasked (see the package doc)
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.track(raw, true)
		go func() {
			defer s.track(raw, false)
			s.serveConn(raw, cfg)
		}()
	}
}

// Close closes every open connection (the listener is the caller's).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) track(c net.Conn, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[net.Conn]bool{}
	}
	if open {
		s.conns[c] = true
	} else {
		delete(s.conns, c)
	}
}

const (
	handshakeTimeout = 10 * time.Second
	idleTimeout      = 5 * time.Minute
)

func (s *Server) serveConn(raw net.Conn, cfg *tls.Config) {
	defer raw.Close()
	tc := tls.Server(raw, cfg)
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.logger().Debug("peer handshake refused", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	raw.SetDeadline(time.Time{})
	for {
		raw.SetReadDeadline(time.Now().Add(idleTimeout))
		var req Request
		if err := readFrame(tc, &req); err != nil {
			if errors.Is(err, ErrMalformed) {
				_ = writeFrame(tc, Answer{Code: "bad_request", Error: err.Error()})
			}
			return
		}
		raw.SetReadDeadline(time.Time{})
		var ok bool
		switch req.Op {
		case "pull":
			ok = s.pull(tc, raw, req)
		case "take":
			ok = s.take(tc, req)
		case "adopt":
			ok = s.adopt(tc, raw, req)
		case "stream":
			s.stream(tc, raw, req)
			return
		case "block-get", "block-put", "block-del":
			ok = s.block(tc, raw, req)
		default:
			ok = writeFrame(tc, Answer{Code: "bad_request", Error: fmt.Sprintf("peerlink: unknown op %q", req.Op)}) == nil
		}
		if !ok {
			return
		}
	}
}

func (s *Server) errAnswer(err error) Answer {
	code := "internal"
	if s.Code != nil {
		code = s.Code(err)
	}
	return Answer{Code: code, Error: err.Error()}
}

// pull answers one pull; false means the connection is unusable.
func (s *Server) pull(tc *tls.Conn, raw net.Conn, req Request) bool {
	pd, err := s.Handler.Pull(context.Background(), req)
	if err == nil && pd.Unsummed && !req.Trailer {
		pd.Payload.Close()
		err = errors.New("peerlink: the handler left a pull's checksum to a trailer the puller does not take")
	}
	if err != nil {
		return writeFrame(tc, s.errAnswer(err)) == nil
	}
	p, size := pd.Payload, pd.Size
	defer p.Close()
	clear := req.Clear && s.Clear
	ans := Answer{Size: size, Checksum: pd.Checksum, Clear: clear, Trailer: pd.Unsummed, ReadsLeft: pd.ReadsLeft}
	if err := writeFrame(tc, ans); err != nil {
		return false
	}
	var dst io.Writer = tc
	if clear {
		var g [1]byte
		if _, err := io.ReadFull(tc, g[:]); err != nil || g[0] != 'G' {
			return false
		}
		dst = raw
	}
	if pd.Unsummed {
		if pd.Wait != nil {
			if err := pd.Wait(context.Background()); err != nil {
				s.logger().Warn("pull dropped: its payload did not become ready", "err", err)
				return false
			}
		}
		sum, err := sendSummed(dst, p, size)
		if err != nil {
			// The puller sees the payload cut short (or the cause, when
			// only reading here failed and the socket still works).
			return false
		}
		if pd.Summed != nil {
			pd.Summed(sum)
		}
		return writeFrame(tc, Answer{Checksum: sum}) == nil
	}
	var n int64
	if clear {
		n, err = sendClear(raw, p, size)
	} else {
		n, err = copyBig(tc, io.LimitReader(p, size))
	}
	return err == nil && n == size
}

// sendSummed writes size bytes of p to dst and returns their CRC-32C,
// computed on each 1 MiB piece between reading it and writing it, while it
// is still in the CPU's cache: one pass over the bytes where a checksum
// pass and then sendfile would be two.
func sendSummed(dst io.Writer, p io.Reader, size int64) (uint32, error) {
	bp := bigBufs.Get().(*[]byte)
	defer bigBufs.Put(bp)
	buf := *bp
	var sum uint32
	for left := size; left > 0; {
		b := buf[:min(left, int64(len(buf)))]
		if _, err := io.ReadFull(p, b); err != nil {
			return 0, fmt.Errorf("peerlink: reading the payload, %d bytes before its end: %w", left, err)
		}
		sum = crc32c.Update(sum, b)
		if _, err := dst.Write(b); err != nil {
			return 0, err
		}
		left -= int64(len(b))
	}
	return sum, nil
}

// take answers a take; false means the connection is unusable.
func (s *Server) take(tc *tls.Conn, req Request) bool {
	left, err := s.Handler.Take(context.Background(), req.Ref, req.Reader)
	if err != nil {
		return writeFrame(tc, s.errAnswer(err)) == nil
	}
	return writeFrame(tc, Answer{ReadsLeft: left}) == nil
}

// sendClear writes size bytes of p on the TCP socket itself: with
// sendfile(2) when p has a descriptor.
func sendClear(raw net.Conn, p Payload, size int64) (int64, error) {
	if f := p.File(); f != nil {
		if rf, ok := raw.(io.ReaderFrom); ok {
			return rf.ReadFrom(&io.LimitedReader{R: f, N: size})
		}
	}
	return copyBig(raw, io.LimitReader(p, size))
}

// adopt stores a buffer a draining member sends; false means the
// connection is unusable.
func (s *Server) adopt(tc *tls.Conn, raw net.Conn, req Request) bool {
	if req.Size < 0 {
		return writeFrame(tc, Answer{Code: "bad_request", Error: "peerlink: adopt with a negative size"}) == nil
	}
	clear := req.Clear && s.Clear
	if err := writeFrame(tc, Answer{Clear: clear}); err != nil {
		return false
	}
	var src io.Reader = tc
	if clear {
		src = raw
	}
	body := &io.LimitedReader{R: src, N: req.Size}
	err := s.Handler.Adopt(context.Background(), req, body)
	if body.N > 0 {
		// The handler stopped early: skip the rest to stay in step, or
		// give the connection up.
		if _, cerr := io.Copy(io.Discard, body); cerr != nil || body.N > 0 {
			return false
		}
	}
	if err != nil {
		return writeFrame(tc, s.errAnswer(err)) == nil
	}
	return writeFrame(tc, Answer{}) == nil
}

// stream hands the rest of the connection to the stream handler; the
// connection is not reused after a stream.
func (s *Server) stream(tc *tls.Conn, raw net.Conn, req Request) {
	if s.Streams == nil {
		_ = writeFrame(tc, Answer{Code: "bad_request", Error: "peerlink: this member takes no streams"})
		return
	}
	take, err := s.Streams.Accept(context.Background(), req)
	if err != nil {
		_ = writeFrame(tc, s.errAnswer(err))
		return
	}
	clear := req.Clear && s.Clear
	if err := writeFrame(tc, Answer{Clear: clear}); err != nil {
		return // the sender fails its set-up, and with it the run
	}
	// The sender writes only after reading the answer, so TLS has read
	// nothing past the request and the socket holds only stream bytes.
	var c net.Conn = tc
	if clear {
		c = raw
	}
	if err := take(c); err != nil {
		s.logger().Debug("stream ended early", "channel", req.Channel, "err", err)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

var bigBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// copyBig copies with 1 MiB reads and writes: fewer system calls, and TLS
// fills whole records.
func copyBig(dst io.Writer, src io.Reader) (int64, error) {
	bp := bigBufs.Get().(*[]byte)
	defer bigBufs.Put(bp)
	return io.CopyBuffer(dst, struct{ io.Reader }{src}, *bp)
}
