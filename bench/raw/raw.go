// Package raw measures this machine's physical limits in the same run as
// the figures they bound: memcpy, one-way stream throughput over loopback TCP
// and Unix sockets, 64-byte round trips and a net/http echo.
//
// The stream and copy measurements are [bench.Transfer]s so that they sit in
// the same table as Handoff's own modes and the baselines; the round trips are
// direct measurements returning a [bench.Point].
//
// Every measurement copies into a destination the consumer reuses across
// iterations, as a long-lived receiver would: the first touch of fresh pages
// (page faults, zeroing) is a cost of allocation, not of moving bytes, and is
// paid once in the warm-up. The price is memory: Memcpy and each Stream hold
// a buffer as large as the largest payload until Close (1 GiB each in a full
// run).
package raw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

// ChunkSize is the size of one write on the stream transfers.
const ChunkSize = 1 << 20

// ErrClosed is returned by a transfer used after Close or after an earlier
// error broke its connection.
var ErrClosed = errors.New("raw: transfer is closed or broken")

// Memcpy is a [bench.Transfer] that copies the payload into a destination
// buffer it reuses across calls: the memory bandwidth of one goroutine.
type Memcpy struct{ dst []byte }

// NewMemcpy returns a Memcpy transfer named "memcpy".
func NewMemcpy() *Memcpy { return &Memcpy{} }

// Name returns "memcpy".
func (m *Memcpy) Name() string { return "memcpy" }

// Transfer copies payload into the reused destination and returns it.
func (m *Memcpy) Transfer(_ context.Context, payload []byte) ([]byte, error) {
	if cap(m.dst) < len(payload) {
		m.dst = make([]byte, len(payload))
	}
	d := m.dst[:len(payload)]
	copy(d, payload)
	return d, nil
}

// Close drops the destination buffer.
func (m *Memcpy) Close() error { m.dst = nil; return nil }

// Stream is a [bench.Transfer] that sends the payload one way over a real
// kernel socket (loopback TCP or a Unix socket) to a receiver goroutine in
// this process, which reads it fully into a reused buffer and acks with one
// byte. The connection persists across calls. The sender writes an 8-byte
// length header, then the payload in ChunkSize writes.
type Stream struct {
	name string
	ln   net.Listener
	conn net.Conn // sender's end
	peer net.Conn // receiver's end
	dir  string   // socket directory to remove, for Unix

	got    chan []byte   // receiver → Transfer: the bytes of one payload
	exited chan struct{} // closed when the receiver returns
	rerr   error         // why the receiver returned; read after exited is closed

	mu     sync.Mutex // guards broken
	broken bool
}

// NewTCPStream returns a Stream named "tcp" over a loopback TCP connection.
func NewTCPStream() (*Stream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("raw: tcp stream: %w", err)
	}
	return newStream("tcp", ln, "")
}

// NewUnixStream returns a Stream named "unix" over a Unix socket in a fresh
// temporary directory.
func NewUnixStream() (*Stream, error) {
	dir, err := os.MkdirTemp("", "handoff-bench-")
	if err != nil {
		return nil, fmt.Errorf("raw: unix stream: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("raw: unix stream: %w", err)
	}
	return newStream("unix", ln, dir)
}

func newStream(name string, ln net.Listener, dir string) (*Stream, error) {
	s := &Stream{name: name, ln: ln, dir: dir, got: make(chan []byte, 1), exited: make(chan struct{})}
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	conn, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("raw: %s stream: dial: %w", name, err)
	}
	s.conn = conn
	select {
	case s.peer = <-accepted:
	case err := <-acceptErr:
		s.cleanup()
		return nil, fmt.Errorf("raw: %s stream: accept: %w", name, err)
	}
	go s.receive()
	return s, nil
}

// receive is the consumer: it reads one length-prefixed payload at a time
// into its reused buffer, hands the slice over and acks with one byte.
func (s *Stream) receive() {
	defer close(s.exited)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(s.peer, hdr[:]); err != nil {
			s.rerr = err
			return
		}
		n := int(uint64(hdr[0]) | uint64(hdr[1])<<8 | uint64(hdr[2])<<16 | uint64(hdr[3])<<24 |
			uint64(hdr[4])<<32 | uint64(hdr[5])<<40 | uint64(hdr[6])<<48 | uint64(hdr[7])<<56)
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		b := buf[:n]
		if _, err := io.ReadFull(s.peer, b); err != nil {
			s.rerr = err
			return
		}
		s.got <- b
		if _, err := s.peer.Write([]byte{1}); err != nil {
			s.rerr = err
			return
		}
	}
}

// Name returns "tcp" or "unix".
func (s *Stream) Name() string { return s.name }

// Transfer streams payload to the receiver and waits for its ack.
func (s *Stream) Transfer(ctx context.Context, payload []byte) ([]byte, error) {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken {
		return nil, ErrClosed
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	got, err := s.transfer(payload)
	if err != nil {
		s.mu.Lock()
		s.broken = true
		s.mu.Unlock()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("raw: %s stream: %w", s.name, err)
	}
	return got, nil
}

func (s *Stream) transfer(payload []byte) ([]byte, error) {
	n := uint64(len(payload))
	hdr := [8]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), byte(n >> 32), byte(n >> 40), byte(n >> 48), byte(n >> 56)}
	if _, err := s.conn.Write(hdr[:]); err != nil {
		return nil, err
	}
	for p := payload; len(p) > 0; {
		c := min(len(p), ChunkSize)
		if _, err := s.conn.Write(p[:c]); err != nil {
			return nil, err
		}
		p = p[c:]
	}
	var ack [1]byte
	if _, err := io.ReadFull(s.conn, ack[:]); err != nil {
		return nil, err
	}
	select {
	case b := <-s.got:
		return b, nil
	case <-s.exited:
		return nil, fmt.Errorf("receiver stopped: %w", s.rerr)
	}
}

// Close closes both ends and the listener and waits for the receiver.
func (s *Stream) Close() error {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	s.cleanup()
	if s.peer != nil {
		<-s.exited
	}
	return nil
}

func (s *Stream) cleanup() {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.peer != nil {
		s.peer.Close()
	}
	s.ln.Close()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

var _ bench.Transfer = (*Stream)(nil)
var _ bench.Transfer = (*Memcpy)(nil)
