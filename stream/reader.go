package stream

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// Reader reads a framed stream and checks its trailer. It is not safe for
// concurrent use.
type Reader struct {
	r       io.Reader
	started bool   // the header has been read and checked
	left    int    // data bytes left in the current frame
	count   int64  // data bytes delivered
	crc     uint32 // CRC-32C of the delivered data
	err     error  // sticky: io.EOF after a good trailer, or the failure
	scratch [trailerLen]byte
	ahead   [4]byte // bytes of the next frame word read with data
	nahead  int
	// scatter reads a frame's data and the next frame word with one
	// system call, when r is a descriptor (nil otherwise).
	scatter func(data, ahead []byte) (int, error)
}

// NewReader returns a Reader of the stream on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r, scatter: scatterer(r)} }

// Bytes returns the data bytes delivered so far.
func (r *Reader) Bytes() int64 { return r.count }

// Read reads data straight into p. It returns io.EOF only after a trailer
// that matches the count and CRC-32C of everything delivered and the end of
// the underlying reader; reading past the trailer waits for that end (the
// producer closing its side), since nothing may follow a trailer.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for r.left == 0 {
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	// Where p has room, ask for the next frame word too: it lands after
	// the data, so reading it costs no copy of data and no extra call.
	want := min(len(p), r.left)
	var n int
	var err error
	switch {
	case len(p) >= r.left+len(r.ahead):
		n, err = r.r.Read(p[:r.left+len(r.ahead)])
		if n > r.left {
			r.nahead = copy(r.ahead[:], p[r.left:n])
			n = r.left
		}
	case want == r.left && r.scatter != nil && r.nahead == 0:
		// p ends with the frame: the next frame word goes to r.ahead.
		n, err = r.scatter(p[:want], r.ahead[:])
		if n > r.left {
			r.nahead = n - r.left
			n = r.left
		}
	default:
		n, err = r.r.Read(p[:want])
	}
	if n > 0 {
		r.crc = crc32c.Update(r.crc, p[:n])
		r.count += int64(n)
		r.left -= n
	}
	if err != nil {
		// Hand over the n bytes now and the error on the next Read.
		r.err = r.broke(err)
		if n == 0 {
			return 0, r.err
		}
	}
	return n, nil
}

// next reads the header if due and one frame word, and handles the
// trailer and abort frames.
func (r *Reader) next() error {
	if !r.started {
		if err := r.full(r.scratch[:headerLen]); err != nil {
			if r.count == 0 && errors.Is(err, ErrTruncated) {
				return errorf(ErrTruncated, nil, "stream: ended before its header: the producer stopped before it started")
			}
			return err
		}
		h := r.scratch[:headerLen]
		if string(h[:3]) != string(header[:3]) {
			return errorf(ErrMalformed, nil, "stream: the input starts with %q, not a stream header: the peer does not speak this format", h)
		}
		if h[3] != version {
			return errorf(ErrMalformed, nil, "stream: version %d is not spoken here (want %d): upgrade the older side", h[3], version)
		}
		r.started = true
	}
	if err := r.full(r.scratch[:4]); err != nil {
		return err
	}
	switch word := binary.BigEndian.Uint32(r.scratch[:4]); {
	case word == wordTrailer:
		return r.trailer()
	case word == wordAbort:
		return r.abort()
	case word == 0 || word > MaxFrame:
		return errorf(ErrMalformed, nil, "stream: frame word %#08x after %d bytes is neither data (1..%d bytes) nor a trailer or abort: the peer does not speak this format", word, r.count, MaxFrame)
	default:
		r.left = int(word)
		return nil
	}
}

func (r *Reader) trailer() error {
	if err := r.full(r.scratch[:trailerLen]); err != nil {
		return err
	}
	count := int64(binary.BigEndian.Uint64(r.scratch[:8]))
	crc := binary.BigEndian.Uint32(r.scratch[8:12])
	if count != r.count || crc != r.crc {
		return errorf(ErrMismatch, nil, "stream: the trailer says %d bytes with CRC-32C %08x but %d bytes with CRC-32C %08x arrived: data was lost or corrupted on the way", count, crc, r.count, r.crc)
	}
	// Nothing may follow; any error but a byte means the data is complete.
	n, _ := io.ReadFull(r.r, r.scratch[:1])
	if n > 0 || r.nahead > 0 {
		return errorf(ErrMalformed, nil, "stream: data follows the trailer after %d bytes: the peer does not speak this format", r.count)
	}
	return io.EOF
}

func (r *Reader) abort() error {
	if err := r.full(r.scratch[:abortLenSize]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(r.scratch[:abortLenSize]))
	if n > MaxReason {
		return errorf(ErrMalformed, nil, "stream: abort reason of %d bytes exceeds %d: the peer does not speak this format", n, MaxReason)
	}
	reason := make([]byte, n)
	if err := r.full(reason); err != nil {
		return err
	}
	return &AbortError{Reason: string(reason), After: r.count}
}

// full reads exactly len(p) bytes of framing, starting with those read
// ahead.
func (r *Reader) full(p []byte) error {
	c := copy(p, r.ahead[:r.nahead])
	r.nahead = copy(r.ahead[:], r.ahead[c:r.nahead])
	if _, err := io.ReadFull(r.r, p[c:]); err != nil {
		return r.broke(err)
	}
	return nil
}

// broke turns an error of the underlying reader before the trailer into
// ErrTruncated, keeping the cause unless it is a plain end of input.
func (r *Reader) broke(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errorf(ErrTruncated, nil, "stream: ended after %d bytes without its trailer: the producer stopped before finishing", r.count)
	}
	return errorf(ErrTruncated, err, "stream: broke off after %d bytes without its trailer (%v): the producer or its link failed before finishing", r.count, err)
}
