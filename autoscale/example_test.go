package autoscale_test

import (
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/autoscale"
)

// A control loop records the function's concurrency every second and
// applies each decision. Here time and load are simulated.
func Example() {
	a, err := autoscale.New(autoscale.Config{Target: 10, Min: 0, Max: 5})
	if err != nil {
		panic(err)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ready := 0
	for sec := 0; sec <= 90; sec++ {
		now := start.Add(time.Duration(sec) * time.Second)
		load := 0.0
		if sec < 30 {
			load = 25 // 25 requests in flight for 30s, then nothing
		}
		a.Record(now, load)
		d := a.Scale(now, ready)
		if d.Desired != ready {
			fmt.Printf("t=%2ds %d → %d: %s\n", sec, ready, d.Desired, d.Reason)
			ready = d.Desired // pretend instances start and stop at once
		}
	}
	// Output:
	// t= 0s 0 → 3: scale from zero: avg 25 (stable 25)/target 10 → 3
	// t=37s 3 → 2: stable avg 19.74/target 10 → 2
	// t=60s 2 → 1: scale to zero after 30s idle; scale-down limited to 1
	// t=61s 1 → 0: scale to zero after 31s idle
}
