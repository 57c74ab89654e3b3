package local

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/store"
)

// TestBlockTagPart: a part uploaded with BlockTag is stored and read back
// whole; its ETag is the digest of its blocks, not its MD5, unless a
// Content-MD5 was given, which is still checked.
func TestBlockTagPart(t *testing.T) {
	s := open(t, Config{BlockSize: 1 << 20, MinPartSize: 1})
	body := payload(7, 3<<20+5)
	id, err := s.CreateUpload(ctx, "bkt", "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.UploadPart(ctx, "bkt", "k", id, 1, bytes.NewReader(body), -1, store.PartOptions{BlockTag: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(body)
	if p.ETag == hex.EncodeToString(sum[:]) || len(p.ETag) != 32 {
		t.Fatalf("block-tagged part ETag %q", p.ETag)
	}
	again, err := s.UploadPart(ctx, "bkt", "k", id, 2, bytes.NewReader(body), -1, store.PartOptions{BlockTag: true, MD5: sum[:]})
	if err != nil || again.ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("with a Content-MD5 the part's ETag is its MD5: %+v, %v", again, err)
	}
	bad := md5.Sum([]byte("other"))
	if _, err := s.UploadPart(ctx, "bkt", "k", id, 3, bytes.NewReader(body), -1, store.PartOptions{BlockTag: true, MD5: bad[:]}); err == nil {
		t.Fatal("a wrong Content-MD5 was accepted")
	}
	if _, err := s.CompleteUpload(ctx, "bkt", "k", id, []store.CompletePart{{Number: 1, ETag: p.ETag}, {Number: 2, ETag: again.ETag}}); err != nil {
		t.Fatal(err)
	}
	got, err := get(t, s, "k", nil)
	if err != nil || !bytes.Equal(got, append(append([]byte(nil), body...), body...)) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}

// TestBlockTagPut: a Put with BlockTag gets an ETag marked with "-1" as
// not the body's MD5, which differs for different bytes of one size; with
// a Content-MD5 the ETag is the MD5, and a wrong one fails the Put.
func TestBlockTagPut(t *testing.T) {
	s := open(t, Config{BlockSize: 1 << 20})
	body := payload(8, 2<<20+3)
	info, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), int64(len(body)), store.PutOptions{BlockTag: true})
	if err != nil {
		t.Fatal(err)
	}
	tag, ok := strings.CutSuffix(info.ETag, "-1")
	if !ok || len(tag) != 32 {
		t.Fatalf("block-tagged ETag %q: want 32 hex digits and -1", info.ETag)
	}
	other := bytes.Clone(body)
	other[len(other)-1] ^= 1
	if o, err := s.Put(ctx, "bkt", "k2", bytes.NewReader(other), int64(len(other)), store.PutOptions{BlockTag: true}); err != nil || o.ETag == info.ETag {
		t.Fatalf("another body of the same size: ETag %q (first %q), %v", o.ETag, info.ETag, err)
	}
	sum := md5.Sum(body)
	if m, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), int64(len(body)), store.PutOptions{BlockTag: true, MD5: sum[:]}); err != nil || m.ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("with a Content-MD5 the ETag is the MD5: %+v, %v", m, err)
	}
	bad := md5.Sum([]byte("other"))
	if _, err := s.Put(ctx, "bkt", "k", bytes.NewReader(body), int64(len(body)), store.PutOptions{BlockTag: true, MD5: bad[:]}); err == nil {
		t.Fatal("a wrong Content-MD5 was accepted")
	}
	got, err := get(t, s, "k", nil)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}
