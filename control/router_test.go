package control

import (
	"context"
	"errors"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"sync"
	"testing"
	"time"
)

func TestRouteQueuesUntilAnInstanceIsReady(t *testing.T) {
	poked := make(chan struct{}, 1)
	r := newRoute("f", 10, func() { poked <- struct{}{} }, time.Now())
	got := make(chan *backend)
	go func() {
		b, err := r.acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case <-poked:
	case <-time.After(5 * time.Second):
		t.Fatal("a request to a function with no instance did not ask the scaler for one")
	}
	r.add(&backend{id: "i1", limit: 1})
	b := <-got
	if b.id != "i1" || b.inflight != 1 {
		t.Fatalf("waiter got %+v; want i1 with one request in flight", b)
	}
	r.release(b)
	if s := r.stats(); s.InFlight != 0 || s.Queued != 0 {
		t.Fatalf("after release: %+v", s)
	}
}

func TestRouteRespectsConcurrencyAndHandsOverFIFO(t *testing.T) {
	r := newRoute("f", 10, nil, time.Now())
	r.add(&backend{id: "i1", limit: 2})
	ctx := context.Background()
	a, _ := r.acquire(ctx)
	b, _ := r.acquire(ctx)
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x, err := r.acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			r.release(x)
		}()
		waitFor(t, func() bool { return r.stats().Queued == i+1 })
	}
	if s := r.stats(); s.InFlight != 2 {
		t.Fatalf("in flight %d; the limit is 2", s.InFlight)
	}
	// One freed slot passes from waiter to waiter in arrival order.
	r.release(a)
	wg.Wait()
	r.release(b)
	close(order)
	want := 0
	for i := range order {
		if i != want {
			t.Fatalf("waiter %d served before waiter %d", i, want)
		}
		want++
	}
}

func TestRouteQueueFull(t *testing.T) {
	r := newRoute("f", 1, nil, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	go r.acquire(ctx)
	waitFor(t, func() bool { return r.stats().Queued == 1 })
	if _, err := r.acquire(context.Background()); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v; want ErrQueueFull", err)
	}
	cancel()
	waitFor(t, func() bool { return r.stats().Queued == 0 })
	if avg, cur := r.sample(time.Now()); cur != 0 || avg < 0 {
		t.Fatalf("load after cancel: avg %v current %d", avg, cur)
	}
}

func TestRouteStartFailureEndsWaiters(t *testing.T) {
	r := newRoute("f", 10, nil, time.Now())
	errc := make(chan error)
	go func() { _, err := r.acquire(context.Background()); errc <- err }()
	waitFor(t, func() bool { return r.stats().Queued == 1 })
	r.startFailed(errors.New("exec: no such file"))
	if err := <-errc; !errors.Is(err, ErrStartFailed) {
		t.Fatalf("err = %v; want ErrStartFailed", err)
	}
}

func TestRoutePowerOfTwoPrefersIdle(t *testing.T) {
	r := newRoute("f", 10, nil, time.Now())
	busy := &backend{id: "busy", limit: 100, inflight: 50}
	idle := &backend{id: "idle", limit: 100}
	r.add(busy)
	r.add(idle)
	for range 20 {
		b, _ := r.acquire(context.Background())
		if b != idle {
			t.Fatalf("picked %s with 2 candidates; want the idle one", b.id)
		}
		r.release(b)
	}
}

func TestRouteSampleIsTimeWeighted(t *testing.T) {
	t0 := time.Now()
	r := newRoute("f", 10, nil, t0)
	r.mu.Lock()
	r.markLocked(t0)
	r.load = 4
	r.markLocked(t0.Add(500 * time.Millisecond))
	r.load = 0
	r.mu.Unlock()
	avg, cur := r.sample(t0.Add(time.Second))
	if cur != 0 || avg < 1.99 || avg > 2.01 {
		t.Fatalf("avg %v current %d; want 2 (4 for half the second)", avg, cur)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	handofftest.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if !cond() {
			return errors.New("condition not met")
		}
		return nil
	})
}

func TestRouteWaitsForADrainingInstanceToGoIdle(t *testing.T) {
	r := newRoute("f", 10, nil, time.Now())
	r.add(&backend{id: "a", limit: 5})
	b, err := r.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.drain("a")
	if st := r.stats(); st.Draining != 1 {
		t.Fatalf("stats %+v, want one draining", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := r.waitIdle(ctx, "a"); err == nil {
		t.Fatal("waitIdle returned with an invocation in flight")
	}
	go func() { time.Sleep(10 * time.Millisecond); r.release(b) }()
	if err := r.waitIdle(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}
