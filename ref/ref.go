package ref

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Every error this package returns wraps exactly one of
// them, so callers branch with errors.Is and show err.Error() to people.
var (
	// ErrMalformed means a token is not a reference at all: wrong prefix,
	// too long, bad base64, truncated, trailing bytes, or fields outside
	// their rules. A token damaged in transit usually fails here or with
	// ErrBadSignature.
	ErrMalformed = errors.New("ref: malformed reference")

	// ErrUnknownKey means the token names a key id the keyring does not
	// hold: the key was removed (rotated out) or this node's keyring is
	// stale. Keyring.Use also returns it for an id that was never added.
	ErrUnknownKey = errors.New("ref: unknown signing key")

	// ErrBadSignature means the tag does not match the body under the named
	// key: the token was forged or altered after signing.
	ErrBadSignature = errors.New("ref: bad signature")

	// ErrExpired means the reference's expiry has passed.
	ErrExpired = errors.New("ref: expired")

	// ErrWrongReader means the function asking for the payload is not among
	// the reference's readers.
	ErrWrongReader = errors.New("ref: function not allowed to read")

	// ErrExhausted means every allowed read of the buffer has been taken.
	// This package never returns it from Verify: a token cannot know how
	// often it was used. The holder node counts reads (see ReadCounter) and
	// returns it when a pull goes past Ref.Reads.
	ErrExhausted = errors.New("ref: reads exhausted")

	// ErrInvalid means Sign was given a Ref whose fields break the rules
	// documented on Ref; nothing was signed.
	ErrInvalid = errors.New("ref: invalid reference fields")
)

// AnyReader, as the only entry of Ref.Readers, lets any function of the
// cluster read the payload. An empty Readers list is refused by Sign: a
// forgotten field must not silently widen a capability to the whole
// cluster.
const AnyReader = "*"

// Limits of the format. They keep a token well below 4 KiB, so it fits in
// an HTTP header and a JSON string without special handling.
const (
	MaxTokenLen = 4096 // longest token accepted, checked before decoding
	MaxReaders  = 32   // most entries in Ref.Readers
	MaxNameLen  = 63   // longest holder, issuer or reader name

	maxExpires = 253402300799 // 9999-12-31T23:59:59Z in Unix seconds
)

// Ref is the decoded content of a reference token. The zero value is not a
// valid reference; fill every field (KeyID excepted, Sign sets it) and call
// Keyring.Sign.
type Ref struct {
	// KeyID names the keyring key that signed the token. Sign sets it.
	KeyID uint32
	// Holder is the id of the node holding the buffer: 1–63 bytes of
	// a-z, 0-9 and '-'.
	Holder string
	// Buffer is the holder's id for the buffer (random, never reused).
	Buffer [16]byte
	// Size is the payload length in bytes, >= 0.
	Size int64
	// Checksum is the CRC-32C (Castagnoli) of the payload. The receiver
	// checks it after pulling; this package does not see the payload.
	Checksum uint32
	// Deferred says the payload's checksum is not in the token (Checksum
	// is 0): the holder computes it from its sealed copy when the payload
	// first leaves the node, and the receiver checks the bytes it pulled
	// against that. A hand-over of a sealed buffer on one node then costs
	// no pass over the bytes at all.
	Deferred bool
	// Expires is when the reference stops verifying. The token keeps whole
	// Unix seconds (Sign truncates); it must lie after 1970-01-01T00:00:00Z
	// and no later than 9999-12-31T23:59:59Z.
	Expires time.Time
	// Readers are the functions allowed to read the payload: 1–32 distinct
	// function names (DNS labels: 1–63 of a-z, 0-9 and '-', starting with
	// a letter, not ending with '-'), or exactly []string{AnyReader}.
	Readers []string
	// Reads is how many pulls of the buffer are allowed, >= 1. The holder
	// enforces it (ReadCounter); the token only carries it.
	Reads uint32
	// Issuer is the function that created the reference (a function name,
	// as in Readers), for error messages and audit.
	Issuer string
}

// AllowedFor returns nil when function may read r, else an error wrapping
// ErrWrongReader that names the allowed readers.
func (r Ref) AllowedFor(function string) error {
	for _, name := range r.Readers {
		if name == AnyReader || name == function {
			return nil
		}
	}
	return fmt.Errorf("%w: function %q may not read this reference from %q (readers: %s); the issuer must name %q among its readers",
		ErrWrongReader, function, r.Issuer, strings.Join(r.Readers, ", "), function)
}

// String describes r for logs. It holds nothing secret: the token itself
// is the capability, and r cannot be turned back into one without the key.
func (r Ref) String() string {
	sum := fmt.Sprintf("crc32c %08x", r.Checksum)
	if r.Deferred {
		sum = "crc32c deferred"
	}
	return fmt.Sprintf("ref{key %d, holder %s, buffer %x, %d bytes, %s, expires %s, readers [%s], reads %d, issuer %s}",
		r.KeyID, r.Holder, r.Buffer, r.Size, sum, r.Expires.UTC().Format(time.RFC3339),
		strings.Join(r.Readers, " "), r.Reads, r.Issuer)
}

// validate checks every field but KeyID and returns a sentence naming the
// first problem, or "" when r is valid.
func (r Ref) validate() string {
	if !isNodeID(r.Holder) {
		return fmt.Sprintf("holder %q is not a node id; use 1–63 of a-z, 0-9 and '-'", r.Holder)
	}
	if r.Size < 0 {
		return fmt.Sprintf("size %d is negative", r.Size)
	}
	if r.Deferred && r.Checksum != 0 {
		return "a deferred checksum must be left 0"
	}
	if r.Expires.IsZero() || r.Expires.Unix() <= 0 || r.Expires.Unix() > maxExpires {
		return fmt.Sprintf("expiry %s is unset or outside 1970–9999; set it from the clock plus a ttl", r.Expires.UTC().Format(time.RFC3339))
	}
	if len(r.Readers) == 0 {
		return fmt.Sprintf("no readers; name the functions that may read it, or use [%q] for any function", AnyReader)
	}
	if len(r.Readers) > MaxReaders {
		return fmt.Sprintf("%d readers, more than %d; use [%q] for wide fan-out", len(r.Readers), MaxReaders, AnyReader)
	}
	if len(r.Readers) == 1 && r.Readers[0] == AnyReader {
		// any function
	} else {
		for i, name := range r.Readers {
			if !isFunctionName(name) {
				return fmt.Sprintf("reader %q is not a function name (a DNS label of 1–63 a-z, 0-9 and '-', starting with a letter); %q must be the only reader", name, AnyReader)
			}
			for _, prev := range r.Readers[:i] {
				if prev == name {
					return fmt.Sprintf("reader %q is listed twice", name)
				}
			}
		}
	}
	if r.Reads == 0 {
		return "reads is 0; allow at least one read"
	}
	if !isFunctionName(r.Issuer) {
		return fmt.Sprintf("issuer %q is not a function name (a DNS label of 1–63 a-z, 0-9 and '-', starting with a letter)", r.Issuer)
	}
	return ""
}

// isNodeID reports whether s is 1–63 bytes of a-z, 0-9 and '-'.
func isNodeID(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isFunctionName reports whether s is a DNS label as spec.CheckName accepts
// it: 1–63 of a-z, 0-9 and '-', starting with a letter, not ending with '-'.
// It is repeated here to keep this package free of spec's YAML dependency.
func isFunctionName(s string) bool {
	return isNodeID(s) && s[0] >= 'a' && s[0] <= 'z' && s[len(s)-1] != '-'
}
