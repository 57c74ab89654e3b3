package control

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/state"
	"github.com/handoff-dev/handoff/xfer"
)

func (s *Server) wakeAsync() {
	select {
	case s.asyncCh <- struct{}{}:
	default:
	}
}

// startAsync runs the async workers until ctx is done. Invocations live in the
// state database from the 202 on: a worker claims one (it becomes running),
// and completes or fails it; a platform that stops mid-way finds its running
// invocations queued again on the next start, so none is lost.
func (s *Server) startAsync(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	jobs := make(chan state.Invocation)
	var wg sync.WaitGroup
	for range s.cfg.AsyncWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for inv := range jobs {
				s.runAsync(inv)
			}
		}()
	}
	go func() {
		defer close(done)
		defer wg.Wait()
		defer close(jobs)
		poll := time.NewTicker(500 * time.Millisecond)
		defer poll.Stop()
		for {
			claimed, err := s.db.Claim(s.cfg.AsyncWorkers)
			if err != nil && ctx.Err() == nil {
				s.log.Error("claiming async invocations", "err", err)
			}
			for _, inv := range claimed {
				select {
				case jobs <- inv:
				case <-ctx.Done():
					// Not started: it stays "running" in the state and is
					// queued again at the next start.
					return
				}
			}
			if len(claimed) == s.cfg.AsyncWorkers {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-s.asyncCh:
			case <-poll.C:
			}
		}
	}()
	return done
}

// runAsync performs one attempt of an async invocation. Server errors and
// unreachable instances are retried with backoff; a 4xx is the function's
// answer and final.
func (s *Server) runAsync(inv state.Invocation) {
	f := s.function(inv.Function)
	if f == nil {
		_, _ = s.db.Fail(inv.ID, fmt.Sprintf("function %s is no longer deployed", inv.Function), 0)
		return
	}
	status, out, err := s.invokeInternal(f, inv.Input, inv.RequestID)
	switch {
	case err == nil && status/100 == 2:
		_ = s.db.Complete(inv.ID, status, out)
	case err == nil && status/100 == 4:
		_ = s.db.Complete(inv.ID, status, out)
	default:
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			msg = fmt.Sprintf("function %s answered %d: %s", inv.Function, status, bytes.TrimSpace(out))
		}
		backoff := time.Duration(1<<min(inv.Attempts, 6)) * time.Second
		if _, ferr := s.db.Fail(inv.ID, msg, backoff); ferr != nil {
			s.log.Error("recording async failure", "id", inv.ID, "err", ferr)
		}
	}
	s.wakeAsync()
}

// invokeInternal runs one invocation through the router and buffers its
// output (bounded by the inline limit).
func (s *Server) invokeInternal(f *function, input []byte, rid string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.Timeout.Std())
	defer cancel()
	start := time.Now()
	b, err := f.route.acquire(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer f.route.release(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.nodeURL+"/v1/invoke/"+b.id, bytes.NewReader(input))
	if err != nil {
		return 0, nil, err
	}
	httpx.SetToken(req.Header, s.cfg.Token)
	req.Header.Set(httpx.HeaderRequestID, rid)
	req.Header.Set(httpx.HeaderFunction, f.spec.Name)
	resp, err := s.toNodes.RoundTrip(req)
	if err != nil {
		return 0, nil, fmt.Errorf("function %s: node agent %s: %w", f.spec.Name, b.node, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, s.policy.InlineMax+1))
	if err != nil {
		return 0, nil, fmt.Errorf("function %s: reading the result: %w", f.spec.Name, err)
	}
	if int64(len(out)) > s.policy.InlineMax {
		return 0, nil, fmt.Errorf("function %s returned more than the inline limit %s for an async result", f.spec.Name, xfer.Human(s.policy.InlineMax))
	}
	s.metrics.invocations.WithLabelValues(f.spec.Name, strconv.Itoa(resp.StatusCode)).Inc()
	s.metrics.latency.WithLabelValues(f.spec.Name).Observe(time.Since(start).Seconds())
	return resp.StatusCode, out, nil
}
