package autoscale

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Autoscaler turns concurrency samples for one function into desired scale
// decisions. It does no I/O, starts no goroutines and never reads the clock:
// every method takes the current time as an argument.
//
// An Autoscaler is not safe for concurrent use. The caller (normally the
// single control loop that owns the function) must serialize calls to
// Record and Scale, for example with its own mutex.
type Autoscaler struct {
	cfg           Config // with defaults applied and validated
	stableBuckets int    // window lengths in buckets
	panicBuckets  int
	samples       *history

	// Idle tracking for scale to zero, fed by in-order samples only.
	lastSample time.Time // time of the newest sample; zero before the first
	zeroSince  time.Time // first zero sample of the current idle run; zero while busy

	// Panic mode.
	panicking   bool
	lastPanicAt time.Time // last decision at which the panic condition held
	panicPeak   int       // highest desired scale asked for during this panic
}

// Decision is the outcome of one Scale call.
type Decision struct {
	// Desired is the number of instances the function should have, after
	// rate limits and the [Min, Max] bounds.
	Desired int
	// Panic reports whether the autoscaler is in panic mode.
	Panic bool
	// StableConcurrency and PanicConcurrency are the average concurrency
	// over the observed part of the stable and the panic windows.
	StableConcurrency, PanicConcurrency float64
	// Reason says in a few words why Desired is what it is, for logs and
	// status pages (for example "stable avg 3.2/target 1 → 4").
	Reason string
}

// New returns an Autoscaler for cfg, after applying defaults to its zero
// fields. The error wraps ErrInvalidConfig when cfg is unusable.
func New(cfg Config) (*Autoscaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Autoscaler{
		cfg:           cfg,
		stableBuckets: bucketsFor(cfg.StableWindow),
		panicBuckets:  bucketsFor(cfg.PanicWindow),
		samples:       newHistory(cfg.StableWindow),
	}, nil
}

// Config returns the configuration in use, with defaults applied.
func (a *Autoscaler) Config() Config { return a.cfg }

// Record adds a concurrency sample taken at now: the number of requests in
// flight plus those queued for the function, summed over all its instances.
// The caller records about once per second, and also on every arrival while
// the function has no instances, so that scale from zero reacts at once.
//
// Samples should come in time order. A sample older than the newest one
// still counts towards the averages (if it is inside the stable window) but
// does not move the idle tracking. Negative, NaN and infinite samples are
// not concurrencies and are ignored.
func (a *Autoscaler) Record(now time.Time, concurrency float64) {
	if !(concurrency >= 0) || math.IsInf(concurrency, 1) {
		return
	}
	a.samples.add(now, concurrency)
	if now.Before(a.lastSample) {
		return
	}
	a.lastSample = now
	switch {
	case concurrency > 0:
		a.zeroSince = time.Time{}
	case a.zeroSince.IsZero():
		a.zeroSince = now
	}
}

// Scale decides the desired number of instances at now, given ready, the
// number of instances currently ready or starting. It also advances panic
// mode, so it should be called at a steady pace (about every 1–2 seconds);
// the decision depends only on the samples, ready and the time.
func (a *Autoscaler) Scale(now time.Time, ready int) Decision {
	ready = max(ready, 0)
	cfg := a.cfg
	stableAvg, stableN := a.samples.average(now, a.stableBuckets)
	panicAvg, panicN := a.samples.average(now, a.panicBuckets)
	stableDesired := desiredFor(stableAvg, cfg.Target)
	panicDesired := desiredFor(panicAvg, cfg.Target)

	// Panic mode: the short window says we need a multiple of what we have.
	// It needs ready > 0, since with nothing ready any demand at all would
	// qualify; growth from zero has its own rule below.
	if ready > 0 && panicN > 0 && float64(panicDesired) >= cfg.PanicThreshold*float64(ready) {
		if !a.panicking {
			// Never scale below what we had when the burst hit.
			a.panicking, a.panicPeak = true, ready
		}
		a.lastPanicAt = now
	} else if a.panicking && now.Sub(a.lastPanicAt) >= cfg.StableWindow {
		// A whole stable window without the condition: the stable average
		// now covers only post-burst load and can be trusted again.
		a.panicking, a.panicPeak = false, 0
	}

	idle, isIdle := a.idleFor(now)
	scaleToZero := cfg.Min == 0 && isIdle && idle >= cfg.ScaleToZeroGrace
	var desired int
	var reason string
	switch {
	case a.panicking:
		// Panic mode never scales down, scale to zero included: bursts tend
		// to come back, and the stable window still remembers this one.
		desired = max(panicDesired, a.panicPeak)
		a.panicPeak = desired
		reason = fmt.Sprintf("panic: avg %s over %v/target %s → %d, holding peak %d",
			num(panicAvg), cfg.PanicWindow, num(cfg.Target), panicDesired, desired)
	case scaleToZero:
		desired = 0
		reason = fmt.Sprintf("scale to zero after %v idle", idle.Truncate(time.Second))
	case ready == 0 && panicAvg > 0:
		// Requests are waiting and nothing can serve them: do not wait for
		// any window to fill. The panic window is the freshest signal, the
		// stable one remembers load from before the instances went away.
		desired = max(1, stableDesired, panicDesired)
		reason = fmt.Sprintf("scale from zero: avg %s (stable %s)/target %s → %d",
			num(panicAvg), num(stableAvg), num(cfg.Target), desired)
	case stableN == 0:
		// Nothing observed for a whole stable window (a stalled caller, or
		// a function never recorded): no basis to change anything.
		desired = ready
		reason = fmt.Sprintf("no samples in %v, holding %d", cfg.StableWindow, ready)
	default:
		desired = stableDesired
		reason = fmt.Sprintf("stable avg %s/target %s → %d", num(stableAvg), num(cfg.Target), desired)
	}

	// Before the grace period is over, keep one instance warm: idleness has
	// not lasted long enough to be sure it is not a lull between requests.
	// (With Min > 0 the clamp below keeps instances anyway.)
	if desired == 0 && ready > 0 && cfg.Min == 0 && !scaleToZero {
		desired = 1
		reason += fmt.Sprintf("; idle %v of %v grace, keeping 1", idle.Truncate(time.Second), cfg.ScaleToZeroGrace)
	}

	// Rate limits are relative to what exists; from zero there is nothing
	// to be relative to, and holding back would leave requests unserved.
	if ready > 0 {
		if up := toInt(math.Ceil(float64(ready) * cfg.MaxScaleUpRate)); desired > up {
			desired = up
			reason += fmt.Sprintf("; scale-up limited to %d", up)
		}
		if down := toInt(math.Floor(float64(ready) / cfg.MaxScaleDownRate)); desired < down {
			desired = down
			reason += fmt.Sprintf("; scale-down limited to %d", down)
		}
	}
	if desired > cfg.Max {
		desired = cfg.Max
		reason += fmt.Sprintf("; clamped to max %d", cfg.Max)
	}
	if desired < cfg.Min {
		desired = cfg.Min
		reason += fmt.Sprintf("; clamped to min %d", cfg.Min)
	}

	return Decision{
		Desired:           desired,
		Panic:             a.panicking,
		StableConcurrency: stableAvg,
		PanicConcurrency:  panicAvg,
		Reason:            reason,
	}
}

// idleFor reports how long concurrency has been exactly zero at now, and
// whether it is zero at all. Idleness is counted from the first zero sample,
// not from the last busy one, so the grace period is never cut short by the
// gap between two samples.
func (a *Autoscaler) idleFor(now time.Time) (time.Duration, bool) {
	if a.zeroSince.IsZero() {
		return 0, false
	}
	return max(now.Sub(a.zeroSince), 0), true
}

// desiredFor is ceil(avg/target), and at least 1 for any load at all. The
// small tolerance keeps floating-point noise (an average that should be 3
// computed as 3.0000000000000004) from adding an instance.
func desiredFor(avg, target float64) int {
	if avg <= 0 {
		return 0
	}
	return max(1, toInt(math.Ceil(avg/target-1e-9)))
}

// maxDesired caps desired scales before float-to-int conversion, which is
// undefined for out-of-range values. No function needs more instances.
const maxDesired = math.MaxInt32

func toInt(f float64) int {
	if f >= maxDesired {
		return maxDesired
	}
	return int(f)
}

// num formats a concurrency for a Reason: at most two decimals, no trailing
// zeros.
func num(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}
