package peerlink

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/pki"
)

// members issues n members of one fresh cluster CA.
func members(t testing.TB, names ...string) []*pki.Member {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*pki.Member
	for _, name := range names {
		f, err := pki.WriteMember(filepath.Join(dir, name), name, []string{"127.0.0.1"}, ca, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		m, err := pki.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// fileHandler serves each payload from a file of its own (so sendfile has
// a descriptor) and keeps adopted bodies.
type fileHandler struct {
	t        testing.TB
	payloads map[string][]byte
	// unsummed leaves the checksum to a trailer when the puller takes one.
	unsummed bool
	wait     func(context.Context) error // Pulled.Wait of unsummed pulls

	mu      sync.Mutex
	adopted map[string][]byte
	summed  []uint32 // checksums the server computed while sending
	taken   int      // reads taken without bytes
}

type filePayload struct{ f *os.File }

func (p filePayload) Read(b []byte) (int, error) { return p.f.Read(b) }
func (p filePayload) File() *os.File             { return p.f }
func (p filePayload) Close() error               { return p.f.Close() }

var errNope = errors.New("no such payload")

func (h *fileHandler) Pull(ctx context.Context, req Request) (Pulled, error) {
	b, ok := h.payloads[req.Ref]
	if !ok || req.Reader != "count" {
		return Pulled{}, errNope
	}
	f, err := os.CreateTemp(h.t.TempDir(), "payload")
	if err != nil {
		return Pulled{}, err
	}
	if _, err := f.Write(b); err != nil {
		return Pulled{}, err
	}
	f.Seek(0, io.SeekStart)
	pd := Pulled{Payload: filePayload{f}, Size: int64(len(b)), Checksum: 42, ReadsLeft: 7}
	if h.unsummed && req.Trailer {
		pd.Checksum, pd.Unsummed, pd.Wait = 0, true, h.wait
		pd.Summed = func(sum uint32) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.summed = append(h.summed, sum)
		}
	}
	return pd, nil
}

func (h *fileHandler) Take(ctx context.Context, ref, reader string) (uint32, error) {
	if _, ok := h.payloads[ref]; !ok || reader != "count" {
		return 0, errNope
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.taken++
	return uint32(10 - h.taken), nil
}

func (h *fileHandler) Adopt(ctx context.Context, req Request, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.adopted == nil {
		h.adopted = map[string][]byte{}
	}
	h.adopted[req.Buffer] = b
	return nil
}

// serve starts a holder for h; clear says whether it allows clear payloads.
func serve(t testing.TB, m *pki.Member, h Handler, clear bool) (addr string, srv *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = &Server{Handler: h, TLS: m.ServerConfig(), Clear: clear, Code: func(err error) string {
		if errors.Is(err, errNope) {
			return "ref_gone"
		}
		return "internal"
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	return ln.Addr().String(), srv
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestPullClearAndTLS(t *testing.T) {
	ms := members(t, "n1", "n2")
	payload := random(t, 3<<20+17)
	for _, tc := range []struct {
		name               string
		serverClear, clear bool
		wantClear          bool
	}{
		{"both clear", true, true, true},
		{"server refuses clear", false, true, false},
		{"client wants tls", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": payload}}, tc.serverClear)
			c := &Client{TLS: ms[1].ClientConfig(""), Clear: tc.clear}
			defer c.CloseIdle("")
			for i := 0; i < 3; i++ { // the connection is reused between pulls
				body, ans, err := c.Pull(context.Background(), addr, "r1", "count")
				if err != nil {
					t.Fatal(err)
				}
				if ans.Clear != tc.wantClear || ans.Size != int64(len(payload)) || ans.Checksum != 42 {
					t.Fatalf("answer = %+v", ans)
				}
				got, err := io.ReadAll(body)
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("pull %d: %d bytes, err %v", i, len(got), err)
				}
				body.Close()
			}
			c.mu.Lock()
			idle := len(c.idle[addr])
			c.mu.Unlock()
			if idle != 1 {
				t.Fatalf("%d idle connections after 3 sequential pulls; want 1 reused", idle)
			}
		})
	}
}

// TestPullWithTrailer: a holder that does not know the checksum computes it
// while sending and sends it after the payload, through TLS, in both modes;
// the connection stays in step for the next pull, and a payload of no
// bytes works too.
func TestPullWithTrailer(t *testing.T) {
	ms := members(t, "n1", "n2")
	payload := random(t, 3<<20+17)
	want := crc32.Checksum(payload, castagnoli)
	for _, clear := range []bool{true, false} {
		h := &fileHandler{t: t, payloads: map[string][]byte{"r1": payload, "empty": {}}, unsummed: true}
		addr, _ := serve(t, ms[0], h, clear)
		c := &Client{TLS: ms[1].ClientConfig(""), Clear: clear}
		for i := 0; i < 2; i++ {
			body, ans, err := c.Pull(context.Background(), addr, "r1", "count")
			if err != nil {
				t.Fatal(err)
			}
			if !ans.Trailer || ans.Checksum != 0 || ans.ReadsLeft != 7 {
				t.Fatalf("clear=%v: answer = %+v; want a trailer and 7 reads left", clear, ans)
			}
			var got bytes.Buffer
			if i == 0 {
				_, err = io.Copy(&got, body) // Read
			} else {
				var f *os.File
				if f, err = os.CreateTemp(t.TempDir(), "landing"); err == nil {
					_, err = body.WriteTo(f) // splice when clear
					f.Seek(0, io.SeekStart)
					got.ReadFrom(f)
					f.Close()
				}
			}
			if err != nil || !bytes.Equal(got.Bytes(), payload) {
				t.Fatalf("clear=%v pull %d: %d bytes, err %v", clear, i, got.Len(), err)
			}
			if body.Checksum() != want {
				t.Fatalf("clear=%v: trailer says %08x, the payload's crc32c is %08x", clear, body.Checksum(), want)
			}
			body.Close()
		}
		body, ans, err := c.Pull(context.Background(), addr, "empty", "count")
		if err != nil || ans.Size != 0 || body.Checksum() != 0 {
			t.Fatalf("empty payload: %+v, %v", ans, err)
		}
		h.mu.Lock()
		summed := slices.Clone(h.summed)
		h.mu.Unlock()
		if !slices.Equal(summed, []uint32{want, want, 0}) {
			t.Fatalf("the holder was told checksums %x", summed)
		}
		c.mu.Lock()
		idle := len(c.idle[addr])
		c.mu.Unlock()
		if idle != 1 {
			t.Fatalf("%d idle connections after sequential pulls; want 1 reused", idle)
		}
		c.CloseIdle("")
	}
}

// TestPullWaitFailureCutsThePayload: a payload that does not become ready
// after its answer went out reaches the puller as cut short, never as
// complete.
func TestPullWaitFailureCutsThePayload(t *testing.T) {
	ms := members(t, "n1", "n2")
	h := &fileHandler{t: t, payloads: map[string][]byte{"r1": random(t, 1<<20)}, unsummed: true,
		wait: func(context.Context) error { return errors.New("writer never unmapped") }}
	addr, _ := serve(t, ms[0], h, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	defer c.CloseIdle("")
	body, _, err := c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if got, err := io.ReadAll(body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %d bytes, err %v; want the payload cut short", len(got), err)
	}
}

func TestTake(t *testing.T) {
	ms := members(t, "n1", "n2")
	h := &fileHandler{t: t, payloads: map[string][]byte{"r1": []byte("x")}}
	addr, _ := serve(t, ms[0], h, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	defer c.CloseIdle("")
	for want := uint32(9); want >= 8; want-- {
		left, err := c.Take(context.Background(), addr, "r1", "count")
		if err != nil || left != want {
			t.Fatalf("Take = %d, %v; want %d left", left, err, want)
		}
	}
	var re *RemoteError
	if _, err := c.Take(context.Background(), addr, "r1", "intruder"); !errors.As(err, &re) || re.Code != "ref_gone" {
		t.Fatalf("wrong reader: err = %v; want a RemoteError ref_gone", err)
	}
	if h.taken != 2 {
		t.Fatalf("%d reads taken; want 2", h.taken)
	}
}

func TestPullIntoFileBySplice(t *testing.T) {
	ms := members(t, "n1", "n2")
	payload := random(t, 8<<20)
	addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": payload}}, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	body, _, err := c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "landing")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.Copy(f, body); err != nil || n != int64(len(payload)) {
		t.Fatalf("copy = %d, %v", n, err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, payload) {
		t.Fatal("payload landed damaged")
	}
	// The connection is still in step: a second pull works.
	body, _, err = c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(body); !bytes.Equal(got, payload) {
		t.Fatal("second pull damaged")
	}
}

func TestPullErrorKeepsConnection(t *testing.T) {
	ms := members(t, "n1", "n2")
	addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": []byte("x")}}, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	_, _, err := c.Pull(context.Background(), addr, "r1", "intruder")
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "ref_gone" {
		t.Fatalf("wrong reader: err = %v; want a RemoteError ref_gone", err)
	}
	body, _, err := c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(body); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
}

func TestOutsiderRefused(t *testing.T) {
	ms := members(t, "n1")
	other := members(t, "n9") // another cluster's CA
	addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": []byte("secret")}}, true)
	c := &Client{TLS: other[0].ClientConfig(""), Clear: true}
	if _, _, err := c.Pull(context.Background(), addr, "r1", "count"); err == nil {
		t.Fatal("a member of another cluster pulled a payload")
	}
	// Plain TCP, no TLS at all: the holder answers nothing readable.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	writeFrame(raw, Request{Op: "pull", Ref: "r1", Reader: "count"})
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(raw)
	if bytes.Contains(b, []byte("secret")) {
		t.Fatal("payload sent to a client without TLS")
	}
}

func TestPartialReadDropsConnection(t *testing.T) {
	ms := members(t, "n1", "n2")
	payload := random(t, 4<<20)
	addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": payload}}, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	body, _, err := c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	io.ReadFull(body, buf)
	body.Close()
	c.mu.Lock()
	idle := len(c.idle[addr])
	c.mu.Unlock()
	if idle != 0 {
		t.Fatal("a connection left mid-payload went back to the pool")
	}
	body, _, err = c.Pull(context.Background(), addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(body); !bytes.Equal(got, payload) {
		t.Fatal("pull after an abandoned one damaged")
	}
}

func TestCancelMidPayload(t *testing.T) {
	ms := members(t, "n1", "n2")
	addr, _ := serve(t, ms[0], &fileHandler{t: t, payloads: map[string][]byte{"r1": random(t, 64<<20)}}, true)
	c := &Client{TLS: ms[1].ClientConfig(""), Clear: true}
	ctx, cancel := context.WithCancel(context.Background())
	body, _, err := c.Pull(ctx, addr, "r1", "count")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	body.Read(buf)
	cancel()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, body); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled pull finished without error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled pull kept reading")
	}
}

func TestAdopt(t *testing.T) {
	ms := members(t, "n1", "n2")
	for _, clear := range []bool{true, false} {
		h := &fileHandler{t: t}
		addr, _ := serve(t, ms[0], h, true)
		c := &Client{TLS: ms[1].ClientConfig(""), Clear: clear}
		payload := random(t, 2<<20)
		f, _ := os.CreateTemp(t.TempDir(), "buf")
		f.Write(payload)
		f.Seek(0, io.SeekStart)
		err := c.Adopt(context.Background(), addr, Request{Holder: "n2-x", Buffer: "b1", ReadsLeft: 1, Size: int64(len(payload))}, f, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h.adopted["b1"], payload) {
			t.Fatalf("clear=%v: adopted %d bytes, want %d", clear, len(h.adopted["b1"]), len(payload))
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"op":"pull","ref":"hr1.x","reader":"count","clear":true}`))
	f.Add([]byte(`{"code":"ref_gone","error":"gone","size":3}`))
	f.Add([]byte(`{"op":"pull","ref":"hr1.x","reader":"count","clear":true,"trailer":true}`))
	f.Add([]byte(`{"size":1073741824,"clear":true,"trailer":true,"readsLeft":7}`))
	f.Add([]byte(`{"op":"take","ref":"hr1.x","reader":"count"}`))
	f.Add([]byte(`{"op":"adopt","holder":"n1-x","buffer":"00","readsLeft":1,"expires":5,"size":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req Request
		if err := decode(b, &req); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		var ans Answer
		if err := decode(b, &ans); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		// A frame that decodes encodes again.
		var buf bytes.Buffer
		if err := writeFrame(&buf, req); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	})
}
