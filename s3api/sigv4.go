package s3api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Signature Version 4, as S3 verifies it: the request is reduced to a
// canonical form, hashed, and signed with a key derived from the secret,
// the date, the region and the service. Written against the AWS
// documentation ("Signature Version 4 signing process", "Authenticating
// requests: using query parameters", "Signature calculations for the
// Authorization header: transferring payload in multiple chunks").

const (
	sigAlgorithm  = "AWS4-HMAC-SHA256"
	amzDateFormat = "20060102T150405Z"
	scopeDate     = "20060102"
	maxSkew       = 15 * time.Minute
	maxPresign    = 7 * 24 * time.Hour

	unsignedPayload       = "UNSIGNED-PAYLOAD"
	streamingPayload      = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingTrailer      = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTrlr = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	emptySHA256           = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// credential is the parsed Credential of a signature: access key and
// scope.
type credential struct {
	accessKey string
	date      string // yyyymmdd
	region    string
	service   string
}

func (c credential) scope() string {
	return c.date + "/" + c.region + "/" + c.service + "/aws4_request"
}

// authHeader is a parsed Authorization header of SigV4.
type authHeader struct {
	cred          credential
	signedHeaders []string // lower case, sorted as sent
	signature     string   // 64 hex digits
}

// parseCredential parses "AKID/20130524/us-east-1/s3/aws4_request". The
// access key may itself hold no slash.
func parseCredential(s string) (credential, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 || parts[0] == "" || parts[2] == "" || parts[4] != "aws4_request" || parts[3] != "s3" {
		return credential{}, false
	}
	if _, err := time.Parse(scopeDate, parts[1]); err != nil {
		return credential{}, false
	}
	return credential{accessKey: parts[0], date: parts[1], region: parts[2], service: parts[3]}, true
}

// parseSignedHeaders parses "host;range;x-amz-date": lower case names,
// separated by semicolons, host among them.
func parseSignedHeaders(s string) ([]string, bool) {
	if s == "" {
		return nil, false
	}
	names := strings.Split(s, ";")
	host := false
	for _, n := range names {
		if n == "" || n != strings.ToLower(n) || strings.ContainsAny(n, " \t:,") {
			return nil, false
		}
		host = host || n == "host"
	}
	return names, host
}

func validSignature(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// parseAuthorization parses the value of a SigV4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f…
//
// The three fields may come in any order, with or without spaces after
// the commas; each must appear once.
func parseAuthorization(h string) (authHeader, bool) {
	var a authHeader
	rest, ok := strings.CutPrefix(h, sigAlgorithm+" ")
	if !ok {
		return a, false
	}
	var seen [3]bool
	for _, field := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			return a, false
		}
		switch k {
		case "Credential":
			if seen[0] {
				return a, false
			}
			seen[0] = true
			if a.cred, ok = parseCredential(v); !ok {
				return a, false
			}
		case "SignedHeaders":
			if seen[1] {
				return a, false
			}
			seen[1] = true
			if a.signedHeaders, ok = parseSignedHeaders(v); !ok {
				return a, false
			}
		case "Signature":
			if seen[2] {
				return a, false
			}
			seen[2] = true
			if !validSignature(v) {
				return a, false
			}
			a.signature = v
		default:
			return a, false
		}
	}
	return a, seen[0] && seen[1] && seen[2]
}

// signingKey derives the key for one day, region and service.
func signingKey(secret string, c credential) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), c.date)
	k = hmacSHA256(k, c.region)
	k = hmacSHA256(k, c.service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stringToSign builds the string a request signature signs.
func stringToSign(amzDate string, c credential, canonicalRequest string) string {
	return sigAlgorithm + "\n" + amzDate + "\n" + c.scope() + "\n" + sha256Hex([]byte(canonicalRequest))
}

// canonicalRequest builds the canonical form of r. skipQuery names a query
// parameter left out (X-Amz-Signature of a presigned URL).
func canonicalRequest(r *http.Request, signed []string, payloadHash, skipQuery string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(awsEscape(r.URL.Path, false))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery, skipQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// headerValue is a header's canonical value: its values joined by commas,
// each trimmed and with inner runs of spaces folded to one. Go's server
// moves Host, Content-Length and Transfer-Encoding out of r.Header.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v
		}
		return strconv.FormatInt(r.ContentLength, 10)
	case "transfer-encoding":
		return strings.Join(r.TransferEncoding, ",")
	}
	vals := r.Header.Values(name)
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// canonicalQuery sorts the query's parameters by name, then value, each
// percent-encoded as AWS does.
func canonicalQuery(raw, skip string) string {
	q, _ := url.ParseQuery(raw) // bad pairs dropped, as a signer would not have sent them
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range q {
		if k == skip {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, kv{awsEscape(k, true), awsEscape(v, true)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// awsEscape percent-encodes every byte but the unreserved characters
// (A-Z a-z 0-9 - . _ ~), and '/' too unless slash is set, in upper-case
// hex: the URI encoding of SigV4.
func awsEscape(s string, slash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		case c == '/' && !slash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}

func equalSig(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
