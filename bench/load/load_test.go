package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo serves POST bodies back; a request with header Fail answers 503.
// It counts the connections it accepted.
func echo(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Fail") != "" {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		io.Copy(w, r.Body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func post(url string, fail func() bool) func() *http.Request {
	return func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte("ping")))
		if fail != nil && fail() {
			r.Header.Set("Fail", "1")
		}
		return r
	}
}

func TestLatencyReusesOneConnection(t *testing.T) {
	srv, conns := echo(t)
	lat, err := Latency(context.Background(), nil, post(srv.URL, nil), 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 50 {
		t.Fatalf("got %d latencies, want 50", len(lat))
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 kept alive", n)
	}
}

func TestLatencyFailsOnStatus(t *testing.T) {
	srv, _ := echo(t)
	var calls atomic.Int64
	lat, err := Latency(context.Background(), nil, post(srv.URL, func() bool { return calls.Add(1) == 4 }), 10)
	if !errors.Is(err, ErrStatus) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("err = %v, want ErrStatus naming 503 and the body", err)
	}
	if len(lat) != 2 { // warm-up, 2 good, the 4th call fails
		t.Errorf("got %d latencies before the failure, want 2", len(lat))
	}
}

func TestThroughput(t *testing.T) {
	srv, conns := echo(t)
	const c = 4
	var mu sync.Mutex
	calls := 0
	// Every 10th request after the warm-ups fails.
	fail := func() bool {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return calls > c && calls%10 == 0
	}
	start := time.Now()
	rps, lat, errs, err := Throughput(context.Background(), nil, post(srv.URL, fail), c, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("a 300ms run took %v", el)
	}
	if rps <= 0 || len(lat) == 0 || errs == 0 {
		t.Errorf("rps %v, %d latencies, %d errors; want all positive", rps, len(lat), errs)
	}
	if n := conns.Load(); n > c+1 {
		t.Errorf("%d connections for concurrency %d: not kept alive", n, c)
	}
	t.Logf("%.0f req/s, %d ok, %d failed, %d connections", rps, len(lat), errs, conns.Load())
}

func TestThroughputAllFail(t *testing.T) {
	srv, _ := echo(t)
	n := 0
	var mu sync.Mutex
	_, _, errs, err := Throughput(context.Background(), nil, post(srv.URL, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n++
		return n > 2
	}), 2, 100*time.Millisecond)
	if !errors.Is(err, ErrStatus) || errs == 0 {
		t.Fatalf("err = %v, errs = %d; want ErrStatus and failures counted", err, errs)
	}
}

func TestThroughputCanceled(t *testing.T) {
	srv, _ := echo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err := Throughput(ctx, nil, post(srv.URL, nil), 2, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("canceled run took %v", el)
	}
}

func TestBadArguments(t *testing.T) {
	if _, err := Latency(context.Background(), nil, nil, 0); err == nil {
		t.Error("Latency with n=0 did not fail")
	}
	if _, _, _, err := Throughput(context.Background(), nil, nil, 0, time.Second); err == nil {
		t.Error("Throughput with concurrency 0 did not fail")
	}
}
