package blocks

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// ID names a block. Ids are random 128-bit values, so that any node can
// make one without coordination and a block keeps its id when it moves
// between nodes.
type ID [16]byte

// NewID returns a fresh random id.
func NewID() ID {
	var id ID
	rand.Read(id[:]) // never fails (crypto/rand panics instead)
	return id
}

// String returns the id as 32 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText encodes the id as String does.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes 32 hex digits.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) != 2*len(id) {
		return fmt.Errorf("%w: block id %q is not 32 hex digits", ErrInvalid, b)
	}
	if _, err := hex.Decode(id[:], b); err != nil {
		return fmt.Errorf("%w: block id %q: %v", ErrInvalid, b, err)
	}
	return nil
}
