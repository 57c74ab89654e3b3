// Package wire is the framed protocol between the gateway and node agents for
// small invocations.
//
// net/http hands every request between goroutines and threads on both ends
// of a connection; on a small invocation those wake-ups cost more than the
// network (a net/http proxy hop costs ~230 µs p50 on a 2-core VM, a
// single-goroutine one ~140 µs). Here one goroutine on each side writes a
// request and reads its answer on a persistent connection, one invocation at
// a time per connection.
//
// # Wire format
//
// All integers are big-endian. A connection opens with a hello from the
// client:
//
//	"HW1H" u16 len, cluster token
//
// answered by one byte, 'K' (accepted; else the server closes). Then, any
// number of times, a request and its answer:
//
//	request: "HW1Q" u16 len, target | headers | u32 len, body
//	answer:  "HW1A" u16 status     | headers | chunks
//	headers: u16 count, then per header u16 len, name, u32 len, value
//	chunks:  u32 len, bytes ... ending with u32 0 (complete) or
//	         u32 0xFFFFFFFF, u16 len, message (the answer broke off)
//
// A request body is at most MaxBody bytes; an answer streams in chunks of any
// total size.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// Limits on what a peer may send.
const (
	MaxBody       = 64 << 10 // request body
	MaxHeaderSize = 64 << 10 // all header names and values together
	MaxHeaders    = 256
	MaxChunk      = 1 << 20
)

// ErrMalformed means the peer sent bytes that are not this protocol, or
// exceed its limits.
var ErrMalformed = errors.New("wire: malformed frame")

// ErrBroken means the answer broke off midway; the message says why.
var ErrBroken = errors.New("wire: answer broke off")

const (
	magicHello   = "HW1H"
	magicRequest = "HW1Q"
	magicAnswer  = "HW1A"
	chunkAbort   = 0xFFFFFFFF
)

// Request is one invocation: the target instance, headers and the whole body.
type Request struct {
	Target string
	Header http.Header
	Body   []byte
}

// WriteHello writes the client's opening frame.
func WriteHello(w *bufio.Writer, token string) error {
	w.WriteString(magicHello)
	writeString16(w, token)
	return w.Flush()
}

// ReadHello reads the client's opening frame and returns its token.
func ReadHello(r *bufio.Reader) (string, error) {
	if err := expect(r, magicHello); err != nil {
		return "", err
	}
	return readString16(r)
}

// WriteRequest writes req and flushes.
func WriteRequest(w *bufio.Writer, req *Request) error {
	if len(req.Body) > MaxBody {
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrMalformed, len(req.Body), MaxBody)
	}
	w.WriteString(magicRequest)
	writeString16(w, req.Target)
	if err := writeHeaders(w, req.Header); err != nil {
		return err
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(len(req.Body)))
	w.Write(b[:])
	w.Write(req.Body)
	return w.Flush()
}

// ReadRequest reads one request.
func ReadRequest(r *bufio.Reader) (*Request, error) {
	if err := expect(r, magicRequest); err != nil {
		return nil, err
	}
	target, err := readString16(r)
	if err != nil {
		return nil, err
	}
	h, err := readHeaders(r)
	if err != nil {
		return nil, err
	}
	n, err := readUint32(r)
	if err != nil {
		return nil, err
	}
	if n > MaxBody {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrMalformed, n, MaxBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, noEOF(err)
	}
	return &Request{Target: target, Header: h, Body: body}, nil
}

// WriteAnswerHead writes an answer's status and headers; chunks follow.
func WriteAnswerHead(w *bufio.Writer, status int, h http.Header) error {
	if status < 100 || status > 999 {
		return fmt.Errorf("%w: status %d", ErrMalformed, status)
	}
	w.WriteString(magicAnswer)
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(status))
	w.Write(b[:])
	return writeHeaders(w, h)
}

// ReadAnswerHead reads an answer's status and headers; read its body with
// NewBodyReader.
func ReadAnswerHead(r *bufio.Reader) (int, http.Header, error) {
	if err := expect(r, magicAnswer); err != nil {
		return 0, nil, err
	}
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, noEOF(err)
	}
	status := int(binary.BigEndian.Uint16(b[:]))
	if status < 100 || status > 999 {
		return 0, nil, fmt.Errorf("%w: status %d", ErrMalformed, status)
	}
	h, err := readHeaders(r)
	return status, h, err
}

// BodyWriter writes an answer's body as chunks.
type BodyWriter struct{ w *bufio.Writer }

// NewBodyWriter returns a writer of chunks to w.
func NewBodyWriter(w *bufio.Writer) *BodyWriter { return &BodyWriter{w} }

// Write writes p as chunks of at most MaxChunk bytes.
func (b *BodyWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), MaxChunk)]
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], uint32(len(c)))
		b.w.Write(h[:])
		if _, err := b.w.Write(c); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// Close ends the body and flushes.
func (b *BodyWriter) Close() error {
	b.w.Write([]byte{0, 0, 0, 0})
	return b.w.Flush()
}

// Abort ends the body as broken with a message, and flushes.
func (b *BodyWriter) Abort(msg string) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], chunkAbort)
	b.w.Write(h[:])
	writeString16(b.w, msg)
	return b.w.Flush()
}

// BodyReader reads an answer's chunks as a stream; it returns io.EOF at the
// end of a complete body and an error wrapping ErrBroken if it broke off.
type BodyReader struct {
	r    *bufio.Reader
	left uint32
	done bool
}

// NewBodyReader returns a reader of the chunks that follow an answer head.
func NewBodyReader(r *bufio.Reader) *BodyReader { return &BodyReader{r: r} }

func (b *BodyReader) Read(p []byte) (int, error) {
	if err := b.next(); err != nil {
		return 0, err
	}
	if uint32(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= uint32(n)
	if err != nil {
		return n, noEOF(err)
	}
	return n, nil
}

// next reads chunk headers until bytes are left to read in a chunk; io.EOF
// at the end of a complete body.
func (b *BodyReader) next() error {
	if b.done {
		return io.EOF
	}
	for b.left == 0 {
		n, err := readUint32(b.r)
		if err != nil {
			return err
		}
		switch {
		case n == 0:
			b.done = true
			return io.EOF
		case n == chunkAbort:
			msg, err := readString16(b.r)
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: %s", ErrBroken, msg)
		case n > MaxChunk:
			return fmt.Errorf("%w: chunk of %d bytes exceeds %d", ErrMalformed, n, MaxChunk)
		}
		b.left = n
	}
	return nil
}

// WriteTo writes the rest of the body to w straight from the reader's
// buffer, with no copy buffer of its own (io.Copy uses it).
func (b *BodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := b.next(); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		n := min(int(b.left), b.r.Buffered())
		if n == 0 {
			if _, err := b.r.Peek(1); err != nil {
				return total, noEOF(err)
			}
			continue
		}
		p, _ := b.r.Peek(n)
		m, err := w.Write(p)
		total += int64(m)
		b.left -= uint32(m)
		_, _ = b.r.Discard(m)
		if err != nil {
			return total, err
		}
	}
}

// Complete reports whether the body was read to its proper end.
func (b *BodyReader) Complete() bool { return b.done }

func writeString16(w *bufio.Writer, s string) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(len(s)))
	w.Write(b[:])
	w.WriteString(s)
}

func readString16(r *bufio.Reader) (string, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", noEOF(err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(b[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", noEOF(err)
	}
	return string(buf), nil
}

func readUint32(r *bufio.Reader) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, noEOF(err)
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

func writeHeaders(w *bufio.Writer, h http.Header) error {
	count, size := 0, 0
	for k, vs := range h {
		count += len(vs)
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	if count > MaxHeaders || size > MaxHeaderSize {
		return fmt.Errorf("%w: %d headers of %d bytes exceed the limits", ErrMalformed, count, size)
	}
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], uint16(count))
	w.Write(b[:2])
	for k, vs := range h {
		for _, v := range vs {
			writeString16(w, k)
			binary.BigEndian.PutUint32(b[:], uint32(len(v)))
			w.Write(b[:])
			w.WriteString(v)
		}
	}
	return nil
}

func readHeaders(r *bufio.Reader) (http.Header, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, noEOF(err)
	}
	count := int(binary.BigEndian.Uint16(b[:]))
	if count > MaxHeaders {
		return nil, fmt.Errorf("%w: %d headers exceed %d", ErrMalformed, count, MaxHeaders)
	}
	h := make(http.Header, count)
	size := 0
	for range count {
		k, err := readString16(r)
		if err != nil {
			return nil, err
		}
		n, err := readUint32(r)
		if err != nil {
			return nil, err
		}
		size += len(k) + int(n)
		if size > MaxHeaderSize {
			return nil, fmt.Errorf("%w: headers exceed %d bytes", ErrMalformed, MaxHeaderSize)
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return nil, noEOF(err)
		}
		if !validName(k) {
			return nil, fmt.Errorf("%w: header name %q", ErrMalformed, k)
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		h[k] = append(h[k], string(v))
	}
	return h, nil
}

// validName reports whether k is an HTTP field name (RFC 9110 token).
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func expect(r *bufio.Reader, magic string) error {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err // io.EOF here is a clean end between frames
	}
	if string(b[:]) != magic {
		return fmt.Errorf("%w: got %q, want %q", ErrMalformed, b[:], magic)
	}
	return nil
}

// noEOF turns an EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
