package s3api_test

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/handoff-dev/handoff/store/local"
)

// do signs and sends a hand-made request, for the errors an S3 client
// library never provokes, and returns the status and the S3 error code.
func (s *server) do(t *testing.T, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	r, _ := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if _, ok := hdr["X-Amz-Content-Sha256"]; !ok {
		sum := sha256.Sum256([]byte(body))
		r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	}
	for k, v := range hdr {
		if k == "X-Amz-Date" {
			continue
		}
		r.Header.Set(k, v)
	}
	r = signer.SignV4(*r, testAccess, testSecret, "", "us-east-1")
	if d, ok := hdr["X-Amz-Date"]; ok {
		// Re-sign as of that date: the signer stamps the current time.
		r.Header.Set("X-Amz-Date", d)
	}
	if hdr["X-Amz-Content-Sha256"] == "-" {
		r.Header.Del("X-Amz-Content-Sha256")
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Code string }
	b, _ := io.ReadAll(resp.Body)
	xml.Unmarshal(b, &e)
	return resp.StatusCode, e.Code
}

func TestErrorCodes(t *testing.T) {
	s := startServer(t, local.Config{MaxPut: 1 << 20})
	if st, c := s.do(t, "PUT", "/errs", "", nil); st != 200 {
		t.Fatalf("create bucket: %d %s", st, c)
	}
	wrongSHA := sha256.Sum256([]byte("something else"))
	wrongMD5 := md5.Sum([]byte("something else"))
	cases := []struct {
		name         string
		method, path string
		body         string
		hdr          map[string]string
		status       int
		code         string
	}{
		{"sha mismatch", "PUT", "/errs/k", "body", map[string]string{"X-Amz-Content-Sha256": hex.EncodeToString(wrongSHA[:])}, 400, "XAmzContentSHA256Mismatch"},
		{"md5 mismatch", "PUT", "/errs/k", "body", map[string]string{"Content-Md5": base64.StdEncoding.EncodeToString(wrongMD5[:])}, 400, "BadDigest"},
		{"bad md5", "PUT", "/errs/k", "body", map[string]string{"Content-Md5": "nope"}, 400, "InvalidDigest"},
		{"too large", "PUT", "/errs/k", strings.Repeat("x", 1<<20+1), nil, 400, "EntityTooLarge"},
		{"bad bucket name", "PUT", "/Bad_Bucket", "", nil, 400, "InvalidBucketName"},
		{"no such bucket", "GET", "/nobucket/k", "", nil, 404, "NoSuchBucket"},
		{"no such key", "GET", "/errs/nokey", "", nil, 404, "NoSuchKey"},
		{"no such upload", "PUT", "/errs/k?partNumber=1&uploadId=abc", "x", nil, 404, "NoSuchUpload"},
		{"bad part number", "PUT", "/errs/k?partNumber=10001&uploadId=abc", "x", nil, 400, "InvalidArgument"},
		{"bad multi-delete XML", "POST", "/errs?delete", "<Delete><Object>", nil, 400, "MalformedXML"},
		{"bad complete XML", "POST", "/errs/k?uploadId=abc", "not xml", nil, 400, "MalformedXML"},
		{"bad TTL", "PUT", "/errs/k", "x", map[string]string{"X-Handoff-Ttl": "-5s"}, 400, "InvalidArgument"},
		{"bad max-keys", "GET", "/errs?list-type=2&max-keys=-1", "", nil, 400, "InvalidArgument"},
		{"bad continuation", "GET", "/errs?list-type=2&continuation-token=%25%25", "", nil, 400, "InvalidArgument"},
		{"copy", "PUT", "/errs/k2", "", map[string]string{"X-Amz-Copy-Source": "/errs/k"}, 501, "NotImplemented"},
		{"skewed clock", "GET", "/", "", map[string]string{"X-Amz-Date": sameDaySkew(time.Now().UTC()).Format("20060102T150405Z")}, 403, "RequestTimeTooSkewed"},
		{"no content sha", "PUT", "/errs/k", "x", map[string]string{"X-Amz-Content-Sha256": "-"}, 400, "InvalidRequest"},
	}
	for _, c := range cases {
		st, code := s.do(t, c.method, c.path, c.body, c.hdr)
		if st != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, st, code, c.status, c.code)
		}
	}
	// None of the refused PUTs left anything.
	if st, code := s.do(t, "HEAD", "/errs/k", "", nil); st != 404 {
		t.Fatalf("refused puts left an object: %d %s", st, code)
	}
	if n := s.store.Stats().Blocks; n != 0 {
		t.Fatalf("refused puts left %d blocks", n)
	}
}

// sameDaySkew is an hour away from now on the same UTC day, so that the
// date in the credential scope still matches and only the skew is wrong.
func sameDaySkew(now time.Time) time.Time {
	if t := now.Add(-time.Hour); t.Day() == now.Day() {
		return t
	}
	return now.Add(time.Hour)
}

// TestReplicasHeader checks X-Handoff-Replicas: a bad count is refused,
// and copies a single node cannot place are a 503, never a silent single
// copy.
func TestReplicasHeader(t *testing.T) {
	s := startServer(t, local.Config{})
	if st, c := s.do(t, "PUT", "/reps", "", nil); st != 200 {
		t.Fatalf("create bucket: %d %s", st, c)
	}
	for v, want := range map[string]int{"0": 400, "4": 400, "two": 400, "2": 503, "1": 200} {
		if st, c := s.do(t, "PUT", "/reps/k", "body", map[string]string{"X-Handoff-Replicas": v}); st != want {
			t.Errorf("replicas %q: %d %s, want %d", v, st, c, want)
		}
	}
}

// TestReadsHeader checks X-Handoff-Reads: the object answers that many
// GETs and then is gone; HEAD takes none; a bad count is refused.
func TestReadsHeader(t *testing.T) {
	s := startServer(t, local.Config{})
	if st, c := s.do(t, "PUT", "/reads", "", nil); st != 200 {
		t.Fatalf("create bucket: %d %s", st, c)
	}
	for _, v := range []string{"0", "-1", "many", "1048577"} {
		if st, c := s.do(t, "PUT", "/reads/k", "body", map[string]string{"X-Handoff-Reads": v}); st != 400 || c != "InvalidArgument" {
			t.Errorf("reads %q: %d %s, want 400 InvalidArgument", v, st, c)
		}
	}
	if st, c := s.do(t, "PUT", "/reads/k", "body", map[string]string{"X-Handoff-Reads": "2"}); st != 200 {
		t.Fatalf("put: %d %s", st, c)
	}
	for range 3 {
		if st, c := s.do(t, "HEAD", "/reads/k", "", nil); st != 200 {
			t.Fatalf("head: %d %s", st, c)
		}
	}
	for i := range 2 {
		if st, c := s.do(t, "GET", "/reads/k", "", nil); st != 200 {
			t.Fatalf("get %d of 2: %d %s", i+1, st, c)
		}
	}
	if st, c := s.do(t, "GET", "/reads/k", "", nil); st != 404 || c != "NoSuchKey" {
		t.Fatalf("a third get: %d %s, want 404 NoSuchKey", st, c)
	}
	if n := s.store.Stats().Blocks; n != 0 {
		t.Fatalf("%d blocks left after the last read", n)
	}
}
