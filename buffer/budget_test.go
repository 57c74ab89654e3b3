package buffer

import (
	"math/rand/v2"
	"testing"
)

func mustGrant(t *testing.T, b *budget, n int64) {
	t.Helper()
	if res, _ := b.reserve(n); res != granted {
		t.Fatalf("reserve(%d) = %v with %d of %d used; want granted", n, res, b.used, b.limit)
	}
}

func mustQueue(t *testing.T, b *budget, n int64) *waiter {
	t.Helper()
	res, w := b.reserve(n)
	if res != queued || w == nil {
		t.Fatalf("reserve(%d) = %v with %d of %d used; want queued", n, res, b.used, b.limit)
	}
	return w
}

func sizes(ws []*waiter) []int64 {
	var ns []int64
	for _, w := range ws {
		if !w.granted {
			panic("returned waiter not granted")
		}
		ns = append(ns, w.n)
	}
	return ns
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBudgetGrantAndRelease(t *testing.T) {
	b := newBudget(100)
	mustGrant(t, b, 60)
	mustGrant(t, b, 40)
	mustGrant(t, b, 0) // empty payloads always fit
	if b.used != 100 {
		t.Fatalf("used = %d; want 100", b.used)
	}
	if got := b.release(60); len(got) != 0 {
		t.Fatalf("release woke %v with nobody waiting", sizes(got))
	}
	if b.used != 40 {
		t.Fatalf("used = %d; want 40", b.used)
	}
}

func TestBudgetTooBig(t *testing.T) {
	b := newBudget(100)
	if res, w := b.reserve(101); res != tooBig || w != nil {
		t.Fatalf("reserve(101) of 100 = %v, %v; want tooBig and no waiter", res, w)
	}
	if b.used != 0 || len(b.queue) != 0 {
		t.Fatalf("a refused request changed the budget: used %d, queue %d", b.used, len(b.queue))
	}
	mustGrant(t, b, 100) // exactly the limit fits
}

// Waiters are served in order; a small request does not overtake a large
// one that waits, and release stops at the first waiter that does not fit.
func TestBudgetFirstComeFirstServed(t *testing.T) {
	b := newBudget(100)
	mustGrant(t, b, 90)
	big := mustQueue(t, b, 50)
	small := mustQueue(t, b, 5) // would fit now, but big is ahead
	if b.tryReserve(5) {
		t.Fatal("tryReserve overtook the queue")
	}
	// 40 back: 50 of 100 used, big (50) fits, then small (5) does not.
	if got := sizes(b.release(40)); !equal(got, []int64{50}) {
		t.Fatalf("release(40) woke %v; want [50]", got)
	}
	if !big.granted || small.granted || b.used != 100 {
		t.Fatalf("big granted %v, small granted %v, used %d; want true, false, 100", big.granted, small.granted, b.used)
	}
	if got := sizes(b.release(50)); !equal(got, []int64{5}) {
		t.Fatalf("release(50) woke %v; want [5]", got)
	}
	if b.used != 55 || len(b.queue) != 0 {
		t.Fatalf("used %d, queue %d; want 55, 0", b.used, len(b.queue))
	}
}

// Cancelling the waiter at the front lets the ones behind it through.
func TestBudgetCancelFront(t *testing.T) {
	b := newBudget(100)
	mustGrant(t, b, 70)
	big := mustQueue(t, b, 80)
	a := mustQueue(t, b, 10)
	c := mustQueue(t, b, 20)
	d := mustQueue(t, b, 5)
	if got := sizes(b.cancel(big)); !equal(got, []int64{10, 20}) {
		t.Fatalf("cancel(front) woke %v; want [10 20]", got)
	}
	if !a.granted || !c.granted || d.granted || b.used != 100 {
		t.Fatalf("granted %v %v %v, used %d; want true true false, 100", a.granted, c.granted, d.granted, b.used)
	}
	if got := sizes(b.cancel(d)); len(got) != 0 || len(b.queue) != 0 {
		t.Fatalf("cancel(last) woke %v, queue %d; want nothing, empty", got, len(b.queue))
	}
	if b.used != 100 {
		t.Fatalf("used = %d after cancels; want 100", b.used)
	}
}

// Cancelling a waiter in the middle changes nothing for the others.
func TestBudgetCancelMiddle(t *testing.T) {
	b := newBudget(10)
	mustGrant(t, b, 10)
	first := mustQueue(t, b, 6)
	mid := mustQueue(t, b, 1)
	last := mustQueue(t, b, 4)
	if got := b.cancel(mid); len(got) != 0 {
		t.Fatalf("cancel(middle) woke %v", sizes(got))
	}
	if got := sizes(b.release(10)); !equal(got, []int64{6, 4}) {
		t.Fatalf("release woke %v; want [6 4]", got)
	}
	if !first.granted || mid.granted || !last.granted {
		t.Fatal("wrong waiters granted")
	}
}

func TestBudgetMisuse(t *testing.T) {
	expectPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		fn()
	}
	b := newBudget(10)
	mustGrant(t, b, 5)
	expectPanic("release of more than used", func() { b.release(6) })
	expectPanic("release of a negative amount", func() { b.release(-1) })
	mustGrant(t, b, 5)
	w := mustQueue(t, b, 3)
	b.release(3)
	expectPanic("cancel of a granted waiter", func() { b.cancel(w) })
}

// TestBudgetRandom drives the budget with random operations and checks
// after each that used equals what the holders hold, never exceeds the
// limit, and that nobody waits while the front waiter would fit.
func TestBudgetRandom(t *testing.T) {
	woken := 0
	for seed := uint64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		const limit = 1000
		b := newBudget(limit)
		var held []int64      // granted reservations not yet released
		var waiting []*waiter // queued, in the order they queued
		take := func(ws []*waiter) {
			woken += len(ws)
			for _, w := range ws {
				held = append(held, w.n)
				for i, q := range waiting {
					if q == w {
						waiting = append(waiting[:i], waiting[i+1:]...)
						break
					}
				}
			}
		}
		for step := 0; step < 2000; step++ {
			switch op := rng.IntN(10); {
			case op < 4:
				n := rng.Int64N(limit * 11 / 10)
				switch res, w := b.reserve(n); res {
				case granted:
					held = append(held, n)
				case queued:
					waiting = append(waiting, w)
				case tooBig:
					if n <= limit {
						t.Fatalf("seed %d step %d: %d refused as too big", seed, step, n)
					}
				}
			case op < 5:
				n := rng.Int64N(limit / 4)
				if b.tryReserve(n) {
					held = append(held, n)
				}
			case op < 9 && len(held) > 0:
				i := rng.IntN(len(held))
				n := held[i]
				held = append(held[:i], held[i+1:]...)
				take(b.release(n))
			case len(waiting) > 0:
				i := rng.IntN(len(waiting))
				w := waiting[i]
				waiting = append(waiting[:i], waiting[i+1:]...)
				take(b.cancel(w))
			}
			var sum int64
			for _, n := range held {
				sum += n
			}
			if b.used != sum || b.used > limit || b.used < 0 {
				t.Fatalf("seed %d step %d: used %d, held %d, limit %d", seed, step, b.used, sum, limit)
			}
			if len(b.queue) != len(waiting) {
				t.Fatalf("seed %d step %d: queue %d, waiting %d", seed, step, len(b.queue), len(waiting))
			}
			for i, w := range b.queue {
				if w != waiting[i] || w.granted {
					t.Fatalf("seed %d step %d: queue out of order or holding a granted waiter", seed, step)
				}
			}
			if len(b.queue) > 0 && b.used+b.queue[0].n <= limit {
				t.Fatalf("seed %d step %d: front waiter (%d) fits in %d free but waits", seed, step, b.queue[0].n, limit-b.used)
			}
		}
	}
	if woken == 0 {
		t.Fatal("no waiter was ever granted: the operations do not exercise the queue")
	}
	t.Logf("%d waiters granted by release or cancel", woken)
}
