package s3api

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// authed is what a verified request carries on to its body: the payload
// mode it declared and, for streaming uploads, what the chunk signatures
// chain from.
type authed struct {
	payload string // x-amz-content-sha256: a hex SHA-256 or one of the special values
	signer  chunkSigner
	who     *principal // nil: the admin credential
}

// authenticate verifies the request's SigV4 signature, in the
// Authorization header or in a presigned URL's query.
func (h *Handler) authenticate(r *http.Request) (*authed, *apiError) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return h.authHeader(r, auth)
	}
	if r.URL.Query().Get("X-Amz-Algorithm") != "" {
		return h.authQuery(r)
	}
	return nil, errAccessDenied
}

func (h *Handler) authHeader(r *http.Request, auth string) (*authed, *apiError) {
	if strings.HasPrefix(auth, "AWS ") {
		return nil, errorf("AccessDenied", http.StatusForbidden, "Signature Version 2 is not supported; sign with AWS Signature Version 4.")
	}
	a, ok := parseAuthorization(auth)
	if !ok {
		return nil, errAuthMalformed
	}
	secret, who, kerr := h.lookupKey(a.cred.accessKey)
	if kerr != nil {
		return nil, kerr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	var t time.Time
	var err error
	if amzDate != "" {
		t, err = time.Parse(amzDateFormat, amzDate)
	} else if d := r.Header.Get("Date"); d != "" {
		t, err = http.ParseTime(d)
		amzDate = t.UTC().Format(amzDateFormat)
	} else {
		return nil, errorf("AccessDenied", http.StatusForbidden, "The request has no X-Amz-Date or Date header; sign it with a date.")
	}
	if err != nil {
		return nil, errorf("AccessDenied", http.StatusForbidden, "The request's X-Amz-Date is not in the form 20060102T150405Z.")
	}
	if amzDate[:8] != a.cred.date {
		return nil, errAuthMalformed
	}
	if skew := h.cfg.Clock.Now().Sub(t); skew > maxSkew || skew < -maxSkew {
		return nil, errTimeSkewed
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch payload {
	case unsignedPayload, streamingPayload, streamingTrailer, streamingUnsignedTrlr:
	case "":
		return nil, errMissingContentSHA
	default:
		if !validSignature(strings.ToLower(payload)) {
			return nil, errorf("InvalidArgument", http.StatusBadRequest, "x-amz-content-sha256 must be 64 hex digits or UNSIGNED-PAYLOAD or a STREAMING- value.")
		}
	}
	key := signingKey(secret, a.cred)
	cr := canonicalRequest(r, a.signedHeaders, payload, "")
	want := hexHMAC(key, stringToSign(amzDate, a.cred, cr))
	if !equalSig(want, a.signature) {
		return nil, errSignatureMismatch
	}
	return &authed{payload: payload, signer: chunkSigner{key: key, amzDate: amzDate, scope: a.cred.scope(), prev: a.signature}, who: who}, nil
}

func (h *Handler) authQuery(r *http.Request) (*authed, *apiError) {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return nil, errQueryAuthMalformed
	}
	cred, ok := parseCredential(q.Get("X-Amz-Credential"))
	if !ok {
		return nil, errQueryAuthMalformed
	}
	signed, ok := parseSignedHeaders(q.Get("X-Amz-SignedHeaders"))
	if !ok {
		return nil, errQueryAuthMalformed
	}
	sig := q.Get("X-Amz-Signature")
	if !validSignature(sig) {
		return nil, errQueryAuthMalformed
	}
	amzDate := q.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil || amzDate[:8] != cred.date {
		return nil, errQueryAuthMalformed
	}
	expires, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || expires < 1 || time.Duration(expires)*time.Second > maxPresign {
		return nil, errorf("AuthorizationQueryParametersError", http.StatusBadRequest, "X-Amz-Expires must be a number of seconds from 1 to 604800 (7 days).")
	}
	secret, who, kerr := h.lookupKey(cred.accessKey)
	if kerr != nil {
		return nil, kerr
	}
	now := h.cfg.Clock.Now()
	if now.Before(t.Add(-maxSkew)) {
		return nil, errorf("AccessDenied", http.StatusForbidden, "Request is not valid yet; check the clock of the machine that presigned it.")
	}
	if now.After(t.Add(time.Duration(expires) * time.Second)) {
		return nil, errExpiredPresign
	}
	payload := q.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = unsignedPayload
	}
	key := signingKey(secret, cred)
	cr := canonicalRequest(r, signed, payload, "X-Amz-Signature")
	if !equalSig(hexHMAC(key, stringToSign(amzDate, cred, cr)), sig) {
		return nil, errSignatureMismatch
	}
	if payload != unsignedPayload && !validSignature(strings.ToLower(payload)) {
		return nil, errQueryAuthMalformed
	}
	return &authed{payload: payload, who: who}, nil
}

func hexHMAC(key []byte, s string) string {
	const hexdig = "0123456789abcdef"
	sum := hmacSHA256(key, s)
	out := make([]byte, 2*len(sum))
	for i, c := range sum {
		out[2*i], out[2*i+1] = hexdig[c>>4], hexdig[c&15]
	}
	return string(out)
}
