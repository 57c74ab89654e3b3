package storefs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// mounted is a store/local Backend mounted at dir for one test.
type mounted struct {
	dir string
	b   *local.Store
	srv *storefs.Server
}

// mount opens a store with cfg (Dir defaults to a temporary directory)
// and mounts it; the test's cleanup unmounts it, even when the test
// fails, and checks that no mount is left behind. It skips the test
// only when FUSE is unavailable here.
func mount(t testing.TB, cfg local.Config, opts storefs.Options) *mounted {
	t.Helper()
	if err := storefs.Available(); err != nil {
		t.Skipf("no FUSE on this machine, so no mount to test: %v", err)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Memory == 0 {
		cfg.Memory = 1 << 30
	}
	b, err := local.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	dir := t.TempDir()
	srv, err := storefs.Mount(dir, b, opts)
	if errors.Is(err, storefs.ErrUnavailable) {
		t.Skipf("mounting is not permitted here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
		if mountedAt(t, dir) {
			t.Errorf("%s is still mounted after Unmount", dir)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	if !mountedAt(t, dir) {
		t.Fatalf("Mount returned but %s is not in /proc/self/mountinfo", dir)
	}
	return &mounted{dir: dir, b: b, srv: srv}
}

// mountAgain mounts b a second time, with other options, until the
// test ends.
func mountAgain(t testing.TB, b store.Backend, opts storefs.Options) string {
	t.Helper()
	dir := t.TempDir()
	srv, err := storefs.Mount(dir, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
	})
	return dir
}

// mountedAt reports whether /proc/self/mountinfo lists a mount at dir.
func mountedAt(t testing.TB, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func (m *mounted) path(elem ...string) string {
	return filepath.Join(append([]string{m.dir}, elem...)...)
}

func (m *mounted) bucket(t testing.TB, name string) {
	t.Helper()
	if err := os.Mkdir(m.path(name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// backendBytes reads an object straight from the Backend.
func (m *mounted) backendBytes(t testing.TB, bucket, key string) []byte {
	t.Helper()
	obj, err := m.b.Get(context.Background(), bucket, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (m *mounted) put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := m.b.Put(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n+8)
	r := rand.NewPCG(seed, 7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v (%d)", err, want, int(want))
	}
}

func TestWriteAndReadBack(t *testing.T) {
	t.Run("DirectIO", func(t *testing.T) { testWriteAndReadBack(t, storefs.Options{}) })
	t.Run("PageCache", func(t *testing.T) { testWriteAndReadBack(t, storefs.Options{PageCache: true}) })
}

func testWriteAndReadBack(t *testing.T, opts storefs.Options) {
	m := mount(t, local.Config{}, opts)
	m.bucket(t, "data")

	small := []byte("hello, mount\n")
	if err := os.WriteFile(m.path("data", "small.txt"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.backendBytes(t, "data", "small.txt"); !bytes.Equal(got, small) {
		t.Fatalf("backend holds %q, want %q", got, small)
	}

	// 64 MiB through io.Copy: a multipart upload of 64 MiB parts.
	big := randomBytes(64<<20+12345, 1)
	f, err := os.Create(m.path("data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.backendBytes(t, "data", "big.bin"); sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatalf("backend holds %d bytes that differ from the %d written", len(got), len(big))
	}

	// Whole.
	got, err := os.ReadFile(m.path("data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(big))
	}

	// Random ReadAt, including across chunk boundaries and the end.
	f, err = os.Open(m.path("data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rng.Int64N(int64(len(big)))
		n := 1 + rng.IntN(3<<20)
		buf := make([]byte, n)
		k, err := f.ReadAt(buf, off)
		want := big[off:min(off+int64(n), int64(len(big)))]
		if k != len(want) || (err != nil && err != io.EOF) || !bytes.Equal(buf[:k], want) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes equal", n, off, k, err, len(want))
		}
	}

	// Sequential, in small reads.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, bufio.NewReaderSize(struct{ io.Reader }{f}, 4096), make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), sha256.New().Sum(nil)) && [32]byte(h.Sum(nil)) != sha256.Sum256(big) {
		t.Fatal("sequential read differs from what was written")
	}

	// An empty file, created and closed.
	if err := os.WriteFile(m.path("data", "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(m.path("data", "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("stat empty file: %v, %v", fi, err)
	}
	if got := m.backendBytes(t, "data", "empty"); len(got) != 0 {
		t.Fatalf("backend holds %d bytes for an empty file", len(got))
	}
}

func TestBackendWritesShowInMount(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	ctx := context.Background()
	if err := m.b.CreateBucket(ctx, "from-s3"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3<<20+7, 2)
	m.put(t, "from-s3", "runs/7/part-0", data)
	got, err := os.ReadFile(m.path("from-s3", "runs", "7", "part-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read through the mount differs from what the Backend stored")
	}

	// Replaced through the Backend: a new open reads the new bytes,
	// though the kernel cached the old ones.
	data2 := randomBytes(3<<20+7, 3)
	m.put(t, "from-s3", "runs/7/part-0", data2)
	got, err = os.ReadFile(m.path("from-s3", "runs", "7", "part-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data2) {
		t.Fatal("after a replace through the Backend, the mount reads the old bytes")
	}

	// A reader open across a replace fails rather than mixing versions
	// (where the kernel has not cached the bytes already).
	m.put(t, "from-s3", "runs/7/part-1", data)
	f, err := os.Open(m.path("from-s3", "runs", "7", "part-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m.put(t, "from-s3", "runs/7/part-1", data2)
	_, err = f.ReadAt(make([]byte, 100), 2<<20)
	wantErrno(t, err, syscall.ESTALE)
}

// TestTwoMounts writes through one mount and reads through another of
// the same Backend, as two nodes sharing a store will.
func TestTwoMounts(t *testing.T) {
	a := mount(t, local.Config{}, storefs.Options{})
	const cache = 200 * time.Millisecond
	b := mountAgain(t, a.b, storefs.Options{CacheTimeout: cache})
	a.bucket(t, "shared")
	data := randomBytes(10<<20+3, 6)
	if err := os.WriteFile(a.path("shared", "out"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A name never seen is looked up afresh: visible at once.
	if got, err := os.ReadFile(filepath.Join(b, "shared", "out")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the second mount: %d bytes, %v", len(got), err)
	}
	// A replacement shows in the other mount within its cache timeout.
	data2 := randomBytes(12<<20+5, 7)
	if err := os.WriteFile(a.path("shared", "out"), data2, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cache + 50*time.Millisecond)
	if fi, err := os.Stat(filepath.Join(b, "shared", "out")); err != nil || fi.Size() != int64(len(data2)) {
		t.Fatalf("stat through the second mount after its cache timeout: %v, %v", fi, err)
	}
	if got, err := os.ReadFile(filepath.Join(b, "shared", "out")); err != nil || !bytes.Equal(got, data2) {
		t.Fatalf("read of the replacement through the second mount: %d bytes, %v", len(got), err)
	}
	if err := os.Remove(a.path("shared", "out")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cache + 50*time.Millisecond)
	if _, err := os.Stat(filepath.Join(b, "shared", "out")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed file still there in the second mount: %v", err)
	}
}

func TestStatAndList(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	m.bucket(t, "list")
	before := time.Now().Add(-time.Second)
	if err := os.WriteFile(m.path("list", "a.txt"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(m.path("list", "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 5 || !fi.Mode().IsRegular() || fi.ModTime().Before(before) || fi.ModTime().After(time.Now().Add(time.Second)) {
		t.Fatalf("stat: size %d mode %v mtime %v", fi.Size(), fi.Mode(), fi.ModTime())
	}

	// Over a page of entries, files and implicit directories, and an
	// object "x" that the directory "x/" shadows.
	for i := range 1500 {
		m.put(t, "list", "many/f"+pad(i), []byte{byte(i)})
	}
	m.put(t, "list", "many/sub/y", []byte("y"))
	m.put(t, "list", "many/x", []byte("file x"))
	m.put(t, "list", "many/x.a", []byte("file x.a"))
	m.put(t, "list", "many/x/y", []byte("in dir x"))
	ents, err := os.ReadDir(m.path("list", "many"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1500+3 {
		t.Fatalf("listed %d entries, want %d", len(ents), 1503)
	}
	kinds := map[string]bool{}
	for _, e := range ents {
		if _, dup := kinds[e.Name()]; dup {
			t.Fatalf("%q listed twice", e.Name())
		}
		kinds[e.Name()] = e.IsDir()
	}
	if !kinds["sub"] || !kinds["x"] || kinds["x.a"] || kinds["f0042"] {
		t.Fatalf("kinds: sub %v x %v x.a %v f0042 %v", kinds["sub"], kinds["x"], kinds["x.a"], kinds["f0042"])
	}
	if fi, err := os.Stat(m.path("list", "many", "x")); err != nil || !fi.IsDir() {
		t.Fatalf("stat x: %v %v; want the directory", fi, err)
	}
	if got, err := os.ReadFile(m.path("list", "many", "x", "y")); err != nil || string(got) != "in dir x" {
		t.Fatalf("read x/y: %q %v", got, err)
	}

	// The root lists buckets.
	if err := m.b.CreateBucket(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	ents, err = os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"list", "other"}) {
		t.Fatalf("root lists %v", names)
	}
}

func pad(i int) string {
	s := "0000" + itoa(i)
	return s[len(s)-4:]
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestMkdirRmdir(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	m.bucket(t, "dirs")
	wantErrno(t, os.Mkdir(m.path("dirs"), 0o755), syscall.EEXIST)
	wantErrno(t, os.Mkdir(m.path("Not_A_Bucket"), 0o755), syscall.EINVAL)

	if err := os.MkdirAll(m.path("dirs", "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Markers make empty directories real for S3 clients too.
	if _, err := m.b.Head(context.Background(), "dirs", "a/b/"); err != nil {
		t.Fatalf("no marker object for a/b: %v", err)
	}
	wantErrno(t, os.Mkdir(m.path("dirs", "a"), 0o755), syscall.EEXIST)
	if err := os.WriteFile(m.path("dirs", "a", "b", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, os.Mkdir(m.path("dirs", "a", "b", "f"), 0o755), syscall.EEXIST)
	wantErrno(t, syscall.Rmdir(m.path("dirs", "a", "b")), syscall.ENOTEMPTY)
	wantErrno(t, syscall.Rmdir(m.path("dirs")), syscall.ENOTEMPTY)
	if err := os.Remove(m.path("dirs", "a", "b", "f")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("dirs", "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("dirs", "a")); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, syscall.Rmdir(m.path("dirs", "a")), syscall.ENOENT)
	if err := os.Remove(m.path("dirs")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.b.HeadBucket(context.Background(), "dirs"); !errors.Is(err, store.ErrNoSuchBucket) {
		t.Fatalf("bucket still there after rmdir: %v", err)
	}
	// Files cannot live at the root.
	wantErrno(t, os.WriteFile(m.path("file-at-root"), nil, 0o644), syscall.EPERM)
}

func TestRenameAndRemove(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	m.bucket(t, "one")
	m.bucket(t, "two")
	data := randomBytes(5<<20, 4)
	if err := os.WriteFile(m.path("one", "tmp.part"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The usual atomic save: write aside, rename into place.
	if err := os.Rename(m.path("one", "tmp.part"), m.path("one", "final")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.path("one", "tmp.part")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name still there: %v", err)
	}
	if got := m.backendBytes(t, "one", "final"); !bytes.Equal(got, data) {
		t.Fatal("renamed object differs")
	}
	// Careful savers fsync the directory after the rename.
	d, err := os.Open(m.path("one"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync of a directory: %v", err)
	}
	d.Close()
	// Into a directory of another bucket, over an existing file.
	if err := os.MkdirAll(m.path("two", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("two", "d", "final"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("one", "final"), m.path("two", "d", "final")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(m.path("two", "d", "final")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after rename across buckets: %d bytes, %v", len(got), err)
	}
	// Directories move with mv's copy fallback.
	wantErrno(t, os.Rename(m.path("two", "d"), m.path("two", "e")), syscall.EXDEV)
	wantErrno(t, os.Rename(m.path("two"), m.path("three")), syscall.EXDEV)

	wantErrno(t, os.Remove(m.path("one", "nothing")), syscall.ENOENT)
	if err := os.Remove(m.path("two", "d", "final")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.b.Head(context.Background(), "two", "d/final"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("object still there after unlink: %v", err)
	}
	_, err = os.Stat(m.path("two", "d", "final"))
	wantErrno(t, err, syscall.ENOENT)
}

func TestWriteSemantics(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	m.bucket(t, "wsem")
	p := m.path("wsem", "f")
	if err := os.WriteFile(p, []byte("first version, long"), 0o644); err != nil {
		t.Fatal(err)
	}
	// O_TRUNC rewrites.
	if err := os.WriteFile(p, []byte("second"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.backendBytes(t, "wsem", "f"); string(got) != "second" {
		t.Fatalf("after O_TRUNC rewrite: %q", got)
	}
	// O_APPEND continues the object.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(" + more"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "second + more" {
		t.Fatalf("after append: %q", got)
	}
	// Writing into the middle of a stored object is refused.
	f, err = os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte("X"), 2)
	wantErrno(t, err, syscall.EOPNOTSUPP)
	f.Close()
	// ... but truncate to zero, then rewrite, is fine.
	f, err = os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("third"); err != nil {
		t.Fatal(err)
	}
	// Seeking past the end leaves zeros.
	if _, err := f.WriteAt([]byte("!"), 8); err != nil {
		t.Fatal(err)
	}
	// Sync stores it; writing on after it continues the same file.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := m.backendBytes(t, "wsem", "f"); string(got) != "third\x00\x00\x00!" {
		t.Fatalf("after fsync: %q", got)
	}
	if _, err := f.WriteAt([]byte("?"), 9); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.backendBytes(t, "wsem", "f"); string(got) != "third\x00\x00\x00!?" {
		t.Fatalf("after write past fsync: %q", got)
	}
	// truncate(2) by path.
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
		t.Fatalf("after truncate: %v %v", fi, err)
	}
	wantErrno(t, os.Truncate(p, 3), syscall.EOPNOTSUPP)
	// touch of an existing file leaves it alone.
	m.put(t, "wsem", "g", []byte("keep me"))
	if out, err := exec.Command("touch", m.path("wsem", "g")).CombinedOutput(); err != nil {
		t.Fatalf("touch: %v: %s", err, out)
	}
	if got := m.backendBytes(t, "wsem", "g"); string(got) != "keep me" {
		t.Fatalf("touch changed the file to %q", got)
	}
	// O_EXCL.
	_, err = os.OpenFile(m.path("wsem", "g"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	wantErrno(t, err, syscall.EEXIST)
	// The file shows while it is being written, before it is stored.
	f, err = os.Create(m.path("wsem", "growing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 1000 {
		t.Fatalf("fstat while writing: %v %v", fi, err)
	}
	ents, _ := os.ReadDir(m.path("wsem"))
	if !slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == "growing" }) {
		t.Fatalf("a file being written is not listed: %v", ents)
	}
	f.Close()
}

func TestErrnos(t *testing.T) {
	m := mount(t, local.Config{Memory: 8 << 20}, storefs.Options{})
	m.bucket(t, "errs")
	_, err := os.Open(m.path("errs", "missing"))
	wantErrno(t, err, syscall.ENOENT)
	_, err = os.Open(m.path("no-such-bucket", "x"))
	wantErrno(t, err, syscall.ENOENT)

	// The memory budget is 8 MiB and there is no spill: a 32 MiB file
	// fails with ENOSPC, in a write or at close, and leaves nothing.
	f, err := os.Create(m.path("errs", "too-big"))
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(make([]byte, 32<<20))
	cerr := f.Close()
	if !errors.Is(werr, syscall.ENOSPC) && !errors.Is(cerr, syscall.ENOSPC) {
		t.Fatalf("writing past the quota: write %v, close %v; want ENOSPC", werr, cerr)
	}
	if _, err := m.b.Head(context.Background(), "errs", "too-big"); !errors.Is(err, store.ErrNoSuchKey) {
		t.Fatalf("a failed write left an object: %v", err)
	}
	// The space is back: a small file fits.
	if err := os.WriteFile(m.path("errs", "small"), []byte("fits"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A key longer than the store allows.
	long := strings.Repeat("d", 200)
	p := m.path("errs", long, long, long, long, long, long)
	wantErrno(t, os.MkdirAll(p, 0o755), syscall.ENAMETOOLONG)
}

// TestPrograms runs real programs over the mount: cp, cat, dd, sort and
// Python's file I/O.
func TestPrograms(t *testing.T) {
	m := mount(t, local.Config{}, storefs.Options{})
	m.bucket(t, "prog")
	src := filepath.Join(t.TempDir(), "src")
	data := randomBytes(20<<20, 5)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := range 5000 {
		lines = append(lines, pad(i*7919%5000))
	}
	input := strings.Join(lines, "\n") + "\n"
	m.put(t, "prog", "lines.txt", []byte(input))

	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	run("cp", src, m.path("prog", "copy"))
	run("dd", "if="+m.path("prog", "copy"), "of="+m.path("prog", "dd"), "bs=1M", "status=none")
	run("sh", "-c", "cat "+m.path("prog", "dd")+" > "+m.path("prog", "cat"))
	run("sort", "-o", m.path("prog", "sorted.txt"), m.path("prog", "lines.txt"))
	run("cp", "-r", m.path("prog"), m.path("prog", "..", "prog-copy")) // a new bucket
	for _, name := range []string{"copy", "dd", "cat"} {
		if got := m.backendBytes(t, "prog", name); !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes that differ from the source", name, len(got))
		}
	}
	slices.Sort(lines)
	if got := m.backendBytes(t, "prog", "sorted.txt"); string(got) != strings.Join(lines, "\n")+"\n" {
		t.Fatal("sort's output differs")
	}
	if got := m.backendBytes(t, "prog-copy", "dd"); !bytes.Equal(got, data) {
		t.Fatal("cp -r copied a file that differs")
	}
	// mv of a directory falls back to copy and delete on EXDEV.
	run("mkdir", "-p", m.path("prog", "dir", "sub"))
	run("cp", src, m.path("prog", "dir", "sub", "f"))
	run("mv", m.path("prog", "dir"), m.path("prog", "moved"))
	if got := m.backendBytes(t, "prog", "moved/sub/f"); !bytes.Equal(got, data) {
		t.Fatal("mv moved a file that differs")
	}
	run("rm", "-r", m.path("prog-copy"))

	if _, err := exec.LookPath("python3"); err != nil {
		t.Log("no python3; skipping its part")
		return
	}
	script := `
import os, sys
d = sys.argv[1]
with open(os.path.join(d, "py.txt"), "w") as f:
    for i in range(10000):
        f.write("line %d\n" % i)
with open(os.path.join(d, "py.txt")) as f:
    n = sum(1 for _ in f)
assert n == 10000, n
with open(os.path.join(d, "py.txt"), "rb") as f:
    f.seek(-8, os.SEEK_END)
    tail = f.read()
assert tail == b"ne 9999\n", tail
with open(os.path.join(d, "py.txt"), "a") as f:
    f.write("appended\n")
assert open(os.path.join(d, "py.txt")).read().endswith("9999\nappended\n")
os.replace(os.path.join(d, "py.txt"), os.path.join(d, "py2.txt"))
assert sorted(os.listdir(d))[:2] != [], os.listdir(d)
os.remove(os.path.join(d, "py2.txt"))
print("ok")
`
	out, err := exec.Command("python3", "-c", script, m.path("prog")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python: %v: %s", err, out)
	}
}

func TestMountErrors(t *testing.T) {
	if err := storefs.Available(); err != nil {
		t.Skipf("no FUSE on this machine: %v", err)
	}
	b, err := local.Open(local.Config{Dir: t.TempDir(), Memory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := storefs.Mount(filepath.Join(t.TempDir(), "absent"), b, storefs.Options{}); err == nil || errors.Is(err, storefs.ErrUnavailable) {
		t.Fatalf("mount on a missing directory: %v", err)
	}
	if _, err := storefs.Mount(t.TempDir(), b, storefs.Options{PartSize: 1 << 20}); err == nil {
		t.Fatal("mount with a part size below the store's minimum succeeded")
	}
}
