package meta

import (
	"crypto/md5"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/clock"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/blocks"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openDB(t *testing.T, path string, c clock.Clock) *DB {
	t.Helper()
	db, err := Open(path, Options{Clock: c, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func obj(bucket, key string, size int64) Object {
	return Object{
		ObjectInfo: store.ObjectInfo{Bucket: bucket, Key: key, Size: size, ETag: fmt.Sprintf("%x", md5.Sum([]byte(key)))},
		Blocks:     []Block{{ID: blocks.NewID(), Size: size, CRC: 7}},
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	c := clock.NewFake(t0)
	db := openDB(t, path, c)
	if err := db.CreateBucket("photos"); err != nil {
		t.Fatal(err)
	}
	o := obj("photos", "2026/cat.jpg", 5)
	o.ContentType = "image/jpeg"
	o.Meta = map[string]string{"owner": "ana"}
	if _, _, err := db.PutObject(o); err != nil {
		t.Fatal(err)
	}
	up, err := db.CreateUpload("photos", "big.bin", store.PutOptions{ContentType: "application/x-big"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutPart("photos", "big.bin", up.ID, Part{PartInfo: store.PartInfo{Number: 1, Size: 3, ETag: "00112233445566778899aabbccddeeff"}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openDB(t, path, c)
	bs, err := db.Buckets()
	if err != nil || len(bs) != 1 || bs[0].Name != "photos" || !bs[0].Created.Equal(t0) {
		t.Fatalf("buckets after reopen: %+v, %v", bs, err)
	}
	got, err := db.Object("photos", "2026/cat.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 5 || got.ContentType != "image/jpeg" || got.Meta["owner"] != "ana" || !reflect.DeepEqual(got.Blocks, o.Blocks) || !got.Modified.Equal(t0) {
		t.Fatalf("object after reopen: %+v", got)
	}
	parts, err := db.Parts("photos", "big.bin", up.ID, store.ListPartsOptions{})
	if err != nil || len(parts.Parts) != 1 || parts.Parts[0].Size != 3 {
		t.Fatalf("parts after reopen: %+v, %v", parts, err)
	}
}

func TestBucketRules(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	for _, bad := range []string{"ab", "Upper", "has_underscore", "-start", "end-", "a..b", "192.168.1.1", string(make([]byte, 64))} {
		if err := db.CreateBucket(bad); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("CreateBucket(%q): %v", bad, err)
		}
	}
	if err := db.CreateBucket("b-1.x"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateBucket("b-1.x"); !errors.Is(err, store.ErrBucketExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, _, err := db.PutObject(obj("b-1.x", "k", 1)); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteBucket("b-1.x"); !errors.Is(err, store.ErrBucketNotEmpty) {
		t.Fatalf("delete of a bucket with objects: %v", err)
	}
	if _, err := db.DeleteObject("b-1.x", "k"); err != nil {
		t.Fatal(err)
	}
	up, _ := db.CreateUpload("b-1.x", "k", store.PutOptions{})
	if err := db.DeleteBucket("b-1.x"); !errors.Is(err, store.ErrBucketNotEmpty) {
		t.Fatalf("delete of a bucket with an upload: %v", err)
	}
	db.AbortUpload("b-1.x", "k", up.ID)
	if err := db.DeleteBucket("b-1.x"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Bucket("b-1.x"); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("deleted bucket: %v", err)
	}
	if _, _, err := db.PutObject(obj("nobucket", "k", 1)); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("put into absent bucket: %v", err)
	}
}

func TestReplaceReturnsOldBlocks(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	db.CreateBucket("bkt")
	a := obj("bkt", "k", 1)
	db.PutObject(a)
	_, old, err := db.PutObject(obj("bkt", "k", 2))
	if err != nil || !reflect.DeepEqual(old, a.Blocks) {
		t.Fatalf("replace returned %v, %v", old, err)
	}
}

func keys(res store.ListResult) []string {
	var out []string
	for _, o := range res.Objects {
		out = append(out, o.Key)
	}
	for _, p := range res.CommonPrefixes {
		out = append(out, p+"/")
	}
	return out
}

func TestList(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	db.CreateBucket("bkt")
	all := []string{"a", "b/1", "b/2", "b/3/x", "c", "d/1", "é"}
	for _, k := range all {
		if _, _, err := db.PutObject(obj("bkt", k, 1)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(o store.ListOptions) store.ListResult {
		t.Helper()
		res, err := db.List("bkt", o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	if got := keys(list(store.ListOptions{})); !slices.Equal(got, all) {
		t.Fatalf("all: %v", got)
	}
	res := list(store.ListOptions{Delimiter: "/"})
	if !slices.Equal(keys(res), []string{"a", "c", "é", "b//", "d//"}) {
		t.Fatalf("delimited: %v", keys(res))
	}
	res = list(store.ListOptions{Prefix: "b/", Delimiter: "/"})
	if !slices.Equal(keys(res), []string{"b/1", "b/2", "b/3//"}) {
		t.Fatalf("prefix b/: %v", keys(res))
	}
	if res = list(store.ListOptions{After: "b/2"}); !slices.Equal(keys(res), all[3:]) {
		t.Fatalf("after b/2: %v", keys(res))
	}

	// Page through with delimiter, two at a time: every entry exactly once.
	var paged []string
	after := ""
	for range 10 {
		res := list(store.ListOptions{Delimiter: "/", Max: 2, After: after})
		for _, o := range res.Objects {
			paged = append(paged, o.Key)
		}
		paged = append(paged, res.CommonPrefixes...)
		if !res.Truncated {
			break
		}
		after = res.Next
	}
	slices.Sort(paged)
	if want := []string{"a", "b/", "c", "d/", "é"}; !slices.Equal(paged, want) {
		t.Fatalf("paged: %v, want %v", paged, want)
	}

	res = list(store.ListOptions{Max: 7})
	if res.Truncated || res.Next != "" {
		t.Fatalf("exactly max entries reported truncated: %+v", res)
	}
	res = list(store.ListOptions{Max: 6})
	if !res.Truncated || res.Next != "d/1" {
		t.Fatalf("max 6: truncated %v next %q", res.Truncated, res.Next)
	}
	if _, err := db.List("nope", store.ListOptions{}); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("list absent bucket: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	c := clock.NewFake(t0)
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), c)
	db.CreateBucket("bkt")
	short := obj("bkt", "short", 1)
	short.Expires = t0.Add(time.Minute)
	long := obj("bkt", "long", 1)
	long.Expires = t0.Add(time.Hour)
	db.PutObject(short)
	db.PutObject(long)
	db.PutObject(obj("bkt", "forever", 1))

	c.Advance(time.Minute)
	if _, err := db.Object("bkt", "short"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("expired object: %v", err)
	}
	if res, _ := db.List("bkt", store.ListOptions{}); !slices.Equal(keys(res), []string{"forever", "long"}) {
		t.Fatalf("list hides expired: %v", keys(res))
	}
	freed, n, err := db.DeleteExpired(100)
	if err != nil || n != 1 || !reflect.DeepEqual(freed, short.Blocks) {
		t.Fatalf("sweep: %v %d %v", freed, n, err)
	}
	// Replacing an object drops its old expiry.
	db.PutObject(obj("bkt", "long", 1))
	c.Advance(2 * time.Hour)
	if _, n, _ := db.DeleteExpired(100); n != 0 {
		t.Fatalf("swept %d objects after their expiry was replaced", n)
	}
	if _, err := db.Object("bkt", "long"); err != nil {
		t.Fatal(err)
	}
}

func TestCompleteUpload(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	db.CreateBucket("bkt")
	up, err := db.CreateUpload("bkt", "big", store.PutOptions{ContentType: "text/plain", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var sums []byte
	parts := map[int]Part{}
	for n := 1; n <= 3; n++ {
		sum := md5.Sum([]byte{byte(n)})
		p := Part{PartInfo: store.PartInfo{Number: n, Size: int64(10 * n), ETag: fmt.Sprintf("%x", sum)}, Blocks: []Block{{ID: blocks.NewID(), Size: int64(10 * n)}}}
		parts[n] = p
		if _, err := db.PutPart("bkt", "big", up.ID, p); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			sums = append(sums, sum[:]...)
		}
	}
	if _, err := db.PutPart("bkt", "big", up.ID, Part{PartInfo: store.PartInfo{Number: 10001}}); !errors.Is(err, store.ErrInvalidPart) {
		t.Fatalf("part 10001: %v", err)
	}
	if _, err := db.PutPart("bkt", "other", up.ID, parts[1]); !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("part for another key: %v", err)
	}

	bad := [][]store.CompletePart{
		{{Number: 3, ETag: parts[3].ETag}, {Number: 1, ETag: parts[1].ETag}},
		{{Number: 1, ETag: "deadbeef"}},
		{{Number: 4, ETag: parts[1].ETag}},
		{{Number: 1, ETag: parts[1].ETag}, {Number: 3, ETag: parts[3].ETag}}, // part 1 under minPart 15
	}
	for i, list := range bad {
		if _, _, err := db.CompleteUpload("bkt", "big", up.ID, list, 15); err == nil {
			t.Errorf("bad list %d accepted", i)
		}
	}

	o, freed, err := db.CompleteUpload("bkt", "big", up.ID,
		[]store.CompletePart{{Number: 1, ETag: `"` + parts[1].ETag + `"`}, {Number: 3, ETag: parts[3].ETag}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x-2", md5.Sum(sums)); o.ETag != want {
		t.Fatalf("ETag %s, want %s", o.ETag, want)
	}
	if o.Size != 40 || len(o.Blocks) != 2 || o.ContentType != "text/plain" || !o.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("object %+v", o)
	}
	if !reflect.DeepEqual(freed, parts[2].Blocks) {
		t.Fatalf("freed %v, want part 2's block", freed)
	}
	if _, err := db.Upload("bkt", "big", up.ID); !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("upload after complete: %v", err)
	}
	if ups, _ := db.Uploads(); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
}

func TestListParts(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	db.CreateBucket("bkt")
	up, _ := db.CreateUpload("bkt", "k", store.PutOptions{})
	for _, n := range []int{5, 1, 3} {
		db.PutPart("bkt", "k", up.ID, Part{PartInfo: store.PartInfo{Number: n, ETag: "x"}})
	}
	res, err := db.Parts("bkt", "k", up.ID, store.ListPartsOptions{Max: 2})
	if err != nil || len(res.Parts) != 2 || res.Parts[0].Number != 1 || res.Parts[1].Number != 3 || !res.Truncated || res.Next != 3 {
		t.Fatalf("page 1: %+v, %v", res, err)
	}
	res, _ = db.Parts("bkt", "k", up.ID, store.ListPartsOptions{After: res.Next})
	if len(res.Parts) != 1 || res.Parts[0].Number != 5 || res.Truncated {
		t.Fatalf("page 2: %+v", res)
	}
}

func TestClosed(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "m.db"), clock.NewFake(t0))
	db.Close()
	if err := db.CreateBucket("bkt"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestHoldersRoundTrip checks that a block's holders are kept, and that a
// record written before blocks named their holders still reads, with none.
func TestHoldersRoundTrip(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "store.db"), clock.NewFake(t0))
	if err := db.CreateBucket("b-1"); err != nil {
		t.Fatal(err)
	}
	o := obj("b-1", "new", 5)
	o.Blocks[0].Holders = []string{"n1-abc", "n2-def"}
	if _, _, err := db.PutObject(o); err != nil {
		t.Fatal(err)
	}
	got, err := db.Object("b-1", "new")
	if err != nil || !slices.Equal(got.Blocks[0].Holders, []string{"n1-abc", "n2-def"}) {
		t.Fatalf("holders read back as %+v, %v", got.Blocks, err)
	}
	// A record as the single-node store wrote it before holders existed.
	old := `{"size":5,"etag":"x","mod":"2026-03-01T12:00:00Z","blocks":[{"id":"00112233445566778899aabbccddeeff","n":5,"crc":7}]}`
	if err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketObjects).Bucket([]byte("b-1")).Put([]byte("old"), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	got, err = db.Object("b-1", "old")
	if err != nil || len(got.Blocks) != 1 || got.Blocks[0].Holders != nil || got.Blocks[0].CRC != 7 || got.Blocks[0].ID.String() != "00112233445566778899aabbccddeeff" {
		t.Fatalf("old record read as %+v, %v", got.Blocks, err)
	}
}

func TestReadsDeleteAfterLastRead(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "store.db"), clock.NewFake(t0))
	if err := db.CreateBucket("runs"); err != nil {
		t.Fatal(err)
	}
	o := obj("runs", "out", 9)
	o.Reads = 3
	if _, _, err := db.PutObject(o); err != nil {
		t.Fatal(err)
	}
	// Looking at the object takes no read.
	if got, err := db.Object("runs", "out"); err != nil || got.Reads != 3 {
		t.Fatalf("Object: reads %d, %v; want 3 left", got.Reads, err)
	}
	var reads []Object
	for want := 2; want >= 0; want-- {
		got, err := db.ReadObject("runs", "out")
		if err != nil || got.Reads != want || !got.Counted || len(got.Blocks) != 1 {
			t.Fatalf("read leaving %d: %+v, %v", want, got, err)
		}
		reads = append(reads, got)
	}
	// Every read is taken: nobody else finds the object, not even in a
	// listing, but the three reads in flight keep its blocks.
	if _, err := db.ReadObject("runs", "out"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("a fourth read: %v; want ErrNoSuchKey", err)
	}
	if l, err := db.List("runs", store.ListOptions{}); err != nil || len(l.Objects) != 0 {
		t.Fatalf("listing with every read taken: %+v, %v; want empty", l, err)
	}
	for i, r := range reads {
		freed, err := db.ReadDone(r)
		last := i == len(reads)-1
		if err != nil || (len(freed) == 1) != last || (last && freed[0].ID != o.Blocks[0].ID) {
			t.Fatalf("read %d done: freed %v, %v; want the blocks when the last read ends only", i, freed, err)
		}
	}
	if _, err := db.ReadDone(reads[0]); err != nil {
		t.Fatalf("a read ended twice: %v", err)
	}

	// Without a limit, reads change nothing and free nothing.
	if _, _, err := db.PutObject(obj("runs", "keep", 1)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := db.ReadObject("runs", "keep")
		if err != nil || got.Counted {
			t.Fatalf("unlimited read: %+v, %v", got, err)
		}
		if freed, err := db.ReadDone(got); err != nil || freed != nil {
			t.Fatalf("unlimited read done: freed %v, %v", freed, err)
		}
	}
}

func TestReadsDoneLeavesAReplacementAlone(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "store.db"), clock.NewFake(t0))
	if err := db.CreateBucket("runs"); err != nil {
		t.Fatal(err)
	}
	o := obj("runs", "out", 4)
	o.Reads = 1
	if _, _, err := db.PutObject(o); err != nil {
		t.Fatal(err)
	}
	r, err := db.ReadObject("runs", "out")
	if err != nil {
		t.Fatal(err)
	}
	o2 := obj("runs", "out", 5)
	o2.ETag = "another"
	o2.Reads = 1
	if _, _, err := db.PutObject(o2); err != nil {
		t.Fatal(err)
	}
	if freed, err := db.ReadDone(r); err != nil || freed != nil {
		t.Fatalf("the old version's read done: freed %v, %v; want nothing", freed, err)
	}
	if got, err := db.Object("runs", "out"); err != nil || got.Size != 5 || got.Reads != 1 {
		t.Fatalf("the replacement: %+v, %v; want it whole, its read left", got, err)
	}
}

func TestReadsConcurrentReadersTakeOneEach(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "store.db"), clock.NewFake(t0))
	if err := db.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	o := obj("bkt", "k", 1)
	o.Reads = 5
	if _, _, err := db.PutObject(o); err != nil {
		t.Fatal(err)
	}
	const readers = 16
	errs := make(chan error, readers)
	for range readers {
		go func() {
			_, err := db.ReadObject("bkt", "k")
			errs <- err
		}()
	}
	ok, gone := 0, 0
	for range readers {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrNoSuchKey):
			gone++
		default:
			t.Fatal(err)
		}
	}
	if ok != 5 || gone != readers-5 {
		t.Fatalf("%d readers got the object and %d did not; want exactly 5 and %d", ok, gone, readers-5)
	}
}

func TestReadsSurviveMultipartUpload(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "store.db"), clock.NewFake(t0))
	if err := db.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	up, err := db.CreateUpload("bkt", "big", store.PutOptions{Reads: 2})
	if err != nil {
		t.Fatal(err)
	}
	etag := "00112233445566778899aabbccddeeff"
	if _, err := db.PutPart("bkt", "big", up.ID, Part{PartInfo: store.PartInfo{Number: 1, Size: 3, ETag: etag}}); err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CompleteUpload("bkt", "big", up.ID, []store.CompletePart{{Number: 1, ETag: etag}}, 0)
	if err != nil || o.Reads != 2 {
		t.Fatalf("completed: reads %d, %v; want the upload's 2", o.Reads, err)
	}
}
