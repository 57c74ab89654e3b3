package buffer

// budget is the memory accounting of a Store, kept apart from any I/O so
// that its rules can be tested step by step: it takes reservations,
// releases and cancellations, and answers with decisions. It never
// blocks, never reads a clock and is not safe for concurrent use; the
// Store calls it under Store.mu and does the waiting itself.
//
// Rules:
//   - used never exceeds limit.
//   - Waiters are served strictly first come, first served: while anyone
//     waits, a new reservation queues behind them even if it would fit.
//     A large Put therefore cannot be starved by a stream of small ones;
//     the price is that small ones wait behind it, at most for the Store's
//     bounded wait, after which the large one gives up (cancel) and the
//     queue moves on.
//   - A request larger than the whole limit can never be granted and is
//     refused at once, without queueing.
type budget struct {
	limit int64
	used  int64
	queue []*waiter // FIFO; none of them granted
}

// waiter is one queued reservation. The budget sets granted; ready belongs
// to the Store, which closes it once the budget has granted the waiter, to
// wake the goroutine that waits on it.
type waiter struct {
	n       int64
	granted bool
	ready   chan struct{}
}

// reserveResult is the budget's answer to a reservation.
type reserveResult int

const (
	granted reserveResult = iota // the bytes are reserved now
	queued                       // the returned waiter will be granted later, or cancelled
	tooBig                       // larger than the limit: will never fit
)

func newBudget(limit int64) *budget { return &budget{limit: limit} }

// reserve asks for n bytes. When the answer is queued, the returned waiter
// is in the queue; the caller either sees it granted by a later release or
// cancel, or gives up with cancel.
func (b *budget) reserve(n int64) (reserveResult, *waiter) {
	switch {
	case n > b.limit:
		return tooBig, nil
	case len(b.queue) == 0 && b.used+n <= b.limit:
		b.used += n
		return granted, nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	return queued, w
}

// tryReserve reserves n bytes only if that is possible at once, without
// queueing (and so without overtaking anyone who waits).
func (b *budget) tryReserve(n int64) bool {
	if len(b.queue) > 0 || b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// release returns n reserved bytes and grants as many queued waiters, from
// the front, as now fit. The caller wakes the waiters it returns.
func (b *budget) release(n int64) []*waiter {
	if n < 0 || n > b.used {
		panic("buffer: budget released more than was reserved")
	}
	b.used -= n
	return b.grant()
}

// cancel takes a waiter that was not granted out of the queue. Removing
// the front waiter can let the ones behind it fit, so cancel returns the
// waiters it granted, like release. Cancelling a granted waiter is the
// caller's bug: it owns those bytes and must release them instead.
func (b *budget) cancel(w *waiter) []*waiter {
	if w.granted {
		panic("buffer: budget cancel of a granted waiter")
	}
	for i, q := range b.queue {
		if q == w {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			break
		}
	}
	return b.grant()
}

// grant moves bytes to the waiters at the front of the queue while they
// fit, stopping at the first that does not (first come, first served).
func (b *budget) grant() []*waiter {
	var woken []*waiter
	for len(b.queue) > 0 && b.used+b.queue[0].n <= b.limit {
		w := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.used += w.n
		w.granted = true
		woken = append(woken, w)
	}
	if len(b.queue) == 0 {
		b.queue = nil // let the backing array go after a burst
	}
	return woken
}
