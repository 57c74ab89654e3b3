package control

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// frontPair serves one connection through a front whose invocations are
// answered by fn, and whose other requests go to net/http with other.
func frontPair(t *testing.T, other http.Handler) (net.Conn, *bufio.Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{funcs: map[string]*function{}, log: discardLogger()}
	s.metrics = newMetrics(s)
	fr := newFront(s, ln)
	go fr.serve()
	srv := &http.Server{Handler: other}
	go srv.Serve(fr.handoff)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestFrontServesInvocationsAndHandsOverTheRest(t *testing.T) {
	c, br := frontPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "net/http served "+r.URL.Path)
	}))
	send := func(raw string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	body := func(resp *http.Response) string {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	// An invocation of an unknown function: the front answers (404, JSON),
	// chunked, and keeps the connection.
	resp := send("POST /fn/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if b := body(resp); resp.StatusCode != http.StatusNotFound || !strings.Contains(b, "not deployed") || resp.Close {
		t.Fatalf("unknown function: %d close=%v %q", resp.StatusCode, resp.Close, b)
	}
	// A second one on the same connection.
	resp = send("POST /fn/nope2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if b := body(resp); resp.StatusCode != http.StatusNotFound || resp.Close {
		t.Fatalf("second invocation: %d close=%v %q", resp.StatusCode, resp.Close, b)
	}
	// Anything else goes to net/http, on the same connection.
	resp = send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if b := body(resp); b != "net/http served /healthz" {
		t.Fatalf("handed-over request: %d %q", resp.StatusCode, b)
	}
	resp = send("POST /fn/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if b := body(resp); b != "net/http served /fn/nope" {
		t.Fatalf("after the hand-over net/http keeps the connection: %q", b)
	}
}

func TestFrontClosesWhenTheBodyWasNotRead(t *testing.T) {
	c, br := frontPair(t, http.NotFoundHandler())
	// The function is unknown, so the handler answers without reading the
	// chunked body; the answer must say Connection: close.
	io.WriteString(c, "POST /fn/nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Fatal("an answer sent before the body was read did not close the connection")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
