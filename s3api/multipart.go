package s3api

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/handoff-dev/handoff/store"
)

func (h *Handler) createUpload(q *request) error {
	if err := store.CheckKey(q.key); err != nil {
		return err
	}
	opts, err := putOptions(q.r)
	if err != nil {
		return err
	}
	id, err := h.cfg.Backend.CreateUpload(q.r.Context(), q.bucket, q.key, opts)
	if err != nil {
		return err
	}
	writeXML(q.w, initiateResult{NS: s3NS, Bucket: q.bucket, Key: q.key, UploadID: id})
	return nil
}

func partNumber(r *http.Request) (int, error) {
	n, err := strconv.Atoi(r.URL.Query().Get("partNumber"))
	if err != nil || n < 1 || n > store.MaxParts {
		return 0, errInvalidPartNumber
	}
	return n, nil
}

func (h *Handler) uploadPart(q *request) error {
	n, err := partNumber(q.r)
	if err != nil {
		return err
	}
	sum, err := contentMD5(q.r)
	if err != nil {
		return err
	}
	body, size, err := q.body()
	if err != nil {
		return err
	}
	p, err := h.cfg.Backend.UploadPart(q.r.Context(), q.bucket, q.key, q.r.URL.Query().Get("uploadId"), n, body, size, store.PartOptions{MD5: sum, BlockTag: sum == nil})
	if err != nil {
		return bodyError(err)
	}
	q.w.Header().Set("ETag", `"`+p.ETag+`"`)
	q.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Handler) completeUpload(q *request) error {
	data, err := q.smallBody()
	if err != nil {
		return err
	}
	var req completeRequest
	if err := decodeXML(bytes.NewReader(data), &req); err != nil {
		return err
	}
	if len(req.Parts) == 0 || len(req.Parts) > store.MaxParts {
		return errMalformedXML
	}
	parts := make([]store.CompletePart, len(req.Parts))
	for i, p := range req.Parts {
		parts[i] = store.CompletePart{Number: p.PartNumber, ETag: p.ETag}
	}
	info, err := h.cfg.Backend.CompleteUpload(q.r.Context(), q.bucket, q.key, q.r.URL.Query().Get("uploadId"), parts)
	if err != nil {
		return err
	}
	writeXML(q.w, completeResult{NS: s3NS, Location: "/" + q.bucket + "/" + q.key, Bucket: q.bucket, Key: q.key, ETag: `"` + info.ETag + `"`})
	return nil
}

func (h *Handler) abortUpload(q *request) error {
	if err := h.cfg.Backend.AbortUpload(q.r.Context(), q.bucket, q.key, q.r.URL.Query().Get("uploadId")); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listParts(q *request) error {
	qv := q.r.URL.Query()
	max := 1000
	if v := qv.Get("max-parts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errInvalidArgument
		}
		max = min(n, 1000)
	}
	after := 0
	if v := qv.Get("part-number-marker"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errInvalidArgument
		}
		after = n
	}
	res, err := h.cfg.Backend.ListParts(q.r.Context(), q.bucket, q.key, qv.Get("uploadId"), store.ListPartsOptions{After: after, Max: max})
	if err != nil {
		return err
	}
	out := listPartsResult{
		NS: s3NS, Bucket: q.bucket, Key: q.key, UploadID: qv.Get("uploadId"), PartNumberMarker: after,
		NextPartNumberMarker: res.Next, MaxParts: max, IsTruncated: res.Truncated, StorageClass: "STANDARD",
	}
	for _, p := range res.Parts {
		out.Parts = append(out.Parts, partXML{PartNumber: p.Number, LastModified: isoTime(p.Modified), ETag: `"` + p.ETag + `"`, Size: p.Size})
	}
	writeXML(q.w, out)
	return nil
}
