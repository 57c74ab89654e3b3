package ref

import (
	"fmt"
	"sync"
)

// ReadCounter counts pulls per buffer for the holder node. It is safe for
// concurrent use; the zero value is ready to use.
//
// The holder calls Take once per pull, after Verify and AllowedFor and
// before sending bytes, with the Reads the buffer was created with. When
// Take returns left == 0 the pull is the last: the holder frees the buffer
// after sending it and calls Forget. Because Forget drops the count, the
// holder must also refuse pulls of buffers it no longer holds; buffer ids
// are random and never reused, so a replayed token then finds nothing.
type ReadCounter struct {
	mu    sync.Mutex // guards taken
	taken map[[16]byte]uint32
}

// Take counts one read of buffer and returns how many reads are left. Past
// the allowed number it returns an error wrapping ErrExhausted and counts
// nothing.
func (c *ReadCounter) Take(buffer [16]byte, allowed uint32) (left uint32, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.taken[buffer]
	if n >= allowed {
		return 0, fmt.Errorf("%w: buffer %x was already read %d of %d allowed times; ask the sender to send the payload again with more reads",
			ErrExhausted, buffer, n, allowed)
	}
	if c.taken == nil {
		c.taken = make(map[[16]byte]uint32)
	}
	c.taken[buffer] = n + 1
	return allowed - n - 1, nil
}

// Forget drops the count of buffer, once the holder has freed it.
func (c *ReadCounter) Forget(buffer [16]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.taken, buffer)
}
