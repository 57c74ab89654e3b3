package s3api

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"strconv"
	"strings"
)

// The aws-chunked body of a streaming upload:
//
//	hex-size;chunk-signature=<64 hex>\r\n
//	<size bytes>\r\n
//	... repeated, ending with a chunk of size 0, then optional trailers:
//	x-amz-checksum-crc32c:<base64>\r\n
//	x-amz-trailer-signature:<64 hex>\r\n
//	\r\n
//
// Each chunk signature signs the previous signature (the request's for the
// first chunk) and the chunk's SHA-256, so the chunks cannot be cut,
// reordered or changed. The unsigned variant leaves out ";chunk-signature=".

// errChunk is the decoder's error for a malformed body; errChunkSig for a
// chunk or trailer whose signature does not match. The handler maps them.
var (
	errChunk    = errors.New("s3api: malformed aws-chunked body")
	errChunkSig = errors.New("s3api: aws-chunked signature mismatch")
)

const (
	maxChunkLine = 4096     // a chunk header or trailer line
	maxTrailers  = 16 << 10 // bytes of trailers
)

// chunkSigner verifies the signature chain of a signed aws-chunked body.
type chunkSigner struct {
	key     []byte // signing key of the request
	amzDate string
	scope   string
	prev    string // the previous signature; the request's seed at first
}

func (s *chunkSigner) chunk(sum []byte) string {
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + s.amzDate + "\n" + s.scope + "\n" + s.prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(sum)
	return hex.EncodeToString(hmacSHA256(s.key, sts))
}

func (s *chunkSigner) trailer(sum []byte) string {
	sts := "AWS4-HMAC-SHA256-TRAILER\n" + s.amzDate + "\n" + s.scope + "\n" + s.prev + "\n" + hex.EncodeToString(sum)
	return hex.EncodeToString(hmacSHA256(s.key, sts))
}

// chunkedReader decodes an aws-chunked body as it is read, verifying each
// chunk's signature (when signer is set) when the chunk ends, before the
// next is read: a consumer that stops at the first error, as store.Put
// does, keeps nothing unverified.
type chunkedReader struct {
	r        *bufio.Reader
	signer   *chunkSigner // nil: unsigned chunks
	trailers bool         // trailers follow the last chunk
	Trailer  map[string]string

	left int64     // bytes of the current chunk not yet read
	sig  string    // the current chunk's signature
	h    hash.Hash // SHA-256 of the current chunk, when signed
	err  error     // sticky; io.EOF at the end
}

func newChunkedReader(r io.Reader, signer *chunkSigner, trailers bool) *chunkedReader {
	c := &chunkedReader{r: bufio.NewReaderSize(r, 64<<10), signer: signer, trailers: trailers, left: -1}
	if signer != nil {
		c.h = sha256.New()
	}
	return c
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left < 0 {
		if c.err = c.header(); c.err != nil {
			return 0, c.err
		}
		if c.left == 0 {
			c.err = c.end()
			return 0, c.err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	c.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.err = errChunk
		return n, errChunk
	}
	if c.left == 0 {
		if err := c.finishChunk(); err != nil {
			c.err = err
			return n, err
		}
		c.left = -1
	}
	return n, nil
}

// line reads one line, without its \n or \r\n.
func (c *chunkedReader) line() (string, error) {
	b, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(b) > maxChunkLine {
		return "", errChunk
	}
	if err == io.EOF && len(b) == 0 {
		return "", io.EOF
	}
	if err != nil && err != io.EOF {
		return "", errChunk
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// header reads "hex-size[;chunk-signature=sig]".
func (c *chunkedReader) header() error {
	l, err := c.line()
	if err != nil {
		return errChunk
	}
	size, ext, _ := strings.Cut(l, ";")
	if size == "" || len(size) > 15 {
		return errChunk
	}
	n, err := strconv.ParseInt(size, 16, 64)
	if err != nil || n < 0 {
		return errChunk
	}
	c.left, c.sig = n, ""
	if c.signer != nil {
		sig, ok := strings.CutPrefix(ext, "chunk-signature=")
		if !ok || !validSignature(sig) {
			return errChunk
		}
		c.sig = sig
		c.h.Reset()
	}
	return nil
}

// finishChunk checks the CRLF after a chunk's data and its signature.
func (c *chunkedReader) finishChunk() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
		return errChunk
	}
	return c.verify()
}

func (c *chunkedReader) verify() error {
	if c.signer == nil {
		return nil
	}
	want := c.signer.chunk(c.h.Sum(nil))
	if !equalSig(want, c.sig) {
		return errChunkSig
	}
	c.signer.prev = want
	return nil
}

// end handles the final zero-size chunk: its signature, the trailers and
// their signature, then io.EOF.
func (c *chunkedReader) end() error {
	if err := c.verify(); err != nil {
		return err
	}
	if !c.trailers {
		// The CRLF that closes the empty chunk, if the client sent it.
		l, err := c.line()
		if err == io.EOF || (err == nil && l == "") {
			return io.EOF
		}
		return errChunk
	}
	c.Trailer = make(map[string]string)
	var signed strings.Builder
	var trailerSig string
	total := 0
	for {
		l, err := c.line()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		total += len(l)
		if total > maxTrailers {
			return errChunk
		}
		if l == "" {
			if len(c.Trailer) > 0 || trailerSig != "" {
				break
			}
			continue // the CRLF closing the empty chunk
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok || k == "" {
			return errChunk
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "x-amz-trailer-signature" {
			trailerSig = strings.TrimSpace(v)
			continue
		}
		if trailerSig != "" {
			return errChunk // trailers after their signature
		}
		c.Trailer[k] = strings.TrimSpace(v)
		signed.WriteString(k + ":" + strings.TrimSpace(v) + "\n")
	}
	if c.signer != nil {
		sum := sha256.Sum256([]byte(signed.String()))
		if !validSignature(trailerSig) || !equalSig(c.signer.trailer(sum[:]), trailerSig) {
			return errChunkSig
		}
	}
	return io.EOF
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
