package stream

import (
	"errors"
	"fmt"
)

// Format limits and defaults.
const (
	DefaultFrame = 256 << 10 // data bytes per frame by default
	MaxFrame     = 4 << 20   // largest data frame a reader accepts
	MaxReason    = 1 << 10   // longest abort reason, in bytes
)

const (
	version      = 1
	headerLen    = 4
	wordTrailer  = 0xFFFFFFFF
	wordAbort    = 0xFFFFFFFE
	trailerLen   = 12 // u64 count, u32 CRC-32C
	abortLenSize = 2
)

var header = [headerLen]byte{'H', 'F', 'S', version}

var (
	// ErrTruncated means the stream ended (EOF, closed, reset) before its
	// trailer: the producer stopped early, and the data that arrived is
	// incomplete.
	ErrTruncated = errors.New("stream: ended without its trailer")

	// ErrMismatch means the trailer disagrees with the data that arrived
	// (byte count or CRC-32C): bytes were lost or corrupted on the way.
	ErrMismatch = errors.New("stream: trailer does not match the data")

	// ErrAborted means the producer sent an abort frame; AbortError holds
	// its reason.
	ErrAborted = errors.New("stream: aborted by the producer")

	// ErrMalformed means the bytes are not this format: a bad magic or
	// version, a frame over MaxFrame, an unknown frame word, or bytes after
	// the trailer.
	ErrMalformed = errors.New("stream: malformed")

	errWriterDone = errors.New("stream: write after Close or Abort")
)

// AbortError is the error a Reader returns after an abort frame. It wraps
// ErrAborted.
type AbortError struct {
	Reason string // as the producer gave it, at most MaxReason bytes
	After  int64  // data bytes delivered before the abort
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("stream: the producer aborted after %d bytes: %q", e.After, e.Reason)
}

func (e *AbortError) Unwrap() error { return ErrAborted }

// streamError carries a sentence for the user and the sentinel (and cause,
// if any) for errors.Is.
type streamError struct {
	msg   string
	kind  error
	cause error
}

func (e *streamError) Error() string { return e.msg }

func (e *streamError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func errorf(kind, cause error, format string, args ...any) error {
	return &streamError{msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}
