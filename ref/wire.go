package ref

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// Prefix starts every token. Its digit is the format version; a change to
// the layout in doc.go takes a new prefix.
const Prefix = "hr2."

const (
	tagLen = 32 // HMAC-SHA256
	// minBody is the shortest body: one-byte holder, issuer and reader.
	minBody = 4 + 1 + 1 + 16 + 8 + 4 + 1 + 8 + 4 + 1 + 1 + 1 + 1 + 1
)

// flagDeferred marks a reference whose checksum the holder computes when
// the payload first leaves its node (Ref.Deferred).
const flagDeferred = 1

// b64 is unpadded base64url that refuses non-zero trailing bits, so every
// byte string has exactly one text form and a changed character always
// changes the decoded bytes or fails.
var b64 = base64.RawURLEncoding.Strict()

// Parse decodes token WITHOUT checking its signature or expiry, for logs
// and inspection. Never trust its result for access decisions: use
// Keyring.Verify. Errors wrap ErrMalformed. Parse never panics.
func Parse(token string) (Ref, error) {
	body, _, err := split(token)
	if err != nil {
		return Ref{}, err
	}
	return decodeBody(body)
}

// malformed wraps ErrMalformed with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s; pass the token exactly as the sender produced it", ErrMalformed, fmt.Sprintf(format, args...))
}

// split checks the token's length and prefix, decodes it and returns the
// body and the tag. It does not look inside the body.
func split(token string) (body, tag []byte, err error) {
	if len(token) > MaxTokenLen {
		return nil, nil, malformed("token is %d bytes, more than the %d-byte limit", len(token), MaxTokenLen)
	}
	if !strings.HasPrefix(token, Prefix) {
		return nil, nil, malformed("token does not start with %q", Prefix)
	}
	raw, err := b64.DecodeString(token[len(Prefix):])
	if err != nil {
		return nil, nil, malformed("bad base64url after %q (%v)", Prefix, err)
	}
	if len(raw) < minBody+tagLen {
		return nil, nil, malformed("token decodes to %d bytes, fewer than the %d of the shortest reference", len(raw), minBody+tagLen)
	}
	return raw[:len(raw)-tagLen], raw[len(raw)-tagLen:], nil
}

// encodeBody appends the body of r to dst (layout in doc.go). r must be
// valid.
func encodeBody(dst []byte, r Ref) []byte {
	dst = binary.BigEndian.AppendUint32(dst, r.KeyID)
	dst = appendName(dst, r.Holder)
	dst = append(dst, r.Buffer[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Size))
	dst = binary.BigEndian.AppendUint32(dst, r.Checksum)
	var flags byte
	if r.Deferred {
		flags |= flagDeferred
	}
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Expires.Unix()))
	dst = binary.BigEndian.AppendUint32(dst, r.Reads)
	dst = appendName(dst, r.Issuer)
	dst = append(dst, byte(len(r.Readers)))
	for _, name := range r.Readers {
		dst = appendName(dst, name)
	}
	return dst
}

// bodyLen is the length of encodeBody's output for r.
func bodyLen(r Ref) int {
	// Fixed-width fields, plus the length bytes of holder and issuer and
	// the reader count.
	n := 4 + 1 + 16 + 8 + 4 + 1 + 8 + 4 + 1 + 1 + len(r.Holder) + len(r.Issuer)
	for _, name := range r.Readers {
		n += 1 + len(name)
	}
	return n
}

func appendName(dst []byte, s string) []byte {
	return append(append(dst, byte(len(s))), s...)
}

// decoder reads big-endian fields from a body; the first overrun sets bad
// and every later read returns zeros.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || len(d.b) < n {
		d.bad = true
		return make([]byte, n)
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() int     { return int(d.take(1)[0]) }
func (d *decoder) u32() uint32 { return binary.BigEndian.Uint32(d.take(4)) }
func (d *decoder) u64() uint64 { return binary.BigEndian.Uint64(d.take(8)) }
func (d *decoder) name() string {
	return string(d.take(d.u8()))
}

// decodeBody decodes and validates a body. The encoding is canonical:
// a body it accepts is exactly encodeBody of the result.
func decodeBody(body []byte) (Ref, error) {
	d := decoder{b: body}
	var r Ref
	r.KeyID = d.u32()
	r.Holder = d.name()
	copy(r.Buffer[:], d.take(16))
	size := d.u64()
	r.Checksum = d.u32()
	flags := d.u8()
	r.Deferred = flags&flagDeferred != 0
	expires := d.u64()
	r.Reads = d.u32()
	r.Issuer = d.name()
	if n := d.u8(); n > 0 && n <= MaxReaders {
		r.Readers = make([]string, n)
		for i := range r.Readers {
			r.Readers[i] = d.name()
		}
	} else if n > MaxReaders {
		return Ref{}, malformed("%d readers, more than %d", n, MaxReaders)
	}
	if d.bad {
		return Ref{}, malformed("body is truncated (%d bytes)", len(body))
	}
	if len(d.b) > 0 {
		return Ref{}, malformed("%d unexpected bytes after the last field", len(d.b))
	}
	if flags&^flagDeferred != 0 {
		return Ref{}, malformed("unknown flags %#02x", flags)
	}
	if r.Deferred && r.Checksum != 0 {
		return Ref{}, malformed("a deferred checksum must be 0, not %08x", r.Checksum)
	}
	if size > math.MaxInt64 {
		return Ref{}, malformed("size %d overflows int64", size)
	}
	if expires > math.MaxInt64 {
		return Ref{}, malformed("expiry %d is negative", int64(expires))
	}
	r.Size = int64(size)
	r.Expires = time.Unix(int64(expires), 0).UTC()
	if msg := r.validate(); msg != "" {
		return Ref{}, malformed("%s", msg)
	}
	return r, nil
}
