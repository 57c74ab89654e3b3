package buffer

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// ID names a buffer. Store picks ids from crypto/rand, so they are never
// reused and cannot be guessed; an id alone is not a capability, though:
// references (package ref) carry it under a signature.
type ID [16]byte

// String returns the id as 32 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID, which Meta uses for "pick one".
func (id ID) IsZero() bool { return id == ID{} }

// ParseID reads the form String writes: 32 hex digits (upper case is
// accepted too). Errors wrap ErrInvalid.
func ParseID(s string) (ID, error) {
	var id ID
	if n := len(s); n != 2*len(id) {
		if n > 4*len(id) {
			s = s[:4*len(id)] + "..." // do not echo an attacker's megabyte
		}
		return ID{}, fmt.Errorf("%w: buffer id %q has %d characters; want %d hex digits", ErrInvalid, s, n, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("%w: buffer id %q is not hex: %v", ErrInvalid, s, err)
	}
	return id, nil
}

// newID returns a random id, never the zero one.
func newID() ID {
	var id ID
	for id.IsZero() {
		rand.Read(id[:]) // never fails (Go 1.24+): it crashes the program instead
	}
	return id
}
