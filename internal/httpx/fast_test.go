package httpx

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFastReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	f := NewFast()
	for i := range 20 {
		body := strings.Repeat("x", i*100)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		resp, err := f.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != body {
			t.Fatalf("request %d: got %d bytes, want %d", i, len(got), len(body))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections; want 1", n)
	}
}

func TestFastDropsConnectionsTheServerClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	f := NewFast()
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := f.RoundTrip(req)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections() // as an instance restart would
	time.Sleep(10 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatalf("request after the server closed the pooled connection: %v", err)
	}
}

func TestFastHonoursCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader([]byte("x")))
	start := time.Now()
	if _, err := NewFast().RoundTrip(req); err == nil {
		t.Fatal("a request to a server that never answers succeeded")
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("cancel took %s", time.Since(start))
	}
}

func TestHybridSendsLargeBodiesThroughTheTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	defer srv.Close()
	h := NewHybrid()
	body := bytes.Repeat([]byte("y"), 4<<20)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	resp, err := h.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("4 MiB echo returned %d bytes", len(got))
	}
	if n := len(h.Fast.pool.idle); n != 0 {
		t.Fatalf("a 4 MiB body went through the fast path (%d idle hosts)", n)
	}
}
