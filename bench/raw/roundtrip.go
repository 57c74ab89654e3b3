package raw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

// warmups is the number of unmeasured round trips before measuring.
const warmups = 50

// RoundTrip measures n ping-pong round trips of size bytes over a fresh
// connection on network "tcp" (loopback) or "unix" to an echo goroutine in
// this process. The Point's series is "tcp-rtt" or "unix-rtt".
func RoundTrip(ctx context.Context, network string, size, n int) (bench.Point, error) {
	if size <= 0 || n <= 0 {
		return bench.Point{}, fmt.Errorf("raw: round trip needs a positive size and count, got %d and %d", size, n)
	}
	var ln net.Listener
	var err error
	switch network {
	case "tcp":
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	case "unix":
		var dir string
		dir, err = os.MkdirTemp("", "handoff-bench-")
		if err != nil {
			break
		}
		defer os.RemoveAll(dir)
		ln, err = net.Listen("unix", filepath.Join(dir, "s"))
	default:
		return bench.Point{}, fmt.Errorf("raw: round trip over %q: want tcp or unix", network)
	}
	if err != nil {
		return bench.Point{}, fmt.Errorf("raw: %s round trip: %w", network, err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		return bench.Point{}, fmt.Errorf("raw: %s round trip: %w", network, err)
	}
	defer func() { conn.Close(); <-served }()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	msg := bytes.Repeat([]byte{'x'}, size)
	in := make([]byte, size)
	lat := make([]time.Duration, 0, n)
	for i := range warmups + n {
		start := time.Now()
		if _, err := conn.Write(msg); err != nil {
			return bench.Point{}, fmt.Errorf("raw: %s round trip: %w", network, ctxErr(ctx, err))
		}
		if _, err := io.ReadFull(conn, in); err != nil {
			return bench.Point{}, fmt.Errorf("raw: %s round trip: %w", network, ctxErr(ctx, err))
		}
		if i >= warmups {
			lat = append(lat, time.Since(start))
		}
	}
	if !bytes.Equal(in, msg) {
		return bench.Point{}, fmt.Errorf("raw: %s round trip: %w", network, bench.ErrMismatch)
	}
	return bench.Summarize(network+"-rtt", int64(size), lat), nil
}

// HTTPEcho measures n sequential POSTs of size bytes to a net/http server on
// 127.0.0.1 that echoes the body, over one kept-alive connection. The
// Point's series is "http-rtt".
func HTTPEcho(ctx context.Context, size, n int) (bench.Point, error) {
	if size <= 0 || n <= 0 {
		return bench.Point{}, fmt.Errorf("raw: http echo needs a positive size and count, got %d and %d", size, n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return bench.Point{}, fmt.Errorf("raw: http echo: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(b)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/"
	msg := bytes.Repeat([]byte{'x'}, size)
	lat := make([]time.Duration, 0, n)
	var body []byte
	for i := range warmups + n {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(msg))
		if err != nil {
			return bench.Point{}, fmt.Errorf("raw: http echo: %w", err)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return bench.Point{}, fmt.Errorf("raw: http echo: %w", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return bench.Point{}, fmt.Errorf("raw: http echo: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return bench.Point{}, fmt.Errorf("raw: http echo: status %s", resp.Status)
		}
		if i >= warmups {
			lat = append(lat, d)
		}
	}
	if !bytes.Equal(body, msg) {
		return bench.Point{}, fmt.Errorf("raw: http echo: %w", bench.ErrMismatch)
	}
	return bench.Summarize("http-rtt", int64(size), lat), nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Transfers returns the raw transfers memcpy, tcp and unix. The caller must
// Close them.
func Transfers() ([]bench.Transfer, error) {
	tcp, err := NewTCPStream()
	if err != nil {
		return nil, err
	}
	unix, err := NewUnixStream()
	if err != nil {
		tcp.Close()
		return nil, err
	}
	return []bench.Transfer{NewMemcpy(), tcp, unix}, nil
}

// Measure measures this machine's limits: the raw transfers at opts.Sizes
// through bench.RunTransfers, then the 64-byte round trips over TCP, a Unix
// socket and net/http, rtts times each. The round-trip points are appended to
// the result with their own series.
func Measure(ctx context.Context, opts bench.Options, rtts int) (bench.Result, error) {
	if opts.Name == "" {
		opts.Name = "raw"
	}
	if rtts <= 0 {
		rtts = 2000
	}
	ts, err := Transfers()
	if err != nil {
		return bench.NewResult(opts.Name), err
	}
	res, err := bench.RunTransfers(ctx, opts, ts)
	for _, t := range ts {
		err = errors.Join(err, t.Close())
	}
	if err != nil {
		return res, err
	}
	for _, m := range []func() (bench.Point, error){
		func() (bench.Point, error) { return RoundTrip(ctx, "tcp", 64, rtts) },
		func() (bench.Point, error) { return RoundTrip(ctx, "unix", 64, rtts) },
		func() (bench.Point, error) { return HTTPEcho(ctx, 64, rtts) },
	} {
		p, err := m()
		if err != nil {
			return res, err
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%-8s %-14s n=%-5d p50=%-10s p99=%-10s\n",
				bench.FormatSize(p.Size), p.Series, p.N, bench.FormatDuration(p.P50), bench.FormatDuration(p.P99))
		}
		res.Points = append(res.Points, p)
	}
	return res, nil
}
