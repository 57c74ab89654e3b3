package peerlink

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
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

	mu      sync.Mutex
	adopted map[string][]byte
}

type filePayload struct{ f *os.File }

func (p filePayload) Read(b []byte) (int, error) { return p.f.Read(b) }
func (p filePayload) File() *os.File             { return p.f }
func (p filePayload) Close() error               { return p.f.Close() }

var errNope = errors.New("no such payload")

func (h *fileHandler) Pull(ctx context.Context, ref, reader string) (Payload, int64, uint32, error) {
	b, ok := h.payloads[ref]
	if !ok || reader != "count" {
		return nil, 0, 0, errNope
	}
	f, err := os.CreateTemp(h.t.TempDir(), "payload")
	if err != nil {
		return nil, 0, 0, err
	}
	if _, err := f.Write(b); err != nil {
		return nil, 0, 0, err
	}
	f.Seek(0, io.SeekStart)
	return filePayload{f}, int64(len(b)), 42, nil
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
