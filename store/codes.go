package store

import "errors"

// codes names every sentinel error for the wire, most specific first
// (ErrInvalidBucketName wraps ErrInvalidName, so it must come before it).
// The names are stable: the metadata service and the block protocol carry
// them between node agents and the control plane.
var codes = []struct {
	code string
	err  error
}{
	{"no_such_bucket", ErrNoSuchBucket},
	{"no_such_key", ErrNoSuchKey},
	{"bucket_exists", ErrBucketExists},
	{"bucket_not_empty", ErrBucketNotEmpty},
	{"invalid_bucket_name", ErrInvalidBucketName},
	{"invalid_key", ErrInvalidKey},
	{"invalid_name", ErrInvalidName},
	{"invalid_range", ErrInvalidRange},
	{"quota", ErrQuota},
	{"too_large", ErrTooLarge},
	{"too_small", ErrTooSmall},
	{"checksum", ErrChecksum},
	{"lost", ErrLost},
	{"bad_digest", ErrBadDigest},
	{"incomplete_body", ErrIncompleteBody},
	{"no_such_upload", ErrNoSuchUpload},
	{"invalid_part", ErrInvalidPart},
	{"invalid_part_order", ErrInvalidPartOrder},
	{"invalid_argument", ErrInvalidArgument},
	{"closed", ErrClosed},
	{"unavailable", ErrUnavailable},
}

// Code returns the stable wire code of the sentinel err wraps, or
// "internal" when it wraps none.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// FromCode rebuilds an error that Code encoded: its message is msg, as the
// other end wrote it, and it wraps the sentinel named by code (none for an
// unknown code), so errors.Is works across the wire.
func FromCode(code, msg string) error {
	for _, c := range codes {
		if c.code == code {
			return &wireError{msg: msg, err: c.err}
		}
	}
	return &wireError{msg: msg}
}

// wireError is an error received from another member.
type wireError struct {
	msg string
	err error // the sentinel; nil if unknown
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.err }
