package wc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// How wc-gen hands a chunk to wc-count.
const (
	// ViaHandoff sends the chunk as the body of the wc-count invocation.
	ViaHandoff = "handoff"
	// ViaS3 stores the chunk in S3 and sends wc-count a pointer to it.
	ViaS3 = "s3"
)

// MaxChunk is the largest chunk wc-gen makes (the functions have 1 GiB of
// memory; a chunk is held by gen and by count at once).
const MaxChunk = 512 << 20

// TopN is the length of the top list wc-merge returns.
const TopN = 10

// S3 says where the S3 baseline keeps its objects.
type S3 struct {
	Endpoint  string `json:"endpoint"` // host:port, e.g. "127.0.0.1:9000"
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
	Bucket    string `json:"bucket"`
	// Secure selects HTTPS; the demo's MinIO serves plain HTTP.
	Secure bool `json:"secure,omitempty"`
}

// Validate reports a missing field.
func (s *S3) Validate() error {
	switch {
	case s == nil:
		return errors.New(`wc: "s3" is missing: give {"endpoint","accessKey","secretKey","bucket"}`)
	case s.Endpoint == "":
		return errors.New(`wc: "s3.endpoint" is empty: give host:port of the S3 server`)
	case s.Bucket == "":
		return errors.New(`wc: "s3.bucket" is empty: give the bucket to use`)
	}
	return nil
}

// ChunkKey is the S3 key of chunk i of run.
func ChunkKey(run string, i int) string { return run + "/chunks/" + strconv.Itoa(i) }

// CountsKey is the S3 key of the counts of chunk i of run.
func CountsKey(run string, i int) string { return run + "/counts/" + strconv.Itoa(i) }

// GenRequest is the input of wc-gen.
type GenRequest struct {
	Run   string `json:"run"`
	Chunk int    `json:"chunk"`
	Bytes int    `json:"bytes"`
	Seed  int64  `json:"seed"`
	Via   string `json:"via"`
	S3    *S3    `json:"s3,omitempty"`
}

// Validate checks r and says what to fix.
func (r *GenRequest) Validate() error {
	if r.Bytes <= 0 || r.Bytes > MaxChunk {
		return fmt.Errorf("wc: bytes=%d: want 1 to %d (MaxChunk); split the corpus into more chunks", r.Bytes, MaxChunk)
	}
	if r.Chunk < 0 {
		return fmt.Errorf("wc: chunk=%d: want a chunk index >= 0", r.Chunk)
	}
	switch r.Via {
	case ViaHandoff:
	case ViaS3:
		if r.Run == "" {
			return errors.New(`wc: "run" is empty: S3 keys are named after the run`)
		}
		return r.S3.Validate()
	default:
		return fmt.Errorf(`wc: via=%q: want "handoff" or "s3"`, r.Via)
	}
	return nil
}

// GenResult is the output of wc-gen.
type GenResult struct {
	Chunk int `json:"chunk"`
	// Words is the number of words the generator wrote.
	Words int64  `json:"words"`
	Bytes int    `json:"bytes"`
	Via   string `json:"via"`
	// Counts is wc-count's answer (an encoded Counts), via handoff.
	Counts json.RawMessage `json:"counts,omitempty"`
	// CountsKey is the S3 key of the counts, via s3.
	CountsKey string `json:"countsKey,omitempty"`
}

// CountRequest is the input of wc-count in S3 mode: a pointer to the chunk.
// wc-count tells it from a chunk of text by its first byte, '{', which the
// corpus never starts with (text to count that starts with '{' must be
// prefixed with a space).
type CountRequest struct {
	S3  *S3    `json:"s3"`
	Key string `json:"key"`
	// CountsKey is where to store the counts; default: Key with its last
	// "/chunks/" replaced by "/counts/", or Key + ".counts".
	CountsKey string `json:"countsKey,omitempty"`
}

// CountResult is the output of wc-count in S3 mode. (Given text, wc-count
// returns the encoded Counts themselves.)
type CountResult struct {
	CountsKey string `json:"countsKey"`
	Words     int64  `json:"words"`
	Distinct  int    `json:"distinct"`
}

// IsCountRequest says whether the input of wc-count is a CountRequest (JSON)
// rather than text: its first byte is '{'.
func IsCountRequest(in []byte) bool { return len(in) > 0 && in[0] == '{' }

// MergeRequest is the input of wc-merge: either the counts themselves or the
// S3 keys of the counts.
type MergeRequest struct {
	// Combine asks for the merged Counts themselves instead of a Summary, so
	// that merges can form a tree: no single request has to carry every
	// chunk's counts.
	Combine bool              `json:"combine,omitempty"`
	Counts  []json.RawMessage `json:"counts,omitempty"`
	S3      *S3               `json:"s3,omitempty"`
	Keys    []string          `json:"keys,omitempty"`
}
