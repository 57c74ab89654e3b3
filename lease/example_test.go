package lease_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/lease"
)

// A node agent grants a lease, starts its executors, forwards their
// accounting, and stops them when the client stops renewing. Here the
// agent's clock is simulated.
func Example() {
	m, err := lease.New(lease.Config{
		Capacity: lease.Resources{MilliCores: 2000, Memory: 4 << 30, Executors: 4},
	})
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	m.SetPeers(now, []lease.PeerCapacity{{
		Node: "n2", Addr: "10.0.0.2:7100", AsOf: now,
		Capacity: lease.Capacity{
			Free:  lease.Resources{MilliCores: 8000, Memory: 16 << 30, Executors: 8},
			Total: lease.Resources{MilliCores: 8000, Memory: 16 << 30, Executors: 8},
		},
	}})

	req := lease.Request{Function: "resize", Executors: 2, MilliCores: 1000, Memory: 512 << 20, Duration: 30 * time.Second, Mode: lease.Hot}
	l, err := m.Grant(now, req)
	if err != nil {
		panic(err)
	}
	for _, e := range l.Executors {
		// start the executor process, then:
		_ = m.ExecutorUp(l.ID, e.Index)
	}
	fmt.Println("granted", l.ID, "until", l.Expires.Format(time.TimeOnly))

	// This node is now full: the next client is sent to n2.
	_, err = m.Grant(now, req)
	var r *lease.Redirect
	if errors.As(err, &r) {
		fmt.Println("redirect to", r.Node, "at", r.Addr)
	}

	// The executors report their work; the client never renews.
	_ = m.Busy(l.ID, 0, 3*time.Second)
	_ = m.Invocations(l.ID, 0, 1200)
	for range 31 {
		now = now.Add(time.Second)
		for _, rc := range m.Tick(now) {
			fmt.Println("stop", rc.ID, rc.Reason, rc.Executors)
			// stop the executors gracefully, then:
			final, _ := m.Reclaimed(now, rc.ID)
			fmt.Printf("%s %s: %v allocated, %v busy, %d calls\n", final.ID, final.State,
				final.Allocated, final.Busy, final.Invocations)
		}
	}
	fmt.Println("free:", m.Capacity().Free)
	// Output:
	// granted L1 until 00:00:30
	// redirect to n2 at 10.0.0.2:7100
	// stop L1 expired [0 1]
	// L1 gone: 1m0s allocated, 3s busy, 1200 calls
	// free: 2 cores, 4GiB, 4 executors
}
