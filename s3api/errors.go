package s3api

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"

	"github.com/handoff-dev/handoff/store"
)

// apiError is an S3 error: a stable code, an HTTP status and a sentence
// that says what to do.
type apiError struct {
	Code    string
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(code string, status int, msg string) *apiError {
	return &apiError{Code: code, Status: status, Message: msg}
}

var (
	errAccessDenied        = errorf("AccessDenied", http.StatusForbidden, "Access denied: sign the request with AWS Signature Version 4 and the node's access key.")
	errInvalidAccessKey    = errorf("InvalidAccessKeyId", http.StatusForbidden, "The access key id you provided does not exist on this node; use the key the node agent was configured with.")
	errSignatureMismatch   = errorf("SignatureDoesNotMatch", http.StatusForbidden, "The request signature we calculated does not match the signature you provided; check your secret key and signing method.")
	errAuthMalformed       = errorf("AuthorizationHeaderMalformed", http.StatusBadRequest, "The Authorization header is malformed; expected AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/s3/aws4_request, SignedHeaders=..., Signature=...")
	errQueryAuthMalformed  = errorf("AuthorizationQueryParametersError", http.StatusBadRequest, "The presigned URL's X-Amz-* parameters are malformed or incomplete; presign it again.")
	errTimeSkewed          = errorf("RequestTimeTooSkewed", http.StatusForbidden, "The difference between the request time and the server's time is too large (over 15 minutes); fix the client's clock.")
	errExpiredPresign      = errorf("AccessDenied", http.StatusForbidden, "Request has expired; presign the URL again.")
	errMissingContentSHA   = errorf("InvalidRequest", http.StatusBadRequest, "Missing required header x-amz-content-sha256; send the payload's SHA-256, UNSIGNED-PAYLOAD or a streaming value.")
	errContentSHAMismatch  = errorf("XAmzContentSHA256Mismatch", http.StatusBadRequest, "The provided x-amz-content-sha256 header does not match what was computed; send the body again.")
	errBadDigest           = errorf("BadDigest", http.StatusBadRequest, "The Content-MD5 you specified did not match what we received; send the body again.")
	errInvalidDigest       = errorf("InvalidDigest", http.StatusBadRequest, "The Content-MD5 you specified is not valid base64 of 16 bytes.")
	errIncompleteBody      = errorf("IncompleteBody", http.StatusBadRequest, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
	errMissingLength       = errorf("MissingContentLength", http.StatusLengthRequired, "You must provide the Content-Length HTTP header (or x-amz-decoded-content-length for aws-chunked bodies).")
	errMalformedXML        = errorf("MalformedXML", http.StatusBadRequest, "The XML you provided was not well-formed or did not validate against our published schema.")
	errMethodNotAllowed    = errorf("MethodNotAllowed", http.StatusMethodNotAllowed, "The specified method is not allowed against this resource.")
	errNotImplemented      = errorf("NotImplemented", http.StatusNotImplemented, "A header or query you provided implies functionality that this store does not implement.")
	errInvalidArgument     = errorf("InvalidArgument", http.StatusBadRequest, "Invalid argument.")
	errChunkMalformed      = errorf("IncompleteBody", http.StatusBadRequest, "The aws-chunked body is malformed; send it again.")
	errChunkSignature      = errorf("SignatureDoesNotMatch", http.StatusForbidden, "A chunk signature of the aws-chunked body does not match; check your secret key and send the body again.")
	errInternal            = errorf("InternalError", http.StatusInternalServerError, "We encountered an internal error; please try again.")
	errEntityTooLarge      = errorf("EntityTooLarge", http.StatusBadRequest, "Your proposed upload exceeds the maximum allowed object size; use a multipart upload.")
	errInvalidRange        = errorf("InvalidRange", http.StatusRequestedRangeNotSatisfiable, "The requested range is not satisfiable; start it before the object's end.")
	errPreconditionFailed  = errorf("PreconditionFailed", http.StatusPreconditionFailed, "At least one of the preconditions you specified did not hold.")
	errInvalidPartNumber   = errorf("InvalidArgument", http.StatusBadRequest, "Part number must be an integer between 1 and 10000, inclusive.")
	errTooManyDeleteKeys   = errorf("MalformedXML", http.StatusBadRequest, "A multi-object delete names 1 to 1000 keys; split the request.")
	errInvalidMaxKeys      = errorf("InvalidArgument", http.StatusBadRequest, "max-keys must be a non-negative integer.")
	errInvalidContinuation = errorf("InvalidArgument", http.StatusBadRequest, "The continuation token provided is incorrect; use NextContinuationToken from the previous page.")
	errInvalidTTL          = errorf("InvalidArgument", http.StatusBadRequest, "x-handoff-ttl must be a positive Go duration (\"90s\", \"2h\") or a number of seconds.")
	errInvalidReads        = errorf("InvalidArgument", http.StatusBadRequest, fmt.Sprintf("x-handoff-reads must be a number of GETs from 1 to %d after which the object is deleted.", store.MaxReads))
	errInvalidReplicas     = errorf("InvalidArgument", http.StatusBadRequest, fmt.Sprintf("x-handoff-replicas must be a number of copies from 1 to %d.", store.MaxReplicas))
)

// storeError maps a store error to its S3 error. Unknown errors are
// InternalError; the caller logs them.
func storeError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	m := func(code string, status int) *apiError { return errorf(code, status, err.Error()) }
	switch {
	case errors.Is(err, store.ErrNoSuchBucket):
		return m("NoSuchBucket", http.StatusNotFound)
	case errors.Is(err, store.ErrNoSuchKey):
		return m("NoSuchKey", http.StatusNotFound)
	case errors.Is(err, store.ErrBucketExists):
		return m("BucketAlreadyOwnedByYou", http.StatusConflict)
	case errors.Is(err, store.ErrBucketNotEmpty):
		return m("BucketNotEmpty", http.StatusConflict)
	case errors.Is(err, store.ErrInvalidBucketName):
		return m("InvalidBucketName", http.StatusBadRequest)
	case errors.Is(err, store.ErrInvalidName):
		return m("KeyTooLongError", http.StatusBadRequest)
	case errors.Is(err, store.ErrInvalidRange):
		return m("InvalidRange", http.StatusRequestedRangeNotSatisfiable)
	case errors.Is(err, store.ErrQuota):
		return m("QuotaExceeded", http.StatusInsufficientStorage)
	case errors.Is(err, store.ErrTooLarge):
		return m("EntityTooLarge", http.StatusBadRequest)
	case errors.Is(err, store.ErrTooSmall):
		return m("EntityTooSmall", http.StatusBadRequest)
	case errors.Is(err, store.ErrChecksum), errors.Is(err, store.ErrLost):
		return m("InternalError", http.StatusInternalServerError)
	case errors.Is(err, store.ErrBadDigest):
		return m("BadDigest", http.StatusBadRequest)
	case errors.Is(err, store.ErrIncompleteBody):
		return m("IncompleteBody", http.StatusBadRequest)
	case errors.Is(err, store.ErrNoSuchUpload):
		return m("NoSuchUpload", http.StatusNotFound)
	case errors.Is(err, store.ErrInvalidPart):
		return m("InvalidPart", http.StatusBadRequest)
	case errors.Is(err, store.ErrInvalidPartOrder):
		return m("InvalidPartOrder", http.StatusBadRequest)
	case errors.Is(err, store.ErrInvalidArgument):
		return m("InvalidArgument", http.StatusBadRequest)
	case errors.Is(err, store.ErrClosed), errors.Is(err, store.ErrUnavailable):
		return m("ServiceUnavailable", http.StatusServiceUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return m("RequestTimeout", http.StatusBadRequest)
	}
	return errorf("InternalError", http.StatusInternalServerError, "We encountered an internal error; please try again.")
}

type errorBody struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	BucketN   string   `xml:"BucketName,omitempty"`
	Key       string   `xml:"Key,omitempty"`
	RequestID string   `xml:"RequestId"`
}
