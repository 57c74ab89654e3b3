package s3api

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/handoff-dev/handoff/store"
)

// maxKeys reads max-keys: default and cap 1000, 0 allowed.
func maxKeys(r *http.Request) (int, error) {
	v := r.URL.Query().Get("max-keys")
	if v == "" {
		return store.MaxListKeys, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errInvalidMaxKeys
	}
	return min(n, store.MaxListKeys), nil
}

// encodeName applies encoding-type=url to a key or prefix in a listing.
func encodeName(s string, url bool) string {
	if !url {
		return s
	}
	return awsEscape(s, false)
}

func (h *Handler) list(q *request, opts store.ListOptions, max int) (store.ListResult, error) {
	if max == 0 {
		// Still report an absent bucket.
		_, err := h.cfg.Backend.HeadBucket(q.r.Context(), q.bucket)
		return store.ListResult{}, err
	}
	opts.Max = max
	return h.cfg.Backend.List(q.r.Context(), q.bucket, opts)
}

func contents(res store.ListResult, url bool) ([]objectXML, []prefixXML) {
	objs := make([]objectXML, 0, len(res.Objects))
	for _, o := range res.Objects {
		objs = append(objs, objectXML{Key: encodeName(o.Key, url), LastModified: isoTime(o.Modified), ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD"})
	}
	var cps []prefixXML
	for _, p := range res.CommonPrefixes {
		cps = append(cps, prefixXML{Prefix: encodeName(p, url)})
	}
	return objs, cps
}

func (h *Handler) listObjectsV2(q *request) error {
	qv := q.r.URL.Query()
	max, err := maxKeys(q.r)
	if err != nil {
		return err
	}
	opts := store.ListOptions{Prefix: qv.Get("prefix"), Delimiter: qv.Get("delimiter"), After: qv.Get("start-after")}
	token := qv.Get("continuation-token")
	if _, ok := qv["continuation-token"]; ok {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(after) == 0 {
			return errInvalidContinuation
		}
		opts.After = string(after)
	}
	res, err := h.list(q, opts, max)
	if err != nil {
		return err
	}
	url := qv.Get("encoding-type") == "url"
	out := listV2Result{
		NS: s3NS, Name: q.bucket, Prefix: encodeName(opts.Prefix, url), Delimiter: encodeName(opts.Delimiter, url),
		MaxKeys: max, IsTruncated: res.Truncated, ContinuationToken: token, StartAfter: encodeName(qv.Get("start-after"), url),
	}
	if url {
		out.EncodingType = "url"
	}
	out.Contents, out.CommonPrefixes = contents(res, url)
	out.KeyCount = len(out.Contents) + len(out.CommonPrefixes)
	if res.Truncated {
		out.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(res.Next))
	}
	writeXML(q.w, out)
	return nil
}

func (h *Handler) listObjectsV1(q *request) error {
	qv := q.r.URL.Query()
	max, err := maxKeys(q.r)
	if err != nil {
		return err
	}
	opts := store.ListOptions{Prefix: qv.Get("prefix"), Delimiter: qv.Get("delimiter"), After: qv.Get("marker")}
	res, err := h.list(q, opts, max)
	if err != nil {
		return err
	}
	url := qv.Get("encoding-type") == "url"
	out := listV1Result{
		NS: s3NS, Name: q.bucket, Prefix: encodeName(opts.Prefix, url), Marker: encodeName(opts.After, url),
		Delimiter: encodeName(opts.Delimiter, url), MaxKeys: max, IsTruncated: res.Truncated,
	}
	if url {
		out.EncodingType = "url"
	}
	if res.Truncated {
		out.NextMarker = encodeName(res.Next, url)
	}
	out.Contents, out.CommonPrefixes = contents(res, url)
	writeXML(q.w, out)
	return nil
}
