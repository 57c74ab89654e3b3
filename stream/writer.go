package stream

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/handoff-dev/handoff/internal/crc32c"
)

// prefix is the room in front of buffered data for the stream header and
// a frame word, so that a buffered frame (the first one with its header)
// goes out in one write.
const prefix = headerLen + 4

// Writer frames bytes onto an io.Writer and ends the stream with a trailer.
// It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	gather  func([][]byte) error // writev on w, or nil
	frame   int                  // data bytes per frame
	buf     []byte               // prefix, then up to frame buffered data bytes
	n       int                  // buffered data bytes
	count   int64                // data bytes accepted
	crc     uint32               // CRC-32C of the accepted data
	started bool                 // the stream header is out
	err     error                // sticky: a failed write, or errWriterDone
	ended   ending
	closed  error // Close's result, returned again by later Closes
}

type ending int8

const (
	open ending = iota
	closed
	aborted
)

// NewWriter returns a Writer with frames of DefaultFrame bytes.
func NewWriter(w io.Writer) *Writer { return NewWriterSize(w, DefaultFrame) }

// NewWriterSize returns a Writer with frames of frame data bytes; frame is
// clamped to 1..MaxFrame, and DefaultFrame is used if it is not positive.
func NewWriterSize(w io.Writer, frame int) *Writer {
	if frame <= 0 {
		frame = DefaultFrame
	}
	frame = min(frame, MaxFrame)
	return &Writer{w: w, gather: gatherer(w), frame: frame, buf: make([]byte, prefix+frame)}
}

// Bytes returns the data bytes accepted so far, buffered ones included.
func (w *Writer) Bytes() int64 { return w.count }

// Write buffers small writes into frames; whole frames of p go out without
// a copy (the frame word, then p itself).
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		if w.n == 0 && len(p) >= w.frame {
			if err := w.writeFrame(p[:w.frame]); err != nil {
				return written, err
			}
			p = p[w.frame:]
			written += w.frame
			continue
		}
		c := copy(w.buf[prefix+w.n:], p)
		w.accept(p[:c])
		w.n += c
		p = p[c:]
		written += c
		if w.n == w.frame {
			if err := w.Flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// ReadFrom reads src into the frame buffer until EOF, so io.Copy into a
// Writer copies each byte once.
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	var total int64
	for {
		n, err := src.Read(w.buf[prefix+w.n:])
		if n > 0 {
			w.accept(w.buf[prefix+w.n : prefix+w.n+n])
			w.n += n
			total += int64(n)
			if w.n == w.frame {
				if ferr := w.Flush(); ferr != nil {
					return total, ferr
				}
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (w *Writer) accept(p []byte) {
	w.crc = crc32c.Update(w.crc, p)
	w.count += int64(len(p))
}

// writeFrame sends p as one data frame straight from the caller's memory:
// its word and p in one writev where w allows, else in two writes.
func (w *Writer) writeFrame(p []byte) error {
	var word [prefix]byte
	head := w.words(word[:], uint32(len(p)))
	w.accept(p)
	if w.gather != nil {
		if err := w.gather([][]byte{head, p}); err != nil {
			w.err = fmt.Errorf("stream: writing after %d bytes: %w", w.count-int64(len(p)), err)
			return w.err
		}
		return nil
	}
	if err := w.send(head); err != nil {
		return err
	}
	return w.send(p)
}

// words fills the tail of into with the stream header (if not out yet) and
// the frame word, and returns the filled part.
func (w *Writer) words(into []byte, word uint32) []byte {
	binary.BigEndian.PutUint32(into[headerLen:prefix], word)
	if w.started {
		return into[headerLen:prefix]
	}
	copy(into, header[:])
	w.started = true
	return into[:prefix]
}

func (w *Writer) send(p []byte) error {
	if _, err := w.w.Write(p); err != nil {
		w.err = fmt.Errorf("stream: writing after %d bytes: %w", w.count, err)
		return w.err
	}
	return nil
}

// Flush sends the buffered data as one frame. Zero-length frames are never
// sent.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.n == 0 {
		return nil
	}
	head := w.words(w.buf[:prefix], uint32(w.n))
	start := prefix - len(head)
	err := w.send(w.buf[start : prefix+w.n])
	w.n = 0
	return err
}

// Close flushes and writes the trailer (byte count and CRC-32C of all
// data). It does not close the underlying writer; the consumer sees the end
// of the stream only once that is closed too. Later Closes return the first
// one's result.
func (w *Writer) Close() error {
	switch w.ended {
	case closed:
		return w.closed
	case aborted:
		return errWriterDone
	}
	w.ended = closed
	if err := w.Flush(); err != nil {
		w.closed = err
		return err
	}
	var t [prefix + trailerLen]byte
	head := w.words(t[:prefix], wordTrailer)
	binary.BigEndian.PutUint64(t[prefix:], uint64(w.count))
	binary.BigEndian.PutUint32(t[prefix+8:], w.crc)
	start := prefix - len(head)
	w.closed = w.send(t[start:])
	if w.closed == nil {
		w.err = errWriterDone
	}
	return w.closed
}

// Abort tells the reader the producer failed; the reader returns an
// AbortError (ErrAborted) with reason, cut to MaxReason bytes. Buffered data
// is dropped. Abort after Close or Abort fails.
func (w *Writer) Abort(reason string) error {
	if w.ended != open {
		return errWriterDone
	}
	w.ended = aborted
	w.n = 0
	if w.err != nil {
		return w.err
	}
	reason = cut(reason, MaxReason)
	t := make([]byte, prefix+abortLenSize+len(reason))
	head := w.words(t[:prefix], wordAbort)
	binary.BigEndian.PutUint16(t[prefix:], uint16(len(reason)))
	copy(t[prefix+abortLenSize:], reason)
	start := prefix - len(head)
	if err := w.send(t[start:]); err != nil {
		return err
	}
	w.err = errWriterDone
	return nil
}

// cut shortens s to at most max bytes without splitting a UTF-8 sequence.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
