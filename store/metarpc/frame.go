package metarpc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/handoff-dev/handoff/store"
)

// The watch stream is a connection upgraded from POST {base}/watch
// (Upgrade: WatchProtocol) that carries frames both ways:
//
//	type (1 byte) | payload length (4 bytes, big-endian) | payload
//
// and these frame types:
//
//	ping  node → service   seq (8 bytes): asks for a lease renewal
//	pong  service → node   seq (8 bytes): the renewal of that ping
//	inval service → node   id (8) | kind (1) | bucket length (2) | bucket | key length (2) | key
//	ack   node → service   id (8): the node dropped what inval id names
//
// Integers are big-endian. A node serves metadata from its cache only
// while its lease runs: Lease after it sent a ping the service answered.

// WatchProtocol is the Upgrade token of the watch stream.
const WatchProtocol = "handoff-store-watch/1"

// Frame types.
const (
	framePing  byte = 1
	framePong  byte = 2
	frameInval byte = 3
	frameAck   byte = 4
)

// Kinds of invalidation.
const (
	// InvalKey drops an object's entry and the bucket's listings.
	InvalKey byte = 1
	// InvalBucket drops a bucket's entry, everything cached under it and
	// the list of buckets.
	InvalBucket byte = 2
)

// maxFrame bounds a frame's payload: an inval of the longest bucket name
// and key fits well within it.
const maxFrame = 4096

// ErrBadFrame is matched (errors.Is) by the error readFrame returns for
// bytes that are not a well-formed frame.
var ErrBadFrame = errors.New("metarpc: malformed watch frame; the peer speaks another protocol version")

// frame is one decoded frame; the fields the type uses are set.
type frame struct {
	typ    byte
	n      uint64 // seq of ping and pong, id of inval and ack
	kind   byte
	bucket string
	key    string
}

// appendFrame encodes f after dst.
func appendFrame(dst []byte, f frame) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint64(body, f.n)
	if f.typ == frameInval {
		body = append(body, f.kind)
		body = binary.BigEndian.AppendUint16(body, uint16(len(f.bucket)))
		body = append(body, f.bucket...)
		body = binary.BigEndian.AppendUint16(body, uint16(len(f.key)))
		body = append(body, f.key...)
	}
	dst = append(dst, f.typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// readFrame reads one frame. It fails with ErrBadFrame on an unknown
// type, a wrong length or an inval whose names do not fit its payload,
// and with the reader's error (io.EOF between frames) otherwise.
func readFrame(r *bufio.Reader) (frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	f := frame{typ: hdr[0]}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return frame{}, fmt.Errorf("%w: payload of %d bytes, over %d", ErrBadFrame, n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return parseFrame(f.typ, body)
}

// parseFrame decodes the payload of a frame of type typ.
func parseFrame(typ byte, body []byte) (frame, error) {
	f := frame{typ: typ}
	switch typ {
	case framePing, framePong, frameAck:
		if len(body) != 8 {
			return frame{}, fmt.Errorf("%w: type %d with %d bytes, want 8", ErrBadFrame, typ, len(body))
		}
		f.n = binary.BigEndian.Uint64(body)
		return f, nil
	case frameInval:
	default:
		return frame{}, fmt.Errorf("%w: unknown type %d", ErrBadFrame, typ)
	}
	if len(body) < 8+1+2 {
		return frame{}, fmt.Errorf("%w: inval of %d bytes", ErrBadFrame, len(body))
	}
	f.n = binary.BigEndian.Uint64(body)
	f.kind = body[8]
	if f.kind != InvalKey && f.kind != InvalBucket {
		return frame{}, fmt.Errorf("%w: inval of unknown kind %d", ErrBadFrame, f.kind)
	}
	rest := body[9:]
	var ok bool
	if f.bucket, rest, ok = cutName(rest); !ok {
		return frame{}, fmt.Errorf("%w: inval bucket runs past the frame", ErrBadFrame)
	}
	if f.key, rest, ok = cutName(rest); !ok || len(rest) != 0 {
		return frame{}, fmt.Errorf("%w: inval key does not end the frame", ErrBadFrame)
	}
	if f.bucket == "" || len(f.key) > store.MaxKeyLen {
		return frame{}, fmt.Errorf("%w: inval of bucket %q and a %d-byte key", ErrBadFrame, f.bucket, len(f.key))
	}
	return f, nil
}

// cutName splits a 2-byte length and that many bytes off b.
func cutName(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}
