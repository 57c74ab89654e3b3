// Package load drives HTTP endpoints for `handoff bench invoke`: a
// sequential latency probe over one warm connection and a closed-loop
// throughput run with a fixed number of concurrent clients.
//
// Both are bounded in count and in time: Latency does exactly n requests
// (plus one warm-up) and stops when ctx ends; Throughput runs for a fixed
// duration and never more than MaxRequests requests.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// MaxRequests caps the requests of one Throughput run, which bounds the
// memory its latencies take (8 MiB).
const MaxRequests = 1 << 20

// ErrStatus reports a response whose status is not 2xx.
var ErrStatus = errors.New("load: non-2xx response")

// NewClient returns a client for concurrency parallel requests to one host:
// keep-alive on, up to concurrency idle connections kept per host, no
// proxy (targets are on loopback), no compression.
func NewClient(concurrency int) *http.Client {
	concurrency = max(concurrency, 1)
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		DisableCompression:    true,
	}}
}

// do sends one request and reads its body to the end, so that the
// connection is reused. It returns an error wrapping ErrStatus, with the
// start of the body, when the status is not 2xx.
func do(ctx context.Context, client *http.Client, req func() *http.Request) error {
	r := req()
	if r == nil {
		return errors.New("load: request function returned nil")
	}
	resp, err := client.Do(r.WithContext(ctx))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%w: %s %s: %s: %q", ErrStatus, r.Method, r.URL, resp.Status, head)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read response body: %w", err)
	}
	return nil
}

// Latency sends one unmeasured warm-up request, then n requests one after
// another, and returns their latencies (request sent to body fully read).
// req must return a fresh request, with a fresh body, on every call. A nil
// client means NewClient(1). The first failure or non-2xx status ends the
// run with an error; the latencies measured so far are returned with it.
func Latency(ctx context.Context, client *http.Client, req func() *http.Request, n int) ([]time.Duration, error) {
	if n <= 0 {
		return nil, fmt.Errorf("load: latency needs a positive request count, got %d", n)
	}
	if client == nil {
		client = NewClient(1)
	}
	if err := do(ctx, client, req); err != nil {
		return nil, fmt.Errorf("load: warm-up request: %w", err)
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return lat, err
		}
		start := time.Now()
		if err := do(ctx, client, req); err != nil {
			return lat, fmt.Errorf("load: request %d of %d: %w", i+1, n, err)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

// Throughput runs concurrency workers that each send requests back to back
// for d (after one unmeasured warm-up request each, so that every
// connection is open), and returns the completed requests per second, the
// latency of each, and how many failed or were not 2xx. Requests cut off by
// the end of d count as neither. A nil client means NewClient(concurrency).
//
// err is non-nil when ctx ended, when a warm-up request failed, or when no
// request succeeded; then it describes the first failure.
func Throughput(ctx context.Context, client *http.Client, req func() *http.Request, concurrency int, d time.Duration) (reqPerSec float64, lat []time.Duration, errs int, err error) {
	if concurrency <= 0 || d <= 0 {
		return 0, nil, 0, fmt.Errorf("load: throughput needs a positive concurrency and duration, got %d and %v", concurrency, d)
	}
	if client == nil {
		client = NewClient(concurrency)
	}

	// Warm up every worker's connection at once, so that each opens its own.
	var wg sync.WaitGroup
	warmErrs := make([]error, concurrency)
	for i := range concurrency {
		wg.Go(func() { warmErrs[i] = do(ctx, client, req) })
	}
	wg.Wait()
	if err := errors.Join(warmErrs...); err != nil {
		return 0, nil, 0, fmt.Errorf("load: warm-up request: %w", err)
	}

	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		sent     atomic.Int64
		failed   atomic.Int64
		firstMu  sync.Mutex // guards firstErr
		firstErr error
	)
	lats := make([][]time.Duration, concurrency)
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for runCtx.Err() == nil && sent.Add(1) <= MaxRequests {
				t0 := time.Now()
				err := do(runCtx, client, req)
				if err != nil {
					if runCtx.Err() != nil {
						break // cut off by the end of the run
					}
					failed.Add(1)
					firstMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					firstMu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			lats[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, l := range lats {
		lat = append(lat, l...)
	}
	errs = int(failed.Load())
	if elapsed > 0 {
		reqPerSec = float64(len(lat)) / elapsed.Seconds()
	}
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case len(lat) == 0 && firstErr != nil:
		err = fmt.Errorf("load: no request succeeded: %w", firstErr)
	case len(lat) == 0:
		err = errors.New("load: no request completed within the duration")
	}
	return reqPerSec, lat, errs, err
}
