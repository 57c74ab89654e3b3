package autoscale

import (
	"math/rand/v2"
	"testing"
	"time"
)

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDesiredForRounding(t *testing.T) {
	tests := []struct {
		avg, target float64
		want        int
	}{
		{0, 10, 0},
		{1e-12, 10, 1}, // any load at all needs an instance
		{0.3, 0.1, 3},  // 2.9999999999999996 in floating point
		{0.7, 0.1, 7},  // 6.999999999999999
		{30, 10, 3},
		{30.5, 10, 4},
		{1e300, 1e-300, maxDesired},
	}
	for _, tt := range tests {
		if got := desiredFor(tt.avg, tt.target); got != tt.want {
			t.Errorf("desiredFor(%v, %v) = %d, want %d", tt.avg, tt.target, got, tt.want)
		}
	}
}

func TestSlotOfBeforeEpoch(t *testing.T) {
	// Times just before and after a second boundary fall in adjacent slots,
	// also before 1970 where integer division would round towards zero.
	for _, base := range []time.Time{start, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)} {
		a, b := slotOf(base.Add(-time.Nanosecond)), slotOf(base)
		if b-a != 1 {
			t.Errorf("slotOf around %v: %d then %d, want adjacent", base, a, b)
		}
	}
}

// TestInvariants drives autoscalers with random configs, samples, call
// times (including out-of-order and long gaps) and ready counts, and checks
// what must hold whatever happens: the history never grows, and every
// decision is within [Min, Max] and the rate limits.
func TestInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		cfg := Config{
			Target:           0.5 + rng.Float64()*20,
			Max:              1 + rng.IntN(50),
			StableWindow:     time.Duration(1+rng.IntN(90)) * time.Second,
			ScaleToZeroGrace: time.Duration(rng.IntN(60)) * time.Second,
			MaxScaleDownRate: 1.1 + rng.Float64()*3,
			MaxScaleUpRate:   1.1 + rng.Float64()*10,
		}
		cfg.Min = rng.IntN(cfg.Max + 1)
		cfg.PanicWindow = time.Duration(1+rng.Int64N(int64(cfg.StableWindow/time.Second))) * time.Second
		a, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		size := len(a.samples.buckets)
		now, ready := start, rng.IntN(cfg.Max+1)
		for step := 0; step < 500; step++ {
			switch rng.IntN(10) {
			case 0:
				now = now.Add(time.Duration(rng.IntN(300)) * time.Second) // a gap
			case 1:
				a.Record(now.Add(-time.Duration(rng.IntN(120))*time.Second), rng.Float64()*100) // late sample
			default:
				now = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
			}
			a.Record(now, float64(rng.IntN(4))*rng.Float64()*50)
			d := a.Scale(now, ready)
			if d.Desired < cfg.Min || d.Desired > cfg.Max {
				t.Fatalf("config %+v: desired %d outside [%d, %d] (%s)", cfg, d.Desired, cfg.Min, cfg.Max, d.Reason)
			}
			if ready > 0 && d.Desired > cfg.Min && d.Desired < cfg.Max {
				lo := int(float64(ready) / cfg.MaxScaleDownRate)
				if d.Desired < lo {
					t.Fatalf("config %+v: desired %d below rate limit %d from %d ready (%s)", cfg, d.Desired, lo, ready, d.Reason)
				}
			}
			if d.Reason == "" {
				t.Fatalf("empty reason")
			}
			if rng.IntN(4) > 0 {
				ready = d.Desired // instances usually follow the decision
			} else {
				ready = rng.IntN(cfg.Max + 1)
			}
		}
		if len(a.samples.buckets) != size || size > int(MaxStableWindow/BucketWidth) {
			t.Fatalf("history grew from %d to %d buckets", size, len(a.samples.buckets))
		}
	}
}

// TestPanicNeverScalesDown checks the panic rule directly: once panic has
// started, desired never drops until panic ends.
func TestPanicNeverScalesDown(t *testing.T) {
	a, err := New(Config{Target: 10, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	now, ready := start, 1
	load := []float64{10, 10, 80, 5, 0, 0, 40, 3, 3, 3}
	high := 0
	for i := 0; i < 200; i++ {
		now = now.Add(time.Second)
		a.Record(now, load[i%len(load)]*float64(1+i/50))
		d := a.Scale(now, ready)
		if d.Panic {
			if d.Desired < high {
				t.Fatalf("t=%d: desired %d fell below %d during panic (%s)", i, d.Desired, high, d.Reason)
			}
			high = d.Desired
		} else {
			high = 0
		}
		ready = d.Desired
	}
}
