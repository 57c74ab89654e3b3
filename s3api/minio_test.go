package s3api_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/s3api"
	"github.com/handoff-dev/handoff/store/local"
)

const (
	testAccess = "HANDOFFTESTKEY"
	testSecret = "handoff-test-secret-0123456789"
)

type server struct {
	store *local.Store
	srv   *httptest.Server
	host  string
}

func startServer(t testing.TB, cfg local.Config) *server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Memory == 0 {
		cfg.Memory = 256 << 20
	}
	st, err := local.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: testAccess, SecretKey: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	u, _ := url.Parse(srv.URL)
	return &server{store: st, srv: srv, host: u.Host}
}

func (s *server) client(t *testing.T, access, secret string) *minio.Client {
	return s.clientWith(t, access, secret, false)
}

func (s *server) clientWith(t *testing.T, access, secret string, trailers bool) *minio.Client {
	t.Helper()
	c, err := minio.New(s.host, &minio.Options{
		Creds:           credentials.NewStaticV4(access, secret, ""),
		Secure:          false,
		MaxRetries:      1,
		TrailingHeaders: trailers,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func code(err error) string { return minio.ToErrorResponse(err).Code }

func TestMinioBucketLifecycle(t *testing.T) {
	s := startServer(t, local.Config{})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()

	if err := c.MakeBucket(ctx, "alpha", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, "beta", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, "alpha", minio.MakeBucketOptions{}); code(err) != "BucketAlreadyOwnedByYou" {
		t.Fatalf("second MakeBucket: %v", err)
	}
	if err := c.MakeBucket(ctx, "Bad_Name", minio.MakeBucketOptions{}); err == nil {
		t.Fatal("invalid bucket name accepted")
	}
	ok, err := c.BucketExists(ctx, "alpha")
	if err != nil || !ok {
		t.Fatalf("BucketExists(alpha) = %v, %v", ok, err)
	}
	if ok, err := c.BucketExists(ctx, "gamma"); err != nil || ok {
		t.Fatalf("BucketExists(gamma) = %v, %v", ok, err)
	}
	bs, err := c.ListBuckets(ctx)
	if err != nil || len(bs) != 2 || bs[0].Name != "alpha" || bs[1].Name != "beta" {
		t.Fatalf("ListBuckets: %+v, %v", bs, err)
	}
	loc, err := c.GetBucketLocation(ctx, "alpha")
	if err != nil || loc != "us-east-1" {
		t.Fatalf("GetBucketLocation: %q, %v", loc, err)
	}
	if _, err := c.PutObject(ctx, "alpha", "x", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveBucket(ctx, "alpha"); code(err) != "BucketNotEmpty" {
		t.Fatalf("RemoveBucket of a full bucket: %v", err)
	}
	if err := c.RemoveObject(ctx, "alpha", "x", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveBucket(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveBucket(ctx, "alpha"); code(err) != "NoSuchBucket" {
		t.Fatalf("RemoveBucket of an absent bucket: %v", err)
	}
	if _, err := c.PutObject(ctx, "alpha", "x", strings.NewReader("x"), 1, minio.PutObjectOptions{}); code(err) != "NoSuchBucket" {
		t.Fatalf("put into a removed bucket: %v", err)
	}
}

func TestMinioObjectRoundTrip(t *testing.T) {
	s := startServer(t, local.Config{})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "objs", minio.MakeBucketOptions{})

	sizes := []int{0, 1 << 10, 5 << 20, 40 << 20}
	for i, n := range sizes {
		body := data(uint64(i), n)
		key := fmt.Sprintf("dir/obj-%d", n)
		t.Run(key, func(t *testing.T) {
			info, err := c.PutObject(ctx, "objs", key, bytes.NewReader(body), int64(n), minio.PutObjectOptions{
				ContentType:  "application/x-test",
				UserMetadata: map[string]string{"Origin": "test"},
			})
			if err != nil {
				t.Fatal(err)
			}
			// Without Content-MD5 every ETag is marked as not the body's
			// MD5 (a dash); with it, a single-part ETag is the MD5.
			multipart := n > 16<<20 // minio-go's threshold
			if tag, _, ok := strings.Cut(info.ETag, "-"); !ok || len(tag) != 32 || multipart == strings.HasSuffix(info.ETag, "-1") {
				t.Fatalf("ETag %q for %d bytes without Content-MD5 (multipart %v): want 32 hex digits and a dash", info.ETag, n, multipart)
			}
			if !multipart {
				md, err := c.PutObject(ctx, "objs", key+".md5", bytes.NewReader(body), int64(n), minio.PutObjectOptions{SendContentMd5: true})
				if err != nil {
					t.Fatal(err)
				}
				if md.ETag != fmt.Sprintf("%x", md5.Sum(body)) {
					t.Fatalf("ETag %q with Content-MD5 is not the body's MD5", md.ETag)
				}
				c.RemoveObject(ctx, "objs", key+".md5", minio.RemoveObjectOptions{})
			}

			st, err := c.StatObject(ctx, "objs", key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Size != int64(n) || st.ETag != info.ETag || st.ContentType != "application/x-test" || st.UserMetadata["Origin"] != "test" {
				t.Fatalf("StatObject: %+v", st)
			}

			obj, err := c.GetObject(ctx, "objs", key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(obj)
			obj.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("GetObject: %d bytes back of %d, %v", len(got), n, err)
			}

			if err := c.RemoveObject(ctx, "objs", key, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.StatObject(ctx, "objs", key, minio.StatObjectOptions{}); code(err) != "NoSuchKey" {
				t.Fatalf("StatObject after remove: %v", err)
			}
		})
	}
	if st := s.store.Stats(); st.Blocks != 0 || st.MemoryBytes != 0 {
		t.Fatalf("blocks left after removing everything: %+v", st)
	}
}

func TestMinioRanges(t *testing.T) {
	s := startServer(t, local.Config{BlockSize: 64 << 10})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "rng", minio.MakeBucketOptions{})
	body := data(7, 300<<10)
	if _, err := c.PutObject(ctx, "rng", "k", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	get := func(set func(*minio.GetObjectOptions) error) ([]byte, error) {
		var o minio.GetObjectOptions
		if err := set(&o); err != nil {
			t.Fatal(err)
		}
		obj, err := c.GetObject(ctx, "rng", "k", o)
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		return io.ReadAll(obj)
	}
	n := int64(len(body))
	cases := []struct {
		start, end int64
		want       []byte
	}{
		{0, 0, body[:1]},
		{100, 199, body[100:200]},
		{64<<10 - 5, 64<<10 + 5, body[64<<10-5 : 64<<10+6]}, // across a block boundary
		{n - 10, n - 1, body[n-10:]},
		{n - 10, n + 1000, body[n-10:]}, // clamped at the end
		{0, -50, body[n-50:]},           // suffix
	}
	for _, cs := range cases {
		got, err := get(func(o *minio.GetObjectOptions) error { return o.SetRange(cs.start, cs.end) })
		if err != nil || !bytes.Equal(got, cs.want) {
			t.Errorf("range %d-%d: %d bytes, %v", cs.start, cs.end, len(got), err)
		}
	}
	_, err := get(func(o *minio.GetObjectOptions) error { return o.SetRange(n, n+10) })
	if code(err) != "InvalidRange" {
		t.Fatalf("range past the end: %v", err)
	}

	// A seekable reader: ReadAt issues range requests.
	obj, _ := c.GetObject(ctx, "rng", "k", minio.GetObjectOptions{})
	defer obj.Close()
	buf := make([]byte, 1000)
	if _, err := obj.ReadAt(buf, 200<<10); err != nil || !bytes.Equal(buf, body[200<<10:200<<10+1000]) {
		t.Fatalf("ReadAt: %v", err)
	}
}

func TestMinioList(t *testing.T) {
	s := startServer(t, local.Config{})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "lst", minio.MakeBucketOptions{})
	keys := []string{"a.txt", "logs/2026/01.log", "logs/2026/02.log", "logs/2027/01.log", "logs/readme", "photos/cat.jpg", "z y/ünï"}
	for i := range 25 {
		keys = append(keys, fmt.Sprintf("many/%03d", i))
	}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, "lst", k, strings.NewReader(k), int64(len(k)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)

	list := func(opts minio.ListObjectsOptions) []string {
		t.Helper()
		var out []string
		for o := range c.ListObjects(ctx, "lst", opts) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			out = append(out, o.Key)
		}
		return out
	}
	if got := list(minio.ListObjectsOptions{Recursive: true}); !slices.Equal(got, keys) {
		t.Fatalf("recursive: %v", got)
	}
	if got := list(minio.ListObjectsOptions{}); !slices.Equal(got, []string{"a.txt", "logs/", "many/", "photos/", "z y/"}) { // no object between prefixes
		t.Fatalf("top level: %v", got)
	}
	// A page lists its objects before its prefixes.
	if got := list(minio.ListObjectsOptions{Prefix: "logs/"}); !slices.Equal(got, []string{"logs/readme", "logs/2026/", "logs/2027/"}) {
		t.Fatalf("logs/: %v", got)
	}
	// Pages of 7: the client follows continuation tokens.
	if got := list(minio.ListObjectsOptions{Recursive: true, MaxKeys: 7}); !slices.Equal(got, keys) {
		t.Fatalf("paginated: %d keys, want %d: %v", len(got), len(keys), got)
	}
	if got := list(minio.ListObjectsOptions{Prefix: "many/", Recursive: true, StartAfter: "many/020"}); !slices.Equal(got, []string{"many/021", "many/022", "many/023", "many/024"}) {
		t.Fatalf("start-after: %v", got)
	}
	if got := list(minio.ListObjectsOptions{Recursive: true, UseV1: true, MaxKeys: 10}); !slices.Equal(got, keys) {
		t.Fatalf("v1 paginated: %v", got)
	}

	// Multi-delete, as RemoveObjects sends it.
	ch := make(chan minio.ObjectInfo)
	go func() {
		defer close(ch)
		for _, k := range keys {
			if strings.HasPrefix(k, "many/") {
				ch <- minio.ObjectInfo{Key: k}
			}
		}
		ch <- minio.ObjectInfo{Key: "never-written"} // deleting an absent key succeeds
	}()
	for e := range c.RemoveObjects(ctx, "lst", ch, minio.RemoveObjectsOptions{}) {
		t.Fatalf("RemoveObjects: %s: %v", e.ObjectName, e.Err)
	}
	if got := list(minio.ListObjectsOptions{Prefix: "many/", Recursive: true}); len(got) != 0 {
		t.Fatalf("after multi-delete: %v", got)
	}
}

func TestMinioBadCredentials(t *testing.T) {
	s := startServer(t, local.Config{})
	good := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	good.MakeBucket(ctx, "sec", minio.MakeBucketOptions{})
	good.PutObject(ctx, "sec", "k", strings.NewReader("secret"), 6, minio.PutObjectOptions{})

	badSecret := s.client(t, testAccess, "wrong-secret")
	if _, err := badSecret.ListBuckets(ctx); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := badSecret.PutObject(ctx, "sec", "k2", strings.NewReader("x"), 1, minio.PutObjectOptions{}); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret put: %v", err)
	}
	badKey := s.client(t, "NOSUCHKEY", testSecret)
	if _, err := badKey.StatObject(ctx, "sec", "k", minio.StatObjectOptions{}); err == nil {
		t.Fatal("unknown access key accepted")
	}
	if _, err := badKey.ListBuckets(ctx); code(err) != "InvalidAccessKeyId" {
		t.Fatalf("unknown access key: %v", err)
	}

	// Unsigned requests, straight over HTTP.
	for _, req := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/sec/k"}, {"PUT", "/sec/k"}, {"DELETE", "/sec/k"}} {
		r, _ := http.NewRequest(req.method, s.srv.URL+req.path, strings.NewReader("evil"))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "<Code>AccessDenied</Code>") {
			t.Fatalf("unsigned %s %s: %d %s", req.method, req.path, resp.StatusCode, b)
		}
	}
	obj, _ := good.GetObject(ctx, "sec", "k", minio.GetObjectOptions{})
	b, err := io.ReadAll(obj)
	if err != nil || string(b) != "secret" {
		t.Fatalf("object changed by refused requests: %q, %v", b, err)
	}
}

func TestMinioPresigned(t *testing.T) {
	s := startServer(t, local.Config{})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "pre", minio.MakeBucketOptions{})
	c.PutObject(ctx, "pre", "some dir/file+1.txt", strings.NewReader("presigned body"), 14, minio.PutObjectOptions{})

	u, err := c.PresignedGetObject(ctx, "pre", "some dir/file+1.txt", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "presigned body" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, b)
	}

	// A tampered signature is refused.
	q := u.Query()
	sig := []byte(q.Get("X-Amz-Signature"))
	sig[0] = map[bool]byte{true: '1', false: '0'}[sig[0] == '0'] // still hex, now wrong
	q.Set("X-Amz-Signature", string(sig))
	u.RawQuery = q.Encode()
	resp, err = http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered presigned GET: %d", resp.StatusCode)
	}

	// Presigned PUT.
	pu, err := c.PresignedPutObject(ctx, "pre", "uploaded", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", pu.String(), strings.NewReader("via presigned put"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("presigned PUT: %d", resp.StatusCode)
	}
	st, err := c.StatObject(ctx, "pre", "uploaded", minio.StatObjectOptions{})
	if err != nil || st.Size != 17 {
		t.Fatalf("after presigned PUT: %+v, %v", st, err)
	}
}

func TestMinioMultipartCore(t *testing.T) {
	s := startServer(t, local.Config{})
	core := minio.Core{Client: s.client(t, testAccess, testSecret)}
	ctx := context.Background()
	core.MakeBucket(ctx, "mpu", minio.MakeBucketOptions{})

	id, err := core.NewMultipartUpload(ctx, "mpu", "big", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1 := data(1, 5<<20)
	p2 := data(2, 1000)
	var parts []minio.CompletePart
	for i, p := range [][]byte{p1, p2} {
		// With Content-MD5 a part's ETag is its MD5, and the object's is
		// S3's digest of theirs.
		sum := md5.Sum(p)
		op, err := core.PutObjectPart(ctx, "mpu", "big", id, i+1, bytes.NewReader(p), int64(len(p)), minio.PutObjectPartOptions{Md5Base64: base64.StdEncoding.EncodeToString(sum[:])})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: i + 1, ETag: op.ETag})
	}
	lp, err := core.ListObjectParts(ctx, "mpu", "big", id, 0, 1)
	if err != nil || len(lp.ObjectParts) != 1 || !lp.IsTruncated || lp.NextPartNumberMarker != 1 {
		t.Fatalf("ListObjectParts: %+v, %v", lp, err)
	}
	bad := []minio.CompletePart{{PartNumber: 1, ETag: parts[1].ETag}, parts[1]}
	if _, err := core.CompleteMultipartUpload(ctx, "mpu", "big", id, bad, minio.PutObjectOptions{}); code(err) != "InvalidPart" {
		t.Fatalf("complete with a wrong ETag: %v", err)
	}
	info, err := core.CompleteMultipartUpload(ctx, "mpu", "big", id, parts, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := md5.Sum(p1), md5.Sum(p2)
	if want := fmt.Sprintf("%x-2", md5.Sum(append(s1[:], s2[:]...))); info.ETag != want {
		t.Fatalf("ETag %s, want %s", info.ETag, want)
	}
	obj, _, _, err := core.GetObject(ctx, "mpu", "big", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(got, append(p1, p2...)) {
		t.Fatal("assembled object differs")
	}

	id2, _ := core.NewMultipartUpload(ctx, "mpu", "aborted", minio.PutObjectOptions{})
	core.PutObjectPart(ctx, "mpu", "aborted", id2, 1, bytes.NewReader(p2), 1000, minio.PutObjectPartOptions{})
	if err := core.AbortMultipartUpload(ctx, "mpu", "aborted", id2); err != nil {
		t.Fatal(err)
	}
	if _, err := core.PutObjectPart(ctx, "mpu", "aborted", id2, 2, bytes.NewReader(p2), 1000, minio.PutObjectPartOptions{}); code(err) != "NoSuchUpload" {
		t.Fatalf("part after abort: %v", err)
	}
}

func TestMinioQuota(t *testing.T) {
	s := startServer(t, local.Config{Memory: 2 << 20})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "quota", minio.MakeBucketOptions{})
	_, err := c.PutObject(ctx, "quota", "big", bytes.NewReader(data(1, 3<<20)), 3<<20, minio.PutObjectOptions{})
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.Code != "QuotaExceeded" || er.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("put over the budget: %v", err)
	}
}

// TestMinioPayloadModes puts objects in each payload mode minio-go uses:
// streaming signed chunks (its default over plain HTTP), UNSIGNED-PAYLOAD
// (DisableContentSha256), and unsigned chunks with a trailing checksum
// (DisableContentSha256 with TrailingHeaders), whole and in multipart.
func TestMinioPayloadModes(t *testing.T) {
	s := startServer(t, local.Config{})
	ctx := context.Background()
	s.client(t, testAccess, testSecret).MakeBucket(ctx, "modes", minio.MakeBucketOptions{})
	for _, mode := range []struct{ disable, trailers bool }{{false, false}, {true, false}, {true, true}} {
		c := s.clientWith(t, testAccess, testSecret, mode.trailers)
		disable := mode.disable
		for _, n := range []int{1 << 10, 17 << 20} {
			body := data(uint64(n), n)
			key := fmt.Sprintf("k-%v-%d", mode, n)
			_, err := c.PutObject(ctx, "modes", key, bytes.NewReader(body), int64(n), minio.PutObjectOptions{DisableContentSha256: disable})
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			obj, _ := c.GetObject(ctx, "modes", key, minio.GetObjectOptions{})
			got, err := io.ReadAll(obj)
			obj.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: %d bytes back, %v", key, len(got), err)
			}
		}
	}
	// Unknown size: minio-go buffers parts and uploads them multipart.
	c := s.client(t, testAccess, testSecret)
	body := data(9, 3<<20)
	if _, err := c.PutObject(ctx, "modes", "unknown", bytes.NewReader(body), -1, minio.PutObjectOptions{PartSize: 5 << 20}); err != nil {
		t.Fatalf("unknown size: %v", err)
	}
}

// TestCorruptBlockFailsGet corrupts a spilled block under a stored object:
// the S3 GET must fail, never hand out the wrong bytes.
func TestCorruptBlockFailsGet(t *testing.T) {
	spill := t.TempDir()
	s := startServer(t, local.Config{Memory: 1, SpillDir: spill, BlockSize: 64 << 10})
	c := s.client(t, testAccess, testSecret)
	ctx := context.Background()
	c.MakeBucket(ctx, "rot", minio.MakeBucketOptions{})
	body := data(5, 200<<10)
	if _, err := c.PutObject(ctx, "rot", "k", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(spill, "*.blk"))
	if len(files) != 4 {
		t.Fatalf("%d spill files, want 4", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		b[len(b)/2] ^= 0x80
		os.WriteFile(f, b, 0o600)
	}
	obj, err := c.GetObject(ctx, "rot", "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err == nil {
		t.Fatalf("read %d bytes of a corrupt object without error", len(got))
	}
	if len(got) > 0 && !bytes.Equal(got, body[:len(got)]) {
		t.Fatal("corrupt bytes reached the client")
	}
}
