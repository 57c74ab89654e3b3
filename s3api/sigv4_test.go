package s3api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
)

// The example credentials and requests of the AWS documentation on
// Signature Version 4 for S3 ("Examples: signature calculations",
// "Example: PUT Object" of the chunked upload page), used as test vectors.
const (
	awsAccess = "AKIAIOSFODNN7EXAMPLE"
	awsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

var awsTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

// nopBackend stands in where only authentication is tested.
type nopBackend struct{ store.Backend }

func awsHandler(t *testing.T, b store.Backend) *Handler {
	t.Helper()
	if b == nil {
		b = nopBackend{}
	}
	h, err := New(Config{Backend: b, AccessKey: awsAccess, SecretKey: awsSecret, Clock: clock.NewFake(awsTime), Domains: []string{"s3.amazonaws.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSigV4GetObjectVector(t *testing.T) {
	r := httptest.NewRequest("GET", "http://examplebucket.s3.amazonaws.com/test.txt", nil)
	r.Header.Set("Range", "bytes=0-9")
	r.Header.Set("x-amz-content-sha256", emptySHA256)
	r.Header.Set("x-amz-date", "20130524T000000Z")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
	h := awsHandler(t, nil)
	if _, err := h.authenticate(r); err != nil {
		t.Fatalf("AWS's own example refused: %v", err)
	}
	if b, k := h.route(r); b != "examplebucket" || k != "test.txt" {
		t.Fatalf("virtual host route: %q %q", b, k)
	}
	r.Header.Set("Range", "bytes=0-10")
	if _, err := h.authenticate(r); err != errSignatureMismatch {
		t.Fatalf("changed signed header: %v", err)
	}
}

func TestSigV4PresignedVector(t *testing.T) {
	u := "http://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
	h := awsHandler(t, nil)
	if _, err := h.authenticate(httptest.NewRequest("GET", u, nil)); err != nil {
		t.Fatalf("AWS's presigned example refused: %v", err)
	}
	h.cfg.Clock.(*clock.Fake).Advance(86401 * time.Second)
	if _, err := h.authenticate(httptest.NewRequest("GET", u, nil)); err != errExpiredPresign {
		t.Fatalf("expired presigned URL: %v", err)
	}
}

// awsChunkedBody builds the body of AWS's chunked PUT example: 65536 then
// 1024 bytes of 'a', with the chunk signatures the documentation lists.
func awsChunkedBody() []byte {
	var b bytes.Buffer
	b.WriteString("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n")
	b.Write(bytes.Repeat([]byte("a"), 65536))
	b.WriteString("\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n")
	b.Write(bytes.Repeat([]byte("a"), 1024))
	b.WriteString("\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n")
	return b.Bytes()
}

func awsChunkedRequest(body []byte) *http.Request {
	r := httptest.NewRequest("PUT", "http://s3.amazonaws.com/examplebucket/chunkObject.txt", bytes.NewReader(body))
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("Content-Length", "66824")
	r.Header.Set("x-amz-content-sha256", streamingPayload)
	r.Header.Set("x-amz-date", "20130524T000000Z")
	r.Header.Set("x-amz-decoded-content-length", "66560")
	r.Header.Set("x-amz-storage-class", "REDUCED_REDUNDANCY")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
	return r
}

func TestChunkedVector(t *testing.T) {
	body := awsChunkedBody()
	if len(body) != 66824 {
		t.Fatalf("example body is %d bytes, the documentation says 66824", len(body))
	}
	h := awsHandler(t, nil)
	r := awsChunkedRequest(body)
	a, aerr := h.authenticate(r)
	if aerr != nil {
		t.Fatalf("seed signature refused: %v", aerr)
	}
	got, err := io.ReadAll(newChunkedReader(r.Body, &a.signer, false))
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("a"), 66560)) {
		t.Fatalf("decoded %d bytes, %v", len(got), err)
	}

	// Any change to data or signatures fails the read.
	for i, at := range []int{100, 65536 + 90, len(body) - 10} {
		bad := bytes.Clone(body)
		bad[at] ^= 1
		r := awsChunkedRequest(bad)
		a, _ := h.authenticate(r)
		if _, err := io.ReadAll(newChunkedReader(r.Body, &a.signer, false)); err == nil {
			t.Errorf("change %d at byte %d went unnoticed", i, at)
		}
	}
}

// chunked encodes data as an aws-chunked body of chunks of n bytes, signed
// with s when it is not nil, with trailers when given.
func chunked(data []byte, n int, s *chunkSigner, trailers map[string]string) []byte {
	var b bytes.Buffer
	sign := func(chunk []byte) string {
		if s == nil {
			return ""
		}
		sig := s.chunk(sha256Sum(chunk))
		s.prev = sig
		return ";chunk-signature=" + sig
	}
	for len(data) > 0 {
		c := data[:min(n, len(data))]
		data = data[len(c):]
		fmt.Fprintf(&b, "%x%s\r\n", len(c), sign(c))
		b.Write(c)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "0%s\r\n", sign(nil))
	if trailers == nil {
		b.WriteString("\r\n")
		return b.Bytes()
	}
	var signed strings.Builder
	for k, v := range trailers {
		fmt.Fprintf(&b, "%s:%s\r\n", k, v)
		signed.WriteString(k + ":" + v + "\n")
	}
	if s != nil {
		fmt.Fprintf(&b, "x-amz-trailer-signature:%s\r\n", s.trailer(sha256Sum([]byte(signed.String()))))
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func TestChunkedTrailers(t *testing.T) {
	key := signingKey("secret", credential{date: "20260301", region: "us-east-1", service: "s3"})
	newSigner := func() *chunkSigner {
		return &chunkSigner{key: key, amzDate: "20260301T000000Z", scope: "20260301/us-east-1/s3/aws4_request", prev: strings.Repeat("0", 64)}
	}
	data := bytes.Repeat([]byte("0123456789"), 3000)
	tr := map[string]string{"x-amz-checksum-crc32c": "sOO8/Q=="}

	body := chunked(data, 8192, newSigner(), tr)
	c := newChunkedReader(bytes.NewReader(body), newSigner(), true)
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) || c.Trailer["x-amz-checksum-crc32c"] != "sOO8/Q==" {
		t.Fatalf("signed with trailer: %d bytes, %v, %v", len(got), err, c.Trailer)
	}

	body = chunked(data, 8192, nil, tr)
	got, err = io.ReadAll(newChunkedReader(bytes.NewReader(body), nil, true))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("unsigned with trailer: %v", err)
	}

	body = chunked(data, 8192, newSigner(), map[string]string{"x-amz-checksum-crc32c": "AAAAAA=="})
	body = bytes.Replace(body, []byte("AAAAAA=="), []byte("BBBBBB=="), 1)
	if _, err := io.ReadAll(newChunkedReader(bytes.NewReader(body), newSigner(), true)); !errors.Is(err, errChunkSig) {
		t.Fatalf("changed trailer: %v", err)
	}
}

func TestParseAuthorization(t *testing.T) {
	good := "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("ab", 32)
	a, ok := parseAuthorization(good)
	if !ok || a.cred.accessKey != "AK" || a.cred.region != "us-east-1" || len(a.signedHeaders) != 2 {
		t.Fatalf("good header: %+v %v", a, ok)
	}
	bad := []string{
		"",
		"AWS AK:sig",
		"AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host",
		strings.Replace(good, "s3/aws4_request", "ec2/aws4_request", 1),
		strings.Replace(good, "20130524", "2013-05-24", 1),
		strings.Replace(good, "SignedHeaders=host;", "SignedHeaders=", 1),
		strings.Replace(good, "host;x-amz-date", "x-amz-date", 1), // host must be signed
		strings.Replace(good, "host;", "Host;", 1),
		good + ", Signature=" + strings.Repeat("ab", 32),
		strings.Replace(good, "Signature=ab", "Signature=zz", 1),
		good + ", Extra=1",
	}
	for _, h := range bad {
		if _, ok := parseAuthorization(h); ok {
			t.Errorf("accepted %q", h)
		}
	}
}

func TestAWSEscape(t *testing.T) {
	cases := map[string]string{
		"/a b/c+d~e": "/a%20b/c%2Bd~e",
		"/ünï":       "/%C3%BCn%C3%AF",
		"/x*y'(z)":   "/x%2Ay%27%28z%29",
	}
	for in, want := range cases {
		if got := awsEscape(in, false); got != want {
			t.Errorf("awsEscape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := canonicalQuery("b=2&a=1&a=0&X-Amz-Signature=s&c", "X-Amz-Signature"); got != "a=0&a=1&b=2&c=" {
		t.Errorf("canonicalQuery: %q", got)
	}
}

func TestParseRange(t *testing.T) {
	good := map[string]store.Range{
		"bytes=0-9":    {First: 0, Last: 9},
		"bytes=5-":     {First: 5, Last: -1},
		"bytes=-20":    {Suffix: 20},
		" bytes=1-1 ":  {First: 1, Last: 1},
		"bytes=100-99": {}, // reversed: ignored
	}
	for h, want := range good {
		got, ok := parseRange(h)
		if h == "bytes=100-99" {
			if ok {
				t.Errorf("%q accepted", h)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("parseRange(%q) = %+v, %v", h, got, ok)
		}
	}
	for _, h := range []string{"", "bytes=", "bytes=-", "bytes=a-b", "bytes=0-1,3-4", "items=0-1", "bytes=-0", "bytes=+1-2", "bytes=99999999999999999999-"} {
		if _, ok := parseRange(h); ok {
			t.Errorf("%q accepted", h)
		}
	}
}
