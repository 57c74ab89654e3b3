package s3api

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/store"
)

// ttlHeader sets an object's time to live: a Go duration ("90s", "2h") or
// a number of seconds. It is Handoff's own; S3 has lifecycle rules
// instead.
const ttlHeader = "X-Handoff-Ttl"

// replicasHeader asks for copies of an object's blocks on that many node
// agents (1 to store.MaxReplicas; default 1), so that losing one loses
// nothing. It is Handoff's own.
const replicasHeader = "X-Handoff-Replicas"

// readsHeader deletes an object after that many GETs (1 to
// store.MaxReads): a producer's output for a known number of consumers
// needs no DELETE. A HEAD takes none and tells how many are left. It is
// Handoff's own.
const readsHeader = "X-Handoff-Reads"

// body returns the request's payload as the client meant it: decoded
// from aws-chunked and checked against its chunk signatures, or checked
// against its declared SHA-256 at the end. size is -1 when unknown.
// Checks that fail make the reader fail, so the store keeps nothing.
func (q *request) body() (io.Reader, int64, error) {
	r := q.r
	switch p := q.auth.payload; p {
	case streamingPayload, streamingTrailer, streamingUnsignedTrlr:
		size, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || size < 0 {
			return nil, 0, errMissingLength
		}
		var signer *chunkSigner
		if p != streamingUnsignedTrlr {
			s := q.auth.signer
			signer = &s
		}
		return newChunkedReader(r.Body, signer, p != streamingPayload), size, nil
	case unsignedPayload:
		return r.Body, r.ContentLength, nil
	default:
		want, _ := hex.DecodeString(strings.ToLower(p))
		return &shaReader{r: r.Body, h: sha256.New(), want: want}, r.ContentLength, nil
	}
}

// shaReader passes its reader through and fails at its end when the
// bytes' SHA-256 is not want.
type shaReader struct {
	r    io.Reader
	h    hash.Hash
	want []byte
}

func (s *shaReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	if err == io.EOF && !bytes.Equal(s.h.Sum(nil), s.want) {
		return n, errContentSHAMismatch
	}
	return n, err
}

// contentMD5 decodes the Content-MD5 header, if any.
func contentMD5(r *http.Request) ([]byte, error) {
	v := r.Header.Get("Content-Md5")
	if v == "" {
		return nil, nil
	}
	sum, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sum) != md5.Size {
		return nil, errInvalidDigest
	}
	return sum, nil
}

// putOptions reads an object's attributes from the request headers.
func putOptions(r *http.Request) (store.PutOptions, error) {
	opts := store.PutOptions{ContentType: r.Header.Get("Content-Type")}
	for k, vs := range r.Header {
		if name, ok := strings.CutPrefix(k, "X-Amz-Meta-"); ok && name != "" {
			if opts.Meta == nil {
				opts.Meta = make(map[string]string)
			}
			opts.Meta[strings.ToLower(name)] = strings.Join(vs, ",")
		}
	}
	if v := r.Header.Get(ttlHeader); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			s, serr := strconv.ParseInt(v, 10, 64)
			if serr != nil || s > int64(100*365*24*time.Hour/time.Second) {
				return opts, errInvalidTTL
			}
			d = time.Duration(s) * time.Second
		}
		if d <= 0 {
			return opts, errInvalidTTL
		}
		opts.TTL = d
	}
	if v := r.Header.Get(replicasHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxReplicas {
			return opts, errInvalidReplicas
		}
		opts.Replicas = n
	}
	if v := r.Header.Get(readsHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxReads {
			return opts, errInvalidReads
		}
		opts.Reads = n
	}
	return opts, nil
}

func (h *Handler) putObject(q *request) error {
	if err := store.CheckKey(q.key); err != nil {
		return err
	}
	opts, err := putOptions(q.r)
	if err != nil {
		return err
	}
	if opts.MD5, err = contentMD5(q.r); err != nil {
		return err
	}
	// Without a Content-MD5 to verify, the ETag is the blocks' digest:
	// an MD5 pass would be most of the PUT (docs/decisions.md).
	opts.BlockTag = opts.MD5 == nil
	body, size, err := q.body()
	if err != nil {
		return err
	}
	info, err := h.cfg.Backend.Put(q.r.Context(), q.bucket, q.key, body, size, opts)
	if err != nil {
		return bodyError(err)
	}
	q.w.Header().Set("ETag", `"`+info.ETag+`"`)
	q.w.WriteHeader(http.StatusOK)
	return nil
}

// bodyError maps the errors of a request body's readers, wrapped by the
// store, to S3 errors.
func bodyError(err error) error {
	switch {
	case errors.Is(err, errChunkSig):
		return errChunkSignature
	case errors.Is(err, errChunk):
		return errChunkMalformed
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errIncompleteBody
	}
	return err
}

// objectHeaders sets the headers that describe an object.
func objectHeaders(w http.ResponseWriter, info store.ObjectInfo) {
	hd := w.Header()
	hd.Set("ETag", `"`+info.ETag+`"`)
	hd.Set("Last-Modified", info.Modified.UTC().Format(http.TimeFormat))
	ct := info.ContentType
	if ct == "" {
		ct = "binary/octet-stream"
	}
	hd.Set("Content-Type", ct)
	hd.Set("Accept-Ranges", "bytes")
	for k, v := range info.Meta {
		hd["X-Amz-Meta-"+http.CanonicalHeaderKey(k)] = []string{v}
	}
	if !info.Expires.IsZero() {
		hd.Set("X-Handoff-Expires", info.Expires.UTC().Format(http.TimeFormat))
	}
	if info.Reads > 0 {
		hd.Set(readsHeader, strconv.Itoa(info.Reads))
	}
}

// precondition checks If-Match, If-None-Match, If-Modified-Since and
// If-Unmodified-Since; notModified asks for 304.
func precondition(r *http.Request, info store.ObjectInfo) (notModified bool, err error) {
	etagIn := func(list string) bool {
		for _, e := range strings.Split(list, ",") {
			e = strings.TrimSpace(e)
			if e == "*" || strings.Trim(e, `"`) == info.ETag {
				return true
			}
		}
		return false
	}
	mod := info.Modified.Truncate(time.Second)
	if v := r.Header.Get("If-Match"); v != "" && !etagIn(v) {
		return false, errPreconditionFailed
	}
	if v := r.Header.Get("If-Unmodified-Since"); v != "" && r.Header.Get("If-Match") == "" {
		if t, err := http.ParseTime(v); err == nil && mod.After(t) {
			return false, errPreconditionFailed
		}
	}
	if v := r.Header.Get("If-None-Match"); v != "" {
		return etagIn(v), nil
	}
	if v := r.Header.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !mod.After(t) {
			return true, nil
		}
	}
	return false, nil
}

func (h *Handler) getObject(q *request) error {
	if err := store.CheckKey(q.key); err != nil {
		return err
	}
	var rng *store.Range
	if v := q.r.Header.Get("Range"); v != "" {
		if rr, ok := parseRange(v); ok {
			rng = &rr
		}
	}
	ctx := q.r.Context()
	if q.r.Method == http.MethodHead && rng == nil {
		info, err := h.cfg.Backend.Head(ctx, q.bucket, q.key)
		if err != nil {
			return err
		}
		return h.sendObject(q, &store.Object{Info: info, Length: info.Size}, false)
	}
	obj, err := h.cfg.Backend.Get(ctx, q.bucket, q.key, rng)
	if err != nil {
		return err
	}
	defer obj.Body.Close()
	return h.sendObject(q, obj, rng != nil)
}

func (h *Handler) sendObject(q *request, obj *store.Object, partial bool) error {
	notModified, err := precondition(q.r, obj.Info)
	if err != nil {
		return err
	}
	objectHeaders(q.w, obj.Info)
	if notModified {
		q.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hd := q.w.Header()
	hd.Set("Content-Length", strconv.FormatInt(obj.Length, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hd.Set("Content-Range", "bytes "+strconv.FormatInt(obj.Offset, 10)+"-"+strconv.FormatInt(obj.Offset+obj.Length-1, 10)+"/"+strconv.FormatInt(obj.Info.Size, 10))
	}
	q.w.WriteHeader(status)
	if q.r.Method == http.MethodHead || obj.Body == nil {
		return nil
	}
	if _, err := io.Copy(q.w, obj.Body); err != nil {
		// The status is sent: all that is left is to cut the response
		// short, so the client sees a failed transfer, never a short or
		// corrupt object taken for whole.
		h.cfg.Log.Warn("s3api: get aborted", "bucket", q.bucket, "key", q.key, "request", q.id, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (h *Handler) deleteObjects(q *request) error {
	want, err := contentMD5(q.r)
	if err != nil {
		return err
	}
	data, err := q.smallBody()
	if err != nil {
		return err
	}
	if sum := md5.Sum(data); want != nil && !bytes.Equal(sum[:], want) {
		return errBadDigest
	}
	var req deleteRequest
	if err := decodeXML(bytes.NewReader(data), &req); err != nil {
		return err
	}
	if len(req.Objects) == 0 || len(req.Objects) > 1000 {
		return errTooManyDeleteKeys
	}
	res := deleteResult{NS: s3NS}
	for _, o := range req.Objects {
		err := store.CheckKey(o.Key)
		if err == nil {
			err = h.cfg.Backend.Delete(q.r.Context(), q.bucket, o.Key)
		}
		if err != nil {
			if errors.Is(err, store.ErrNoSuchBucket) {
				return err
			}
			ae := storeError(err)
			res.Errors = append(res.Errors, deleteErrorXML{Key: o.Key, Code: ae.Code, Message: ae.Message})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedXML{Key: o.Key})
		}
	}
	writeXML(q.w, res)
	return nil
}

// smallBody reads a request body that is a small document (XML of
// DeleteObjects, CompleteMultipartUpload, CreateBucket), checked like an
// object body, and refuses one over maxXMLBody.
func (q *request) smallBody() ([]byte, error) {
	body, _, err := q.body()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(body, maxXMLBody+1))
	if err != nil {
		return nil, bodyError(err)
	}
	if len(data) > maxXMLBody {
		return nil, errMalformedXML
	}
	return data, nil
}
