package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/memfd"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/spec"
)

// The tests of references run a real node agent in-process (node.Agent,
// with a minimal control plane that only answers heartbeats) and real
// instances of internal/testfn, built by TestMain, that call this package
// from their own processes. Tests that drive the SDK from the test process
// itself borrow an instance's sockets: the node agent then takes the test
// for that instance's function.

// testfnBin is ./internal/testfn, built once by TestMain.
var testfnBin string

func TestMain(m *testing.M) {
	if n := os.Getenv(handOverChildEnv); n != "" {
		os.Exit(handOverChild(n))
	}
	dir, err := os.MkdirTemp("", "sdk-testfn-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sdk test:", err)
		os.Exit(1)
	}
	testfnBin = filepath.Join(dir, "testfn")
	build := exec.Command("go", "build", "-o", testfnBin, "../internal/testfn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "sdk test: building internal/testfn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const refToken = "sdk-test-cluster-token"

// refNode is a node agent running in-process until the test ends.
type refNode struct {
	tb     testing.TB
	base   string // http://ADDR of the node API
	client *http.Client
}

// syncBuffer collects the agent's log, shown when a test fails.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRefNode(tb testing.TB) *refNode {
	tb.Helper()
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/heartbeat") {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"peers":{}}`)
			return
		}
		http.Error(w, "this control plane only takes heartbeats", http.StatusNotFound)
	}))
	tb.Cleanup(ctl.Close)
	// A short directory: socket paths must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "sdk-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	var log syncBuffer
	a, err := node.New(node.Config{
		ID: "n1", Dir: dir, ControlURL: ctl.URL, Token: refToken,
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("node agent: Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("node agent: Run did not return within 30s of its context ending")
		}
		if tb.Failed() {
			tb.Logf("node agent log:\n%s", log.String())
		}
	})
	return &refNode{tb: tb, base: "http://" + a.Addr(), client: &http.Client{Timeout: 60 * time.Second}}
}

// do sends a request with the cluster token to the node API.
func (n *refNode) do(method, path string, body []byte, hdr ...string) (int, []byte) {
	n.tb.Helper()
	req, err := http.NewRequest(method, n.base+path, bytes.NewReader(body))
	if err != nil {
		n.tb.Fatal(err)
	}
	req.Header.Set(httpx.HeaderToken, refToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		n.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.tb.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// start starts instance id of function fn, running testfn.
func (n *refNode) start(id, fn string) {
	n.tb.Helper()
	f := spec.Function{Name: fn, Run: spec.Run{Command: testfnBin}}
	f.ApplyDefaults()
	body, err := json.Marshal(node.StartRequest{Function: f})
	if err != nil {
		n.tb.Fatal(err)
	}
	if status, b := n.do("PUT", "/v1/instances/"+id, body); status != http.StatusOK {
		n.tb.Fatalf("starting instance %s of %s: status %d, want 200; body %s", id, fn, status, b)
	}
}

// stop stops instance id and waits until it is gone.
func (n *refNode) stop(id string) {
	n.tb.Helper()
	if status, b := n.do("DELETE", "/v1/instances/"+id, nil); status != http.StatusNoContent {
		n.tb.Fatalf("stopping instance %s: status %d, want 204; body %s", id, status, b)
	}
}

// invoke sends one invocation of fn to instance id, as the gateway does.
func (n *refNode) invoke(id, fn, body string) (int, string) {
	n.tb.Helper()
	status, b := n.do("POST", "/v1/invoke/"+id, []byte(body), httpx.HeaderFunction, fn)
	return status, string(b)
}

// must invokes and fails the test unless the answer is 200.
func (n *refNode) must(id, fn, body string) string {
	n.tb.Helper()
	status, out := n.invoke(id, fn, body)
	if status != http.StatusOK {
		n.tb.Fatalf("%s (%s) %.60q: status %d, want 200; body %s", fn, id, body, status, out)
	}
	return out
}

// refused invokes and checks that testfn reports the node agent's refusal
// with one of codes (status 422, the message starting with the code).
func (n *refNode) refused(id, fn, body string, codes ...string) {
	n.tb.Helper()
	status, out := n.invoke(id, fn, body)
	var e errorBody
	if status == http.StatusUnprocessableEntity && json.Unmarshal([]byte(out), &e) == nil {
		for _, code := range codes {
			if strings.HasPrefix(e.Error, code+": ") {
				return
			}
		}
	}
	n.tb.Errorf("%s (%s) %.40q: status %d, body %s; want 422 and an error starting with one of %q", fn, id, body, status, out, codes)
}

// overRead are the codes of a read beyond the allowed ones: ref_exhausted
// when it races the last allowed read, ref_gone once the node agent has
// freed the payload (buffer.ErrExhausted's doc).
var overRead = []string{"ref_exhausted", "ref_gone"}

// put makes testfn create a reference (action put, putreader or share)
// and returns it with the "SIZE CRC" of the bytes the sender sent.
func (n *refNode) put(id, fn, action, readers string, reads int, size int64) (ref, desc string) {
	n.tb.Helper()
	out := n.must(id, fn, fmt.Sprintf("%s %s %d %d", action, readers, reads, size))
	ref, desc, ok := strings.Cut(out, " ")
	if !ok || !strings.HasPrefix(desc, fmt.Sprint(size)+" ") {
		n.tb.Fatalf("%s %s: answer %q, want REF %d CRC", fn, action, out, size)
	}
	return ref, desc
}

// read makes testfn read ref (action get, map or open) and checks that it
// got the bytes described by want ("SIZE CRC").
func (n *refNode) read(id, fn, action, ref, want string) {
	n.tb.Helper()
	if got := n.must(id, fn, action+" "+ref); got != want {
		n.tb.Errorf("%s %s: got %q, want %q (the sender's)", fn, action, got, want)
	}
}

// borrow makes the SDK in this process speak for instance id (of fn):
// its local API and, when fdToo, its descriptor socket.
func (n *refNode) borrow(t *testing.T, id, fn string, fdToo bool) {
	t.Helper()
	t.Setenv("HANDOFF_API", n.must(id, fn, "env HANDOFF_API"))
	fdPath := ""
	if fdToo {
		fdPath = n.must(id, fn, "env HANDOFF_FD")
	}
	t.Setenv("HANDOFF_FD", fdPath)
}

func TestRefsBetweenInstances(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.start("b1", "bob")

	for _, c := range []struct {
		put, read string
		size      int64
	}{
		{"put", "get", 1 << 20},
		{"put", "map", 3_000_001},
		{"put", "open", 70_000},
		{"putreader", "get", 5 << 20},
		{"share", "get", 2 << 20},
		{"share", "open", 1<<20 + 3},
	} {
		ref, want := n.put("a1", "alice", c.put, "bob", 1, c.size)
		n.read("b1", "bob", c.read, ref, want)
	}

	// The same bytes whichever way they were put.
	_, viaPut := n.put("a1", "alice", "put", "bob", 1, 1<<20)
	_, viaShare := n.put("a1", "alice", "share", "bob", 1, 1<<20)
	_, viaReader := n.put("a1", "alice", "putreader", "bob", 1, 1<<20)
	if viaPut != viaShare || viaPut != viaReader {
		t.Errorf("1 MiB of testfn's pattern: put %q, share %q, putreader %q; want the same", viaPut, viaShare, viaReader)
	}

	t.Run("empty", func(t *testing.T) {
		ref, want := n.put("a1", "alice", "put", "bob", 3, 0)
		if want != "0 00000000" {
			t.Errorf("put of 0 bytes: %q, want 0 00000000", want)
		}
		n.read("b1", "bob", "get", ref, want)
		n.read("b1", "bob", "map", ref, want)
		n.read("b1", "bob", "open", ref, want)
		ref, want = n.put("a1", "alice", "share", "bob", 1, 0)
		n.read("b1", "bob", "map", ref, want)
	})

	t.Run("wrong reader", func(t *testing.T) {
		ref, want := n.put("a1", "alice", "put", "bob", 1, 1000)
		n.refused("a1", "alice", "get "+ref, "ref_wrong_reader")
		n.refused("a1", "alice", "map "+ref, "ref_wrong_reader")
		n.refused("a1", "alice", "open "+ref, "ref_wrong_reader")
		// A refused reader took no read from the one allowed.
		n.read("b1", "bob", "get", ref, want)
	})

	t.Run("any reader", func(t *testing.T) {
		ref, want := n.put("a1", "alice", "share", "*", 2, 1000)
		n.read("a1", "alice", "map", ref, want)
		n.read("b1", "bob", "get", ref, want)
	})

	t.Run("over-read", func(t *testing.T) {
		ref, want := n.put("a1", "alice", "put", "bob", 2, 10_000)
		n.read("b1", "bob", "map", ref, want)
		n.read("b1", "bob", "get", ref, want)
		n.refused("b1", "bob", "get "+ref, overRead...)
		n.refused("b1", "bob", "map "+ref, overRead...)
		n.refused("b1", "bob", "open "+ref, overRead...)
	})

	t.Run("forged", func(t *testing.T) {
		ref, _ := n.put("a1", "alice", "put", "bob", 1, 10)
		// Flip one character of the signed token.
		b := []byte(ref)
		i := len(b) - 5
		b[i] ^= 'A' ^ 'B'
		if b[i] == ref[i] {
			b[i] = 'x'
		}
		status, out := n.invoke("b1", "bob", "get "+string(b))
		if status != http.StatusUnprocessableEntity || !strings.Contains(out, "ref_") {
			t.Errorf("get of an altered reference: status %d, body %s; want 422 with a ref_ code", status, out)
		}
	})
}

func TestShareMap64MiB(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.start("b1", "bob")
	ref, want := n.put("a1", "alice", "share", "bob", 2, 64<<20)
	n.read("b1", "bob", "map", ref, want)
	n.read("b1", "bob", "get", ref, want)
}

// The payload belongs to the node agent: its sender may be gone before the
// receiver reads it.
func TestRefOutlivesSender(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.start("b1", "bob")
	viaPut, wantPut := n.put("a1", "alice", "put", "bob", 1, 8<<20)
	viaShare, wantShare := n.put("a1", "alice", "share", "bob", 2, 16<<20)
	viaReader, wantReader := n.put("a1", "alice", "putreader", "bob", 1, 4<<20)
	n.stop("a1")
	if status, out := n.invoke("a1", "alice", "echo still there?"); status == http.StatusOK {
		t.Fatalf("alice's instance still answers after DELETE: %s", out)
	}
	n.read("b1", "bob", "get", viaPut, wantPut)
	n.read("b1", "bob", "map", viaShare, wantShare)
	n.read("b1", "bob", "get", viaShare, wantShare)
	n.read("b1", "bob", "open", viaReader, wantReader)
}

func TestPutReaderOpen20MiB(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.start("b1", "bob")
	ref, want := n.put("a1", "alice", "putreader", "bob", 1, 20<<20)
	n.read("b1", "bob", "open", ref, want)
	ref, want = n.put("a1", "alice", "put", "bob", 1, 20<<20)
	n.read("b1", "bob", "open", ref, want)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// refStatus is the HTTP status of each code the tests expect.
var refStatus = map[string]int{
	"ref_malformed": 400, "ref_invalid": 400, "ref_wrong_reader": 403,
	"ref_gone": 404, "ref_exhausted": 410,
}

// wantRefError checks that err is a *RefError of op with one of codes,
// with its HTTP status when it came overHTTP, else status 0.
func wantRefError(t *testing.T, what string, err error, op string, overHTTP bool, codes ...string) {
	t.Helper()
	var re *RefError
	if !errors.As(err, &re) {
		t.Errorf("%s: error %v (%T), want a *RefError %q", what, err, err, codes)
		return
	}
	status := 0
	if overHTTP {
		status = refStatus[re.Code]
	}
	if re.Op != op || !slices.Contains(codes, re.Code) || re.Status != status || re.Message == "" {
		t.Errorf("%s: %+v, want op %q, a code of %q, its status (over HTTP) and a message", what, *re, op, codes)
	}
	if !strings.Contains(err.Error(), "["+re.Code+"]") {
		t.Errorf("%s: message %q does not show the code", what, err)
	}
}

// Without $HANDOFF_FD (or with one that is not a seqpacket socket) the SDK
// goes through the local API over HTTP.
func TestRefsOverHTTP(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.borrow(t, "a1", "alice", false)
	ctx := context.Background()
	self := RefOptions{Readers: []string{"alice"}}
	data := randomBytes(t, 3<<20+1)

	ref, err := Put(ctx, data, self)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after Put over HTTP: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}

	// Unknown length: sent chunked.
	ref, err = PutReader(ctx, struct{ io.Reader }{bytes.NewReader(data)}, -1, RefOptions{Readers: []string{AnyReader}, Reads: 2, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := Open(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open after a chunked PutReader: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second read (Reads: 2): %d bytes, %v", len(got), err)
	}
	_, err = Get(ctx, ref)
	wantRefError(t, "third read of a reference allowing 2", err, "get", true, overRead...)

	ref, err = Put(ctx, nil, self)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Get(ctx, ref); err != nil || len(got) != 0 {
		t.Fatalf("Get of an empty payload: %q, %v", got, err)
	}

	ref, err = Put(ctx, data, RefOptions{Readers: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Get(ctx, ref)
	wantRefError(t, "Get by a function that is not a reader", err, "get", true, "ref_wrong_reader")
	_, err = Open(ctx, ref)
	wantRefError(t, "Open by a function that is not a reader", err, "open", true, "ref_wrong_reader")

	// Map needs a descriptor; a Buffer still works, by copy.
	if _, err := Map(ctx, ref); !errors.Is(err, ErrNoFD) {
		t.Errorf("Map without HANDOFF_FD: %v, want ErrNoFD", err)
	}
	for _, payload := range [][]byte{data, data[:1000]} { // a memfd, ordinary memory
		buf, err := NewBuffer(int64(len(payload)))
		if err != nil {
			t.Fatal(err)
		}
		copy(buf.Bytes(), payload)
		ref, err = buf.Share(ctx, self)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("Get after Share over HTTP: %d bytes, %v; want the %d shared", len(got), err, len(payload))
		}
	}

	// HANDOFF_FD naming a stream socket (the local API's own).
	t.Setenv("HANDOFF_FD", os.Getenv("HANDOFF_API"))
	ref, err = Put(ctx, data, self)
	if err != nil {
		t.Fatalf("Put with HANDOFF_FD naming a stream socket: %v, want the HTTP fallback", err)
	}
	if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get with HANDOFF_FD naming a stream socket: %d bytes, %v", len(got), err)
	}
	if _, err := Map(ctx, ref); !errors.Is(err, ErrNoFD) {
		t.Errorf("Map with HANDOFF_FD naming a stream socket: %v, want ErrNoFD", err)
	}
}

func inode(t testing.TB, f *os.File) uint64 {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Over $HANDOFF_FD, from this process (speaking for alice).
func TestRefsOverFD(t *testing.T) {
	n := startRefNode(t)
	n.start("a1", "alice")
	n.borrow(t, "a1", "alice", true)
	ctx := context.Background()
	self := RefOptions{Readers: []string{"alice"}}
	data := randomBytes(t, 4<<20+7)

	t.Run("zero copy", func(t *testing.T) {
		buf, err := NewBuffer(int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		copy(buf.Bytes(), data)
		ino := inode(t, buf.f)
		ref, err := buf.Share(ctx, self)
		if err != nil {
			t.Fatal(err)
		}
		if buf.Bytes() != nil || buf.Close() != nil {
			t.Errorf("a shared Buffer: Bytes %d bytes, want nil; Close must be a no-op", len(buf.Bytes()))
		}
		m, err := Map(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !bytes.Equal(m.Bytes(), data) {
			t.Errorf("Map after Share: %d bytes, not the %d shared", len(m.Bytes()), len(data))
		}
		if got := inode(t, m.f); got != ino {
			t.Errorf("Map after Share on one node: inode %d, want the sender's memfd %d (the pages were copied)", got, ino)
		}
		if err := m.Close(); err != nil || m.Bytes() != nil || m.Close() != nil {
			t.Errorf("Mapping.Close: %v; Bytes after Close: %d bytes", err, len(m.Bytes()))
		}
	})

	t.Run("put get", func(t *testing.T) {
		ref, err := Put(ctx, data, RefOptions{Readers: []string{"alice"}, Reads: 2, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after Put: %d bytes, %v; want the %d bytes put", len(got), err, len(data))
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("second Get (Reads: 2): %d bytes, %v", len(got), err)
		}
		_, err = Get(ctx, ref)
		wantRefError(t, "third Get of a reference allowing 2", err, "get", false, overRead...)
		_, err = Map(ctx, ref)
		wantRefError(t, "Map of an exhausted reference", err, "map", false, overRead...)
	})

	t.Run("empty", func(t *testing.T) {
		ref, err := Put(ctx, []byte{}, RefOptions{Readers: []string{"alice"}, Reads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Get(ctx, ref); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("Get of 0 bytes: %v, %v; want an empty slice", got, err)
		}
		m, err := Map(ctx, ref)
		if err != nil || len(m.Bytes()) != 0 {
			t.Fatalf("Map of 0 bytes: %v", err)
		}
		m.Close()
	})

	t.Run("errors", func(t *testing.T) {
		ref, err := Put(ctx, data, RefOptions{Readers: []string{"bob"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Get(ctx, ref)
		wantRefError(t, "Get by a function that is not a reader", err, "get", false, "ref_wrong_reader")
		if err != nil && !strings.Contains(err.Error(), `"alice"`) {
			t.Errorf("wrong reader: %q does not name the refused function", err)
		}
		_, err = Map(ctx, ref)
		wantRefError(t, "Map by a function that is not a reader", err, "map", false, "ref_wrong_reader")
		_, err = Get(ctx, "not-a-reference")
		wantRefError(t, "Get of garbage", err, "get", false, "ref_malformed")
		_, err = Put(ctx, data, RefOptions{Readers: []string{"Not A Name"}})
		wantRefError(t, "Put with a bad reader name", err, "put", false, "ref_invalid")

		for _, o := range []RefOptions{{}, {Readers: []string{""}}, {Readers: []string{"a,b"}}, {Readers: []string{"a"}, TTL: -time.Second}} {
			if _, err := Put(ctx, data, o); err == nil || errors.As(err, new(*RefError)) {
				t.Errorf("Put with %+v: %v, want the SDK's own error", o, err)
			}
		}
		for _, f := range []func() error{
			func() error { _, err := Get(ctx, ""); return err },
			func() error { _, err := Map(ctx, ""); return err },
			func() error { _, err := Open(ctx, ""); return err },
			func() error { _, err := NewBuffer(-1); return err },
			func() error { _, err := PutReader(ctx, nil, -2, self); return err },
		} {
			if err := f(); err == nil {
				t.Error("a call with an empty reference or a negative size succeeded")
			}
		}
	})

	t.Run("share again after a refusal", func(t *testing.T) {
		buf, err := NewBuffer(int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		copy(buf.Bytes(), data)
		_, err = buf.Share(ctx, RefOptions{Readers: []string{"Not A Name"}})
		wantRefError(t, "Share with a bad reader name", err, "share", false, "ref_invalid")
		if !bytes.Equal(buf.Bytes(), data) {
			t.Error("a refused Share did not leave the buffer as it was")
		}
		ref, err := buf.Share(ctx, self)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := buf.Share(ctx, self); err == nil {
			t.Error("a second Share of a shared Buffer succeeded")
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after a retried Share: %d bytes, %v", len(got), err)
		}
	})

	t.Run("small buffer", func(t *testing.T) {
		small := data[:smallBuffer]
		buf, err := NewBuffer(int64(len(small)))
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		if buf.f != nil {
			t.Fatal("a 1 MiB Buffer made a shared-memory file; it should be ordinary memory")
		}
		copy(buf.Bytes(), small)
		_, err = buf.Share(ctx, RefOptions{Readers: []string{"Not A Name"}})
		wantRefError(t, "Share of a small Buffer with a bad reader name", err, "share", false, "ref_invalid")
		if !bytes.Equal(buf.Bytes(), small) {
			t.Error("a refused Share did not leave the small buffer as it was")
		}
		ref, err := buf.Share(ctx, self)
		if err != nil {
			t.Fatal(err)
		}
		if buf.Bytes() != nil || buf.Close() != nil {
			t.Error("a shared small Buffer: Bytes not nil, or Close failed")
		}
		if _, err := buf.Share(ctx, self); err == nil {
			t.Error("a second Share of a shared small Buffer succeeded")
		}
		m, err := Map(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if m.f == nil || !bytes.Equal(m.Bytes(), small) {
			t.Fatalf("Map of 1 MiB: mapped %v, %d bytes; want a mapping of the %d shared", m.f != nil, len(m.Bytes()), len(small))
		}
		// Copied into the file at Share, the payload is sealed before its
		// reference exists: its sender has nothing left to change it with.
		if sealed, err := memfd.Sealed(m.f); err != nil || !sealed {
			t.Errorf("a shared small Buffer right after Share: sealed %v, %v; want sealed at once", sealed, err)
		}

		// The next small Buffer reuses the memory, zeroed.
		again, err := NewBuffer(int64(len(small)))
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if !bytes.Equal(again.Bytes(), make([]byte, len(small))) {
			t.Error("a new small Buffer is not all zero")
		}

		tiny := data[:smallMap]
		ref, err = Put(ctx, tiny, self)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Map(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if c.f != nil || !bytes.Equal(c.Bytes(), tiny) {
			t.Errorf("Map of 64 KiB: descriptor kept %v, %d bytes; want a copy of the %d put", c.f != nil, len(c.Bytes()), len(tiny))
		}
		if err := c.Close(); err != nil || c.Bytes() != nil || c.Close() != nil {
			t.Errorf("Mapping.Close of a copy: %v", err)
		}
	})

	t.Run("redial", func(t *testing.T) {
		idle := func() []*fdConn {
			fd.mu.Lock()
			defer fd.mu.Unlock()
			return append([]*fdConn(nil), fd.idle...)
		}
		if _, err := Put(ctx, nil, self); err != nil {
			t.Fatal(err)
		}
		kept := idle()
		if len(kept) != 1 {
			t.Fatalf("%d idle descriptor connections after one Put; want 1", len(kept))
		}
		c := kept[0]
		if _, err := Put(ctx, nil, self); err != nil || len(idle()) != 1 || idle()[0] != c {
			t.Fatalf("second Put: %v; the connection was not kept", err)
		}
		c.c.Shutdown() // as if the node agent had gone away and come back
		ref, err := Put(ctx, data, self)
		if err != nil {
			t.Fatalf("Put on a broken connection: %v, want a fresh one", err)
		}
		if now := idle(); len(now) != 1 || now[0] == c {
			t.Error("the broken connection was kept")
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after a re-dial: %d bytes, %v", len(got), err)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		ref, err := Put(ctx, data, self)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Get(cctx, ref); !errors.Is(err, context.Canceled) {
			t.Errorf("Get with a canceled context: %v, want context.Canceled", err)
		}
		if got, err := Get(ctx, ref); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get after a canceled one: %d bytes, %v", len(got), err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					payload := data[:(g*10+i)*4096]
					var ref string
					var err error
					if i%2 == 0 {
						ref, err = Put(ctx, payload, self)
					} else {
						ref, err = PutReader(ctx, bytes.NewReader(payload), int64(len(payload)), self)
					}
					if err != nil {
						t.Error(err)
						return
					}
					var got []byte
					if i%3 == 0 {
						m, err := Map(ctx, ref)
						if err != nil {
							t.Error(err)
							return
						}
						got = bytes.Clone(m.Bytes())
						m.Close()
					} else if got, err = Get(ctx, ref); err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(got, payload) {
						t.Errorf("goroutine %d round %d: got %d bytes, want the %d put", g, i, len(got), len(payload))
					}
				}
			}()
		}
		wg.Wait()
	})
}

// BenchmarkShareMap measures the hand-over of a 1 GiB buffer from one
// function to another on the same node: Share (unmap, pass the descriptor;
// the node agent seals it and defers its checksum) and Map (the node agent
// passes a descriptor back; mmap). Filling the buffer is not timed; it is
// reported as fill-ms/op, the page faults that a copy into fresh memory
// would pay too. share-ms/op and map-ms/op split the timed part.
func BenchmarkShareMap(b *testing.B) {
	const size = 1 << 30
	n := startRefNode(b)
	n.start("a1", "alice")
	b.Setenv("HANDOFF_API", n.must("a1", "alice", "env HANDOFF_API"))
	b.Setenv("HANDOFF_FD", n.must("a1", "alice", "env HANDOFF_FD"))
	ctx := context.Background()
	var fill, share, mapping time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		t0 := time.Now()
		buf, err := NewBuffer(size)
		if err != nil {
			b.Fatal(err)
		}
		p := buf.Bytes()
		for j := 0; j < len(p); j += 4096 {
			p[j] = byte(i + j>>12)
		}
		fill += time.Since(t0)
		b.StartTimer()
		t1 := time.Now()
		ref, err := buf.Share(ctx, RefOptions{Readers: []string{"alice"}})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		m, err := Map(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		b.StopTimer()
		share, mapping = share+t2.Sub(t1), mapping+t3.Sub(t2)
		if len(m.Bytes()) != size || m.Bytes()[size-4096] != byte(i+(size-4096)>>12) {
			b.Fatal("the mapping does not hold the shared bytes")
		}
		m.Close()
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(fill), "fill-ms/op")
	b.ReportMetric(ms(share), "share-ms/op")
	b.ReportMetric(ms(mapping), "map-ms/op")
}

// BenchmarkMemcpy is the copy that BenchmarkShareMap avoids: 1 GiB from
// one buffer to another, both already in memory.
func BenchmarkMemcpy(b *testing.B) {
	const size = 1 << 30
	src, dst := make([]byte, size), make([]byte, size)
	for j := 0; j < size; j += 4096 {
		src[j], dst[j] = byte(j>>12), 1
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(dst, src)
	}
}

// BenchmarkShareMapSmall is the fixed cost of a same-node hand-over: Share
// of a Buffer and Map of its reference, each one exchange over the
// descriptor socket, at 4 KiB (copied: Buffer and Map keep small payloads
// in ordinary memory) and 1 MiB (mapped). The SDK runs in a second process
// (this test binary again, speaking for instance a1), as an instance does;
// the node agent runs in this one. share-us/op and map-us/op split it.
func BenchmarkShareMapSmall(b *testing.B) {
	n := startRefNode(b)
	n.start("a1", "alice")
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchHandOver(b, n, size) })
	}
}

func benchHandOver(b *testing.B, n *refNode, size int) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		handOverChildEnv+"="+fmt.Sprint(b.N, " ", size),
		"HANDOFF_API="+n.must("a1", "alice", "env HANDOFF_API"),
		"HANDOFF_FD="+n.must("a1", "alice", "env HANDOFF_FD"))
	cmd.Stderr = os.Stderr
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	out, err := cmd.Output()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if err != nil {
		b.Fatalf("the SDK's process: %v", err)
	}
	// CPU time of both processes (this one's includes the agent's other
	// work, heartbeats and all): a round trip is mostly waiting, so this is
	// the figure a loaded machine leaves comparable.
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()+ru1.Stime.Nano()-ru0.Stime.Nano()) +
		cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-us/op")
	var share, mapping float64
	if _, err := fmt.Sscan(string(out), &share, &mapping); err != nil {
		b.Fatalf("the SDK's process answered %q: %v", out, err)
	}
	b.ReportMetric(share/float64(b.N), "share-us/op")
	b.ReportMetric(mapping/float64(b.N), "map-us/op")
}

// handOverChildEnv makes this test binary the SDK's side of
// BenchmarkShareMapSmall: its value is "COUNT SIZE"; it hands over COUNT
// buffers of SIZE bytes and prints the microseconds spent in Share and in
// Map.
const handOverChildEnv = "SDK_BENCH_HANDOVERS"

func handOverChild(arg string) int {
	var n, size int
	if _, err := fmt.Sscan(arg, &n, &size); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	var share, mapping time.Duration
	for i := range n {
		buf, err := NewBuffer(int64(size))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		buf.Bytes()[0] = byte(i)
		t1 := time.Now()
		ref, err := buf.Share(ctx, RefOptions{Readers: []string{"alice"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		t2 := time.Now()
		m, err := Map(ctx, ref)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		share, mapping = share+t2.Sub(t1), mapping+time.Since(t2)
		if m.Bytes()[0] != byte(i) {
			fmt.Fprintln(os.Stderr, "the mapping does not hold the shared bytes")
			return 1
		}
		m.Close()
	}
	fmt.Println(float64(share.Nanoseconds())/1000, float64(mapping.Nanoseconds())/1000)
	return 0
}
