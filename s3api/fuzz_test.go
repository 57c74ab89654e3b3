package s3api

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

// Fuzz targets for every parser of untrusted bytes: run one with
// go test -fuzz=FuzzChunked -fuzztime=1m ./s3api

func FuzzChunked(f *testing.F) {
	f.Add(awsChunkedBody()[:200], false, false)
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), false, false)
	f.Add([]byte("3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:AAAA\r\n\r\n"), false, true)
	f.Add([]byte("fffffffffffffff;chunk-signature=00\r\n"), true, false)
	f.Fuzz(func(t *testing.T, body []byte, signed, trailers bool) {
		var s *chunkSigner
		if signed {
			s = &chunkSigner{key: []byte("k"), amzDate: "20260301T000000Z", scope: "20260301/us-east-1/s3/aws4_request", prev: strings.Repeat("0", 64)}
		}
		c := newChunkedReader(bytes.NewReader(body), s, trailers)
		n, err := io.Copy(io.Discard, c)
		if n > int64(len(body)) {
			t.Fatalf("decoded %d bytes from a %d-byte body", n, len(body))
		}
		if err == nil && signed {
			// Only a body signed with the key can decode; random bytes
			// with valid signatures are out of reach.
			t.Fatalf("forged signed body accepted: %q", body)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=5-", "bytes=-20", "bytes=0-1,2-3", "bytes=99999999999999999999-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, ok := parseRange(h)
		if !ok {
			return
		}
		if r.First < 0 || r.Suffix < 0 || (r.Last >= 0 && r.Last < r.First) {
			t.Fatalf("parseRange(%q) = %+v", h, r)
		}
		for _, size := range []int64{0, 1, 10, 1 << 40} {
			off, n, err := r.Resolve(size)
			if err == nil && (off < 0 || n <= 0 || off+n > size) {
				t.Fatalf("%q on %d bytes: offset %d length %d", h, size, off, n)
			}
		}
	})
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("ab", 32))
	f.Add("AWS AK:sig")
	f.Add("AWS4-HMAC-SHA256 Credential=/////")
	f.Fuzz(func(t *testing.T, h string) {
		a, ok := parseAuthorization(h)
		if !ok {
			return
		}
		if len(a.signature) != 64 || a.cred.accessKey == "" || len(a.signedHeaders) == 0 {
			t.Fatalf("accepted %q as %+v", h, a)
		}
	})
}

func FuzzDeleteXML(f *testing.F) {
	f.Add([]byte(`<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object><Object><Key>b/c</Key></Object></Delete>`))
	f.Add([]byte(`<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>&lt;x&gt;</Key></Object></Delete>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req deleteRequest
		if decodeXML(bytes.NewReader(body), &req) == nil && len(req.Objects) > len(body) {
			t.Fatalf("%d objects from %d bytes", len(req.Objects), len(body))
		}
	})
}

func FuzzCompleteXML(f *testing.F) {
	f.Add([]byte(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"abc"</ETag></Part></CompleteMultipartUpload>`))
	f.Add([]byte(`<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber></Part><Part></Part></CompleteMultipartUpload>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req completeRequest
		if decodeXML(bytes.NewReader(body), &req) == nil && len(req.Parts) > len(body) {
			t.Fatalf("%d parts from %d bytes", len(req.Parts), len(body))
		}
	})
}

// FuzzParseFunctionKey: an access key from the wire never panics the
// parser, and what it accepts mints back to a key that parses the same.
func FuzzParseFunctionKey(f *testing.F) {
	for _, s := range []string{"fn-wc-count_wresults_wscratch-*_rcorpus", "fn-a", "fn-a_r*", "fn-a__r", "fn-a_wx_rx", "handoff", "fn-a_r" + strings.Repeat("b", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ak string) {
		name, g, err := ParseFunctionKey(ak)
		if err != nil {
			return
		}
		again, _ := FunctionKey([]byte("k"), name, g)
		name2, g2, err := ParseFunctionKey(again)
		if err != nil || name2 != name || !slices.Equal(g.Read, g2.Read) || !slices.Equal(g.ReadWrite, g2.ReadWrite) {
			t.Fatalf("%q parsed to %q %+v, minted back to %q: %q %+v %v", ak, name, g, again, name2, g2, err)
		}
	})
}
