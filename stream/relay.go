package stream

import (
	"fmt"
	"io"
)

// copyBuffer is the buffer of Relay's plain copy.
const copyBuffer = 256 << 10

// copyRelay is Relay's fallback: a plain copy through a fixed buffer (or
// the ReaderFrom/WriterTo of the ends, which may do better).
func copyRelay(dst io.Writer, src io.Reader) (int64, error) {
	n, err := io.CopyBuffer(dst, src, make([]byte, copyBuffer))
	if err != nil {
		err = relayError(n, "copying", err)
	}
	return n, err
}

func relayError(n int64, doing string, err error) error {
	return fmt.Errorf("stream: relay stopped after %d bytes: %s: %w", n, doing, err)
}
