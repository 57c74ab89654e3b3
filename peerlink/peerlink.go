// Package peerlink carries pulls between node agents over persistent
// connections that the cluster's TLS identities authenticate both ways
// (package pki).
//
// Requests and answers always travel inside TLS. The payload either
// follows them through TLS, or, when both ends allow it, in the clear on
// the same TCP socket, written with sendfile(2) straight from the holder's
// buffer: encryption halves loopback throughput on a 2-core machine
// (1.3 against 2.7 GB/s), and the payload's integrity is checked end to end
// against the checksum in its signed reference anyway. Clear payloads suit
// loopback and private networks; across untrusted links leave them off.
//
// # Wire format
//
// Every message inside TLS is a frame: u32 big-endian length (at most
// MaxFrame), then that many bytes of JSON (Request or Answer).
//
//	pull:  C→S Request{op:"pull"}   S→C Answer (error, or size and mode)
//	       clear:  C→S one byte 'G' (TLS), then S→C size bytes on the TCP socket
//	       tls:    S→C size bytes through TLS
//	       trailer (Answer.Trailer): then S→C Answer{checksum} (TLS); a
//	       holder that cannot send every byte drops the connection
//	take:  C→S Request{op:"take"}   S→C Answer (error, or readsLeft)
//	adopt: C→S Request{op:"adopt"}  S→C Answer (ready, or error)
//	       C→S size bytes (clear on the socket, or through TLS)
//	       S→C Answer (kept, or error)
//	stream: C→S Request{op:"stream"} S→C Answer (ready, or error)
//	       C→S the stream's bytes (clear on the socket, or through TLS)
//	       until C half-closes; the connection then ends (it is not reused)
//
// A pull's checksum comes in its answer, or, when the puller offers to take
// it after the payload (Request.Trailer) and the holder does not know it
// yet (a memfd an instance handed over unchecked), in a trailer frame: the
// holder then computes it in the same pass that sends the bytes instead of
// in a pass before them, and may answer before the bytes are ready (while
// the instance that wrote them unmaps), so that the puller allocates their
// memory meanwhile. The checksum travels inside TLS either way, so clear
// payloads stay checked against a checksum no one on the path can forge.
// A holder that predates trailers ignores Request.Trailer and answers with
// the checksum first, which the puller accepts as before.
//
// take accounts one read of a reference without moving its bytes: the
// puller's node already holds a copy from an earlier pull (see package
// refpass, broadcast). A holder that predates it answers "bad_request",
// and the puller pulls instead.
//
// The 'G' byte is what makes clear bytes safe to mix with TLS: the holder
// sends nothing after its answer until the puller has read that answer in
// full, so the puller's TLS layer never reads clear bytes as a record.
// Server-sent session tickets, which could arrive unasked, are disabled.
// After the payload both ends are back at a frame boundary, and the
// connection serves the next request.
package peerlink

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxFrame is the largest request or answer frame.
const MaxFrame = 64 << 10

// ErrMalformed means the peer sent something that is not this protocol.
var ErrMalformed = errors.New("peerlink: malformed frame")

// Request asks the holder for something.
type Request struct {
	Op     string `json:"op"` // "pull", "take", "adopt", "stream" or a block op
	Ref    string `json:"ref,omitempty"`
	Reader string `json:"reader,omitempty"`
	// Clear says the sender of the request accepts the payload in the
	// clear on the socket.
	Clear bool `json:"clear,omitempty"`
	// Trailer says the puller takes the checksum after the payload.
	Trailer bool `json:"trailer,omitempty"`

	// Adopt: a draining member's buffer, described.
	Holder    string `json:"holder,omitempty"`
	Buffer    string `json:"buffer,omitempty"`
	ReadsLeft uint32 `json:"readsLeft,omitempty"`
	Expires   int64  `json:"expires,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Checksum  uint32 `json:"checksum,omitempty"`

	// Stream: the workflow channel the bytes feed, and the run's secret
	// that names the sender as the channel's producer.
	Channel string `json:"channel,omitempty"`
	Secret  string `json:"secret,omitempty"`
}

// Answer answers a Request. Code is "" on success.
type Answer struct {
	Code     string `json:"code,omitempty"`
	Error    string `json:"error,omitempty"`
	Size     int64  `json:"size,omitempty"`
	Checksum uint32 `json:"checksum,omitempty"`
	Clear    bool   `json:"clear,omitempty"` // the payload goes in the clear
	// Trailer says the checksum follows the payload (Checksum is 0 here).
	Trailer bool `json:"trailer,omitempty"`
	// ReadsLeft is, for pull and take, how many reads the reference still
	// allows after this one.
	ReadsLeft uint32 `json:"readsLeft,omitempty"`
}

// RemoteError is an error answer from the other end.
type RemoteError struct {
	Code    string // stable code, as the holder's Status gives it
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("%w: %d-byte frame, more than %d", ErrMalformed, len(b), MaxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf) // one write: one TLS record for small frames
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return fmt.Errorf("%w: frame of %d bytes, more than %d", ErrMalformed, n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("%w: frame cut short: %v", ErrMalformed, err)
	}
	return decode(b, v)
}

// decode parses a frame's JSON; FuzzDecode covers it.
func decode(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
