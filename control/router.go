package control

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Router errors, each mapped to an HTTP status at the gateway.
var (
	// ErrQueueFull means every instance is at its concurrency limit and the
	// function's wait queue is full.
	ErrQueueFull = errors.New("control: function queue is full")
	// ErrNoFunction means the function is not deployed.
	ErrNoFunction = errors.New("control: function not deployed")
	// ErrStartFailed means no instance could be started for a waiting request.
	ErrStartFailed = errors.New("control: function failed to start")
)

// backend is one ready instance as the router sees it.
type backend struct {
	id, node, nodeURL string
	wireAddr          string // the node agent's framed port ("" if none)
	// direct is "ADDR SECRET" where the instance serves framed
	// invocations itself ("" if it was given none); restUntil (Unix ns) is
	// when to try it again after a failed dial.
	direct    string
	restUntil atomic.Int64
	limit     int
	inflight  int  // guarded by route.mu
	draining  bool // guarded by route.mu
}

// directOn reports whether to send b a small invocation directly now.
func (b *backend) directOn(now time.Time) bool {
	return b.direct != "" && now.UnixNano() >= b.restUntil.Load()
}

// directRest sends b's invocations through its node agent for a second,
// after its framed address refused a connection.
func (b *backend) directRest(now time.Time) { b.restUntil.Store(now.Add(time.Second).UnixNano()) }

// route load-balances one function's invocations over its instances. Requests
// that find every instance at its limit (or no instance at all, when the
// function is scaled to zero) wait in a bounded FIFO queue; a freed slot goes
// straight to the oldest waiter.
type route struct {
	name     string
	maxQueue int
	poke     func() // asks the scaler to act now (scale from zero)

	mu       sync.Mutex // guards all following fields
	backends []*backend
	waiters  []*waiter
	startErr error // last start failure while nothing is ready
	// concurrency accounting for the autoscaler: the integral of
	// (in-flight + queued) over time since the last sample.
	load     int
	area     float64
	lastMark time.Time
	lastSamp time.Time
}

type waiter struct {
	ch chan *backend // receives the backend with a slot already taken
	// err is set with ch closed when the wait is abandoned by the router
	err error
}

func newRoute(name string, maxQueue int, poke func(), now time.Time) *route {
	return &route{name: name, maxQueue: maxQueue, poke: poke, lastMark: now, lastSamp: now}
}

// markLocked folds the current load into the area before it changes.
func (r *route) markLocked(now time.Time) {
	if dt := now.Sub(r.lastMark).Seconds(); dt > 0 {
		r.area += float64(r.load) * dt
	}
	r.lastMark = now
}

// sample returns the average load since the previous sample and the load now.
func (r *route) sample(now time.Time) (avg float64, current int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markLocked(now)
	span := now.Sub(r.lastSamp).Seconds()
	avg = float64(r.load)
	if span > 0 {
		avg = r.area / span
	}
	r.area, r.lastSamp = 0, now
	return avg, r.load
}

// pickLocked chooses, by the power of two choices, an instance with a free
// slot, preferring the less loaded of two random candidates.
func (r *route) pickLocked() *backend {
	var free []*backend
	for _, b := range r.backends {
		if !b.draining && b.inflight < b.limit {
			free = append(free, b)
		}
	}
	switch len(free) {
	case 0:
		return nil
	case 1:
		return free[0]
	}
	i := rand.IntN(len(free))
	j := rand.IntN(len(free) - 1)
	if j >= i {
		j++
	}
	if free[j].inflight < free[i].inflight {
		return free[j]
	}
	return free[i]
}

// acquire returns a backend with a slot taken for the caller, waiting in the
// queue if needed. The caller must release it.
func (r *route) acquire(ctx context.Context) (*backend, error) {
	now := time.Now()
	r.mu.Lock()
	r.markLocked(now)
	r.load++
	if b := r.pickLocked(); b != nil {
		b.inflight++
		r.mu.Unlock()
		return b, nil
	}
	if len(r.waiters) >= r.maxQueue {
		r.markLocked(now)
		r.load--
		r.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{ch: make(chan *backend, 1)}
	r.waiters = append(r.waiters, w)
	empty := len(r.backends) == 0
	r.mu.Unlock()
	if empty && r.poke != nil {
		r.poke()
	}
	select {
	case b, ok := <-w.ch:
		if !ok {
			return nil, w.err
		}
		return b, nil
	case <-ctx.Done():
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, x := range r.waiters {
			if x == w {
				r.waiters = append(r.waiters[:i], r.waiters[i+1:]...)
				r.markLocked(time.Now())
				r.load--
				return nil, ctx.Err()
			}
		}
		// The router ended this wait just as we gave up: either a backend
		// was handed over (give it back) or the wait failed (the router has
		// already taken it off the load).
		b, ok := <-w.ch
		if !ok {
			return nil, w.err
		}
		r.markLocked(time.Now())
		r.load--
		r.releaseLocked(b)
		return nil, ctx.Err()
	}
}

// release frees the caller's slot on b, handing it to the oldest waiter.
func (r *route) release(b *backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markLocked(time.Now())
	r.load--
	r.releaseLocked(b)
}

func (r *route) releaseLocked(b *backend) {
	b.inflight--
	r.dispatchLocked()
}

// dispatchLocked hands free slots to waiters, oldest first.
func (r *route) dispatchLocked() {
	for len(r.waiters) > 0 {
		b := r.pickLocked()
		if b == nil {
			return
		}
		b.inflight++
		w := r.waiters[0]
		r.waiters = r.waiters[1:]
		w.ch <- b
	}
}

// add makes a ready instance available and serves waiters from it.
func (r *route) add(b *backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends = append(r.backends, b)
	r.startErr = nil
	r.dispatchLocked()
}

// remove takes an instance out of rotation (crashed, or its node is gone).
func (r *route) remove(id string) *backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range r.backends {
		if b.id == id {
			r.backends = append(r.backends[:i], r.backends[i+1:]...)
			return b
		}
	}
	return nil
}

// waitIdle waits until instance id has no invocation in flight through
// this router (it is draining, so none start), it has left rotation, or ctx
// ends.
func (r *route) waitIdle(ctx context.Context, id string) error {
	for {
		r.mu.Lock()
		busy := 0
		for _, b := range r.backends {
			if b.id == id {
				busy = b.inflight
			}
		}
		r.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %s still has %d invocations in flight: %w", id, busy, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// drain marks instance id as draining: no new invocation goes to it.
func (r *route) drain(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.backends {
		if b.id == id {
			b.draining = true
		}
	}
}

// drainOne marks the idlest non-draining instance as draining and returns it.
func (r *route) drainOne() *backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pick *backend
	for _, b := range r.backends {
		if !b.draining && (pick == nil || b.inflight < pick.inflight) {
			pick = b
		}
	}
	if pick != nil {
		pick.draining = true
	}
	return pick
}

// startFailed records a failed start; if nothing is ready, every waiter gets
// the error instead of waiting for its timeout.
func (r *route) startFailed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startErr = err
	if len(r.backends) > 0 {
		return
	}
	now := time.Now()
	for _, w := range r.waiters {
		w.err = errors.Join(ErrStartFailed, err)
		close(w.ch)
		r.markLocked(now)
		r.load--
	}
	r.waiters = nil
}

// failAll ends every waiter with err (function removed, platform stopping).
func (r *route) failAll(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, w := range r.waiters {
		w.err = err
		close(w.ch)
		r.markLocked(now)
		r.load--
	}
	r.waiters = nil
}

// routeStats is a snapshot for status and metrics.
type routeStats struct {
	Ready, Draining, InFlight, Queued int
}

func (r *route) stats() routeStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := routeStats{Queued: len(r.waiters)}
	for _, b := range r.backends {
		if b.draining {
			s.Draining++
		} else {
			s.Ready++
		}
		s.InFlight += b.inflight
	}
	return s
}
