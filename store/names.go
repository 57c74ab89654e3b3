package store

import (
	"fmt"
	"net/netip"
	"unicode/utf8"
)

// MaxKeyLen is the longest object key, in bytes, as S3.
const MaxKeyLen = 1024

// CheckBucketName reports whether name follows S3's rules for bucket
// names: 3 to 63 characters of lowercase letters, digits, dots and
// hyphens; a letter or digit at each end; no two adjacent dots; not shaped
// like an IPv4 address. Such names are also safe as DNS labels, so
// virtual-host style addressing works for every bucket. The error wraps
// ErrInvalidBucketName (and so ErrInvalidName) and says which rule failed.
func CheckBucketName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: bucket %q %s", ErrInvalidBucketName, name, why)
	}
	if len(name) < 3 || len(name) > 63 {
		return bad("must be 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '.':
			if i == 0 || i == len(name)-1 {
				return bad("must start and end with a lowercase letter or digit")
			}
			if c == '.' && (name[i-1] == '.' || name[i-1] == '-' || name[i+1] == '-') {
				return bad("must not have '..', '.-' or '-.'")
			}
		default:
			return bad("may hold only lowercase letters, digits, '.' and '-'")
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return bad("must not look like an IP address")
	}
	return nil
}

// CheckKey reports whether key is a valid object key: 1 to MaxKeyLen bytes
// of valid UTF-8. S3 allows any such key, slashes, spaces and control
// characters included; the store does too. The error wraps
// ErrInvalidKey (and so ErrInvalidName).
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty object key", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: object key is %d bytes, over the limit of %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: object key is not valid UTF-8", ErrInvalidKey)
	}
	return nil
}
