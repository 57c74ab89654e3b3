package s3api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
)

// Config sets up a Handler.
type Config struct {
	// Backend is the store served. Required.
	Backend store.Backend
	// AccessKey and SecretKey are the admin credential (Signature
	// Version 4): it may do everything, for operators and tooling. Both
	// required.
	AccessKey, SecretKey string
	// FunctionKeys, if set, is the root secret of functions' credentials
	// (FunctionKey): a request signed with a function's key may use only
	// the buckets its key grants. Nil refuses every key but the admin's.
	FunctionKeys []byte
	// Region is what GetBucketLocation answers; default "us-east-1".
	// Signatures are accepted for any region the client names: the
	// secret, not the region, is what authenticates.
	Region string
	// Domains, if set, enables virtual-host style addressing: a request
	// to bucket.<domain> (for any domain listed, port ignored) addresses
	// bucket. Path style (/bucket/key) always works.
	Domains []string
	// Clock checks request times and presigned URL expiry. Default
	// clock.Real{}.
	Clock clock.Clock
	// Log, if set, receives internal errors (the client sees only
	// InternalError). Default slog.Default().
	Log *slog.Logger
}

// Handler serves the S3 REST API over a store.Backend. It is safe for
// concurrent use.
type Handler struct {
	cfg Config
}

// New returns a Handler, or an error when cfg lacks a required field.
func New(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("s3api: Config.Backend is nil; pass the store to serve")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, fmt.Errorf("s3api: Config.AccessKey and Config.SecretKey are required; anonymous access is not supported")
	}
	if strings.HasPrefix(cfg.AccessKey, fnKeyPrefix) {
		return nil, fmt.Errorf("s3api: Config.AccessKey %q starts with %q, which marks functions' keys; pick another admin key", cfg.AccessKey, fnKeyPrefix)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Handler{cfg: cfg}, nil
}

// request is one request being served.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	id     string
	bucket string
	key    string
	auth   *authed
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{w: w, r: r, id: newRequestID()}
	w.Header().Set("x-amz-request-id", q.id)
	w.Header().Set("Server", "handoff")
	q.bucket, q.key = h.route(r)

	a, aerr := h.authenticate(r)
	if aerr != nil {
		h.fail(q, aerr)
		return
	}
	q.auth = a
	if aerr := a.who.authorize(q); aerr != nil {
		h.fail(q, aerr)
		return
	}

	var err error
	switch {
	case q.bucket == "":
		err = h.service(q)
	case q.key == "":
		err = h.bucketOp(q)
	default:
		err = h.objectOp(q)
	}
	if err != nil {
		h.fail(q, err)
	}
}

// route splits the request into bucket and key, by host (virtual-host
// style) or by path.
func (h *Handler) route(r *http.Request) (bucket, key string) {
	path := r.URL.Path
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	for _, d := range h.cfg.Domains {
		if b, ok := strings.CutSuffix(host, "."+d); ok && b != "" {
			return b, strings.TrimPrefix(path, "/")
		}
	}
	path = strings.TrimPrefix(path, "/")
	bucket, key, _ = strings.Cut(path, "/")
	return bucket, key
}

// fail writes err as S3 error XML (no body for HEAD).
func (h *Handler) fail(q *request, err error) {
	ae := storeError(err)
	if ae.Code == "InternalError" {
		h.cfg.Log.Error("s3api: internal error", "method", q.r.Method, "path", q.r.URL.Path, "request", q.id, "err", err)
	}
	hd := q.w.Header()
	hd.Del("Content-Length")
	hd.Del("ETag")
	hd.Del("Last-Modified")
	hd.Set("Content-Type", "application/xml")
	if q.r.Method == http.MethodHead {
		q.w.WriteHeader(ae.Status)
		return
	}
	body := errorBody{Code: ae.Code, Message: ae.Message, Resource: q.r.URL.Path, BucketN: q.bucket, Key: q.key, RequestID: q.id}
	q.w.WriteHeader(ae.Status)
	q.w.Write([]byte(xml.Header))
	xml.NewEncoder(q.w).Encode(body)
}

// writeXML writes v as an XML document with status 200.
func writeXML(w http.ResponseWriter, v any) {
	out, err := xml.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(out)))
	w.Write([]byte(xml.Header))
	w.Write(out)
}

// isoTime is the time format of S3's XML: ISO 8601 with milliseconds.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// has reports whether the query names parameter k, with or without value.
func has(r *http.Request, k string) bool {
	_, ok := r.URL.Query()[k]
	return ok
}

// service serves requests to "/": ListBuckets.
func (h *Handler) service(q *request) error {
	if q.r.Method != http.MethodGet {
		return errMethodNotAllowed
	}
	bs, err := h.cfg.Backend.ListBuckets(q.r.Context())
	if err != nil {
		return err
	}
	res := listBucketsResult{NS: s3NS, Owner: owner{ID: "handoff", DisplayName: "handoff"}}
	for _, b := range bs {
		if w := q.auth.who; w != nil && !w.grants.Allows(b.Name, false) {
			continue // a function sees only the buckets it was granted
		}
		res.Buckets = append(res.Buckets, bucketXML{Name: b.Name, CreationDate: isoTime(b.Created)})
	}
	writeXML(q.w, res)
	return nil
}

// bucketOp serves requests to "/bucket".
func (h *Handler) bucketOp(q *request) error {
	r := q.r
	ctx := r.Context()
	switch r.Method {
	case http.MethodPut:
		if len(r.URL.Query()) > 0 {
			return errNotImplemented // bucket sub-resources: acl, policy, versioning…
		}
		if _, err := q.smallBody(); err != nil { // CreateBucketConfiguration: region ignored
			return err
		}
		if err := h.cfg.Backend.CreateBucket(ctx, q.bucket); err != nil {
			return err
		}
		q.w.Header().Set("Location", "/"+q.bucket)
		q.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodDelete:
		if len(r.URL.Query()) > 0 {
			return errNotImplemented
		}
		if err := h.cfg.Backend.DeleteBucket(ctx, q.bucket); err != nil {
			return err
		}
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodHead:
		if _, err := h.cfg.Backend.HeadBucket(ctx, q.bucket); err != nil {
			return err
		}
		q.w.Header().Set("x-amz-bucket-region", h.cfg.Region)
		q.w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodPost:
		if has(r, "delete") {
			return h.deleteObjects(q)
		}
		return errNotImplemented
	case http.MethodGet:
		switch {
		case has(r, "location"):
			if _, err := h.cfg.Backend.HeadBucket(ctx, q.bucket); err != nil {
				return err
			}
			loc := h.cfg.Region
			if loc == "us-east-1" {
				loc = "" // as S3 answers for its default region
			}
			writeXML(q.w, locationConstraint{NS: s3NS, Location: loc})
			return nil
		case r.URL.Query().Get("list-type") == "2":
			return h.listObjectsV2(q)
		case len(r.URL.Query()) == 0 || has(r, "prefix") || has(r, "delimiter") || has(r, "marker") || has(r, "max-keys") || has(r, "encoding-type"):
			return h.listObjectsV1(q)
		}
		return errNotImplemented
	}
	return errMethodNotAllowed
}

// objectOp serves requests to "/bucket/key".
func (h *Handler) objectOp(q *request) error {
	r := q.r
	switch r.Method {
	case http.MethodPut:
		if r.Header.Get("x-amz-copy-source") != "" {
			return errNotImplemented
		}
		if has(r, "uploadId") {
			return h.uploadPart(q)
		}
		if len(r.URL.Query()) > 0 && !onlyPresign(r) {
			return errNotImplemented // tagging, acl, retention…
		}
		return h.putObject(q)
	case http.MethodGet, http.MethodHead:
		if has(r, "uploadId") && r.Method == http.MethodGet {
			return h.listParts(q)
		}
		return h.getObject(q)
	case http.MethodDelete:
		if has(r, "uploadId") {
			return h.abortUpload(q)
		}
		if err := store.CheckKey(q.key); err != nil {
			return err
		}
		if err := h.cfg.Backend.Delete(r.Context(), q.bucket, q.key); err != nil {
			return err
		}
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPost:
		switch {
		case has(r, "uploads"):
			return h.createUpload(q)
		case has(r, "uploadId"):
			return h.completeUpload(q)
		}
		return errNotImplemented
	}
	return errMethodNotAllowed
}

// onlyPresign reports whether every query parameter is part of a
// presigned URL's signature.
func onlyPresign(r *http.Request) bool {
	for k := range r.URL.Query() {
		if !strings.HasPrefix(k, "X-Amz-") {
			return false
		}
	}
	return true
}
