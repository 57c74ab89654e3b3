//go:build !linux

package stream

import (
	"io"
	"os"
)

// Relay copies src to dst until src's EOF and returns the bytes moved.
// Outside Linux it is a plain copy.
func Relay(dst io.Writer, src io.Reader) (int64, error) { return copyRelay(dst, src) }

// Pipe makes a pipe; outside Linux its capacity cannot be set and is
// reported as 0.
func Pipe(size int) (r, w *os.File, capacity int, err error) {
	r, w, err = os.Pipe()
	return r, w, 0, err
}
