package store

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Backend is the ephemeral object store as its front ends see it: the S3
// API, and later the mount and the workflow `store` edges. Names are
// checked by the backend (ErrInvalidName); every method is safe for
// concurrent use.
type Backend interface {
	// CreateBucket makes an empty bucket; ErrBucketExists if it exists.
	CreateBucket(ctx context.Context, name string) error
	// DeleteBucket removes an empty bucket; ErrBucketNotEmpty otherwise.
	DeleteBucket(ctx context.Context, name string) error
	// HeadBucket describes a bucket; ErrNoSuchBucket if it is absent.
	HeadBucket(ctx context.Context, name string) (BucketInfo, error)
	// ListBuckets lists every bucket in name order.
	ListBuckets(ctx context.Context) ([]BucketInfo, error)

	// Put stores the object read from r, replacing any object under the
	// key once the whole body has arrived. size is the body's length, or
	// -1 when unknown. Nothing is kept when r fails, the body's length
	// differs from size (ErrIncompleteBody) or its MD5 differs from
	// opts.MD5 (ErrBadDigest); the error from r is wrapped as is.
	Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error)
	// Get opens the object, or the part of it rng selects (nil: all of
	// it). ErrInvalidRange when rng does not overlap the object. The
	// caller must close Object.Body. Reading verifies every block's
	// checksum; a mismatch fails the read with ErrChecksum.
	Get(ctx context.Context, bucket, key string, rng *Range) (*Object, error)
	// Head describes the object without reading it.
	Head(ctx context.Context, bucket, key string) (ObjectInfo, error)
	// Delete removes the object. Deleting an absent key succeeds, as in
	// S3; an absent bucket is ErrNoSuchBucket.
	Delete(ctx context.Context, bucket, key string) error
	// List lists objects in key order (bytewise, as S3).
	List(ctx context.Context, bucket string, opts ListOptions) (ListResult, error)

	// CreateUpload starts a multipart upload and returns its id.
	CreateUpload(ctx context.Context, bucket, key string, opts PutOptions) (string, error)
	// UploadPart stores part number part (1 to 10000) of an upload,
	// replacing any earlier part with that number.
	UploadPart(ctx context.Context, bucket, key, uploadID string, part int, r io.Reader, size int64, opts PartOptions) (PartInfo, error)
	// CompleteUpload assembles the listed parts, in ascending order, into
	// the object and ends the upload. Parts uploaded but not listed are
	// dropped. The ETag is S3's: the MD5 of the parts' MD5s, "-" and the
	// number of parts.
	CompleteUpload(ctx context.Context, bucket, key, uploadID string, parts []CompletePart) (ObjectInfo, error)
	// AbortUpload ends an upload and drops its parts.
	AbortUpload(ctx context.Context, bucket, key, uploadID string) error
	// ListParts lists an upload's parts in number order, after
	// opts.After, at most opts.Max of them.
	ListParts(ctx context.Context, bucket, key, uploadID string, opts ListPartsOptions) (ListPartsResult, error)
}

// BucketInfo describes a bucket.
type BucketInfo struct {
	Name    string
	Created time.Time
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Bucket string
	Key    string
	Size   int64
	// ETag is the hex MD5 of the body for objects written whole, and
	// hex(MD5(part MD5s))-N for objects assembled from N parts, without
	// quotes, as S3 clients expect.
	ETag        string
	Modified    time.Time
	ContentType string
	// Meta is the user metadata (S3's x-amz-meta-*), keys in lower case.
	Meta map[string]string
	// Expires is when the object's time to live runs out; zero: never.
	Expires time.Time
	// Reads is how many reads the object has left before it is deleted
	// (see PutOptions.Reads); zero: no limit.
	Reads int
}

// PutOptions are the optional attributes of a Put or CreateUpload.
type PutOptions struct {
	ContentType string
	Meta        map[string]string
	// TTL, if > 0, is how long the object lives after it is written;
	// then it is deleted as if by Delete.
	TTL time.Duration
	// Reads, if > 0, deletes the object after that many reads: every Get
	// that finds it takes one (a ranged one too, and one whose range
	// fails), nobody finds it once the last is taken, and its bytes go
	// when every read taken has ended. A producer's output for a known
	// number of consumers then needs no delete. At most MaxReads.
	Reads int
	// MD5, if set, is the digest the body must have (Content-MD5).
	MD5 []byte
	// BlockTag, when MD5 is not set, makes the object's ETag a digest of
	// its blocks' sizes and CRC-32Cs followed by "-1" instead of the MD5
	// of its bytes, which costs a pass over them (~1.5 ms per MiB on one
	// core here, most of a PUT's time). The dash tells S3 tools the ETag
	// is not the body's MD5, as for a multipart upload, so they do not
	// compare it with their own. With MD5 set the ETag is the MD5.
	BlockTag bool
	// Replicas is how many node agents hold each block of the object: 0
	// or 1, one (the default: the object is lost with that node agent);
	// 2 or more, that many different node agents, so that losing one
	// loses nothing. A Put that cannot place every copy fails. At most
	// MaxReplicas.
	Replicas int
}

// MaxReplicas is the most copies of an object's blocks a Put may ask for.
const MaxReplicas = 3

// MaxReads is the most reads PutOptions.Reads may allow.
const MaxReads = 1 << 20

// PartOptions are the optional attributes of an UploadPart.
type PartOptions struct {
	// MD5, if set, is the digest the part must have (Content-MD5).
	MD5 []byte
	// BlockTag, when MD5 is not set, makes the part's ETag a digest of
	// its blocks' CRC-32Cs instead of the MD5 of its bytes, which costs
	// a pass over them (~1.5 ms per MiB on one core here). The object's
	// multipart ETag then identifies its version as any multipart ETag
	// does, but a client cannot recompute it from the bytes. For writers
	// that never show part ETags to S3 clients: the mount.
	BlockTag bool
}

// Object is an open object returned by Get: the bytes from Offset, Length
// of them, of an object described by Info.
type Object struct {
	Info   ObjectInfo
	Offset int64
	Length int64
	Body   io.ReadCloser
}

// Range selects bytes of an object, as an HTTP Range header does: either
// First to Last inclusive (Last < 0: to the end), or, when Suffix > 0, the
// last Suffix bytes.
type Range struct {
	First, Last int64
	Suffix      int64
}

// Resolve turns the range into an offset and length within an object of
// size bytes, clamping a range that runs past the end, as HTTP does. It
// fails with ErrInvalidRange when the range selects no byte. A suffix
// range of an empty object selects nothing and fails too.
func (r Range) Resolve(size int64) (off, n int64, err error) {
	if r.Suffix > 0 {
		if size == 0 {
			return 0, 0, fmt.Errorf("%w: last %d bytes of an empty object", ErrInvalidRange, r.Suffix)
		}
		n = min(r.Suffix, size)
		return size - n, n, nil
	}
	if r.First < 0 || (r.Last >= 0 && r.Last < r.First) {
		return 0, 0, fmt.Errorf("%w: bytes %d-%d", ErrInvalidRange, r.First, r.Last)
	}
	if r.First >= size {
		return 0, 0, fmt.Errorf("%w: starts at byte %d of a %d-byte object", ErrInvalidRange, r.First, size)
	}
	last := size - 1
	if r.Last >= 0 && r.Last < last {
		last = r.Last
	}
	return r.First, last - r.First + 1, nil
}

// ListOptions select and page a List.
type ListOptions struct {
	// Prefix limits the listing to keys that start with it.
	Prefix string
	// Delimiter, if set, rolls up keys that contain it after the prefix
	// into one CommonPrefix each, up to and including its first
	// occurrence.
	Delimiter string
	// After starts the listing after this key (S3's start-after, and the
	// continuation token decoded). A common prefix is listed after a key
	// equal to it.
	After string
	// Max is the most keys plus common prefixes returned; <= 0 or over
	// 1000 means 1000.
	Max int
}

// ListResult is one page of a List.
type ListResult struct {
	Objects        []ObjectInfo
	CommonPrefixes []string
	// Truncated says more entries follow; continue with After set to
	// Next.
	Truncated bool
	Next      string
}

// MaxListKeys is the most entries a List returns at once, as S3.
const MaxListKeys = 1000

// PartInfo describes an uploaded part.
type PartInfo struct {
	Number   int
	Size     int64
	ETag     string // hex MD5 of the part (with PartOptions.BlockTag, of its blocks' checksums)
	Modified time.Time
}

// CompletePart names a part in CompleteUpload: its number and the ETag
// UploadPart returned (quotes optional).
type CompletePart struct {
	Number int
	ETag   string
}

// ListPartsOptions page a ListParts.
type ListPartsOptions struct {
	After int // list parts numbered above this
	Max   int // <= 0 or over 1000: 1000
}

// ListPartsResult is one page of a ListParts.
type ListPartsResult struct {
	Parts     []PartInfo
	Truncated bool
	Next      int // After for the next page
}

// Limits of multipart uploads, as S3.
const (
	MaxParts    = 10000
	MinPartSize = 5 << 20
)
