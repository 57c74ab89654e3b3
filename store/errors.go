package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Backend returns wraps one of them (or a
// context error), so callers branch with errors.Is: the S3 API maps each
// to its S3 error code, the mount to an errno. The messages say what the
// caller can do about it.
var (
	// ErrNoSuchBucket means the named bucket does not exist: it was never
	// created or it was deleted.
	ErrNoSuchBucket = errors.New("store: no such bucket; create it first")

	// ErrNoSuchKey means the bucket holds no object under the key: it was
	// never written, it was deleted, or its time to live ran out.
	ErrNoSuchKey = errors.New("store: no such key; write the object first (objects with a TTL vanish when it runs out)")

	// ErrBucketExists means CreateBucket named a bucket that already
	// exists. Buckets have no owners on a node, so it is always "owned by
	// you" in S3's terms.
	ErrBucketExists = errors.New("store: bucket already exists; use it or pick another name")

	// ErrBucketNotEmpty means DeleteBucket met a bucket that still holds
	// objects or unfinished multipart uploads.
	ErrBucketNotEmpty = errors.New("store: bucket is not empty; delete its objects and abort its uploads first")

	// ErrInvalidName means a bucket name breaks S3's rules (3 to 63
	// characters of lowercase letters, digits, dots and hyphens, starting
	// and ending with a letter or digit, not an IP address) or a key is
	// empty, longer than 1024 bytes or not valid UTF-8.
	ErrInvalidName = errors.New("store: invalid name; buckets: 3-63 lowercase letters, digits, '.', '-'; keys: 1-1024 bytes of UTF-8")

	// ErrInvalidBucketName wraps ErrInvalidName for a bucket name that
	// breaks S3's rules.
	ErrInvalidBucketName = fmt.Errorf("%w (bucket)", ErrInvalidName)

	// ErrInvalidKey wraps ErrInvalidName for an invalid object key.
	ErrInvalidKey = fmt.Errorf("%w (key)", ErrInvalidName)

	// ErrInvalidRange means a byte range does not overlap the object: it
	// starts at or past the end, or is malformed. Ask for a range that
	// starts before the object's size.
	ErrInvalidRange = errors.New("store: requested range is not satisfiable; start it before the object's end")

	// ErrQuota means the node has no room left for the data: its memory
	// budget is full and its spill disk is full or disabled. Nothing was
	// kept. Delete objects, shorten TTLs or raise the node's budgets.
	ErrQuota = errors.New("store: node storage quota exceeded; delete objects or raise the memory and spill budgets")

	// ErrTooLarge means an object or part is larger than the configured
	// maximum. Use a multipart upload, or smaller parts.
	ErrTooLarge = errors.New("store: object too large; split it into a multipart upload")

	// ErrTooSmall means a part other than the last of a multipart upload
	// is smaller than the minimum part size (5 MiB, as S3).
	ErrTooSmall = errors.New("store: multipart part too small; every part but the last must be at least 5 MiB")

	// ErrChecksum means stored data failed its checksum when read back: a
	// block was corrupted in memory or on disk. The bytes are not
	// returned. Write the object again.
	ErrChecksum = errors.New("store: stored data failed its checksum; the object is corrupt, write it again")

	// ErrLost means the blocks of an object are gone although its
	// metadata remains: the node agent that held them restarted or was
	// lost. Write the object again.
	ErrLost = errors.New("store: object data lost with the node that held it; write it again")

	// ErrBadDigest means the body did not match the MD5 digest the caller
	// declared (Content-MD5). Nothing was kept; send it again.
	ErrBadDigest = errors.New("store: body does not match its declared MD5 digest; send it again")

	// ErrIncompleteBody means the body ended before the declared size, or
	// went on past it. Nothing was kept.
	ErrIncompleteBody = errors.New("store: body length differs from the declared size; send the whole body")

	// ErrNoSuchUpload means the multipart upload id is unknown: it was
	// never created, or it was completed or aborted. Start a new upload.
	ErrNoSuchUpload = errors.New("store: no such multipart upload; it was completed, aborted or never created")

	// ErrInvalidPart means CompleteMultipartUpload named a part that was
	// not uploaded, or with an ETag that differs from the uploaded one,
	// or a part number outside 1 to 10000.
	ErrInvalidPart = errors.New("store: invalid part; list the parts and complete with their numbers and ETags")

	// ErrInvalidPartOrder means CompleteMultipartUpload listed the parts
	// out of ascending order or twice.
	ErrInvalidPartOrder = errors.New("store: parts must be listed in ascending order, each once")

	// ErrInvalidArgument means an argument breaks a documented rule
	// other than a name: a negative size, a bad TTL, too many keys.
	ErrInvalidArgument = errors.New("store: invalid argument")

	// ErrClosed means the backend was closed.
	ErrClosed = errors.New("store: closed")

	// ErrUnavailable means a part of the cluster the store needs cannot
	// be reached: the metadata service in the control plane, or the node
	// agents an object's replicas need. Nothing was changed by the failed
	// call, or the change is unknown; retry once the control plane and
	// enough node agents are up.
	ErrUnavailable = errors.New("store: metadata service or node agents unreachable; retry once the control plane and node agents are up")
)
