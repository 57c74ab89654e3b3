/*
Package autoscale is the pure core of Handoff's concurrency-based autoscaler,
modelled on Knative's KPA: concurrency samples go in, a desired number of
instances comes out.

The package does no I/O, starts no goroutines and never reads the clock. Time
is an argument of every call, so the same inputs always give the same
decisions and the tests can replay whole scenarios in microseconds. Measuring
concurrency, starting and stopping instances and ticking are the caller's
job (the control plane's autoscaler loop).

# Usage

Create one Autoscaler per function, record a sample about once per second,
and ask for a decision on the same tick:

	a, err := autoscale.New(autoscale.Config{Target: 70, Min: 0, Max: 10})
	if err != nil {
		return err // wraps autoscale.ErrInvalidConfig
	}
	for now := range ticker.C {
		a.Record(now, float64(inFlight+queued))
		d := a.Scale(now, readyOrStarting)
		setScale(d.Desired) // log d.Reason when Desired changes
	}

While the function has no instances, also call Record on every arrival (the
queued count as concurrency) and then Scale, so that the first request does
not wait for the next tick.

An Autoscaler is not safe for concurrent use; the owner serializes calls.

# Samples and windows

A sample is the function's in-flight plus queued requests, summed over its
instances. Samples are kept in BucketWidth (1 s) buckets in a fixed ring that
covers the stable window, so memory is bounded by the window length, not by
the call pattern. Samples that share a bucket are averaged first, so a burst
of arrival-time samples does not outweigh the seconds around it.

The stable window (default 60 s) and the panic window (default 6 s) are
averaged only over the buckets that actually hold samples. A function
deployed ten seconds ago is averaged over those ten seconds, not diluted by
fifty seconds of zeros it never saw; likewise a gap in recording is skipped,
not averaged in as zero load. A caller that wants silence to count as zero must
record zeros (the control loop does, every second).

From the averages:

	stableDesired = ceil(stableAvg / Target)
	panicDesired  = ceil(panicAvg / Target)

# Decision rules, in order of precedence

Panic. When ready > 0 and panicDesired >= PanicThreshold × ready, panic mode
starts (or is extended). In panic, desired = max(panicDesired, peak), where
peak starts at the ready count when panic began and is raised to every
desired scale asked for during the panic: panic mode never scales down, and
that includes scale to zero. Panic ends once a full StableWindow has passed
without the condition holding; by then the stable average covers only
post-burst load.

Scale to zero. With Min == 0, once every sample for ScaleToZeroGrace
(default 30 s) has been exactly 0, desired is 0, even if the stable window
still remembers earlier load. Idleness counts from the first zero sample
(not the last busy one, so the spacing of samples never shortens the grace)
and lasts, across any gap in recording, until a sample > 0. Until the grace period is over, a function with
ready instances keeps at least one.

Scale from zero. When ready == 0 and the panic window holds a sample > 0,
desired = max(1, stableDesired, panicDesired) at once: no window needs to
fill first, and no rate limit applies.

No data. When the stable window holds no samples at all, desired is the
ready count: there is no basis for a change.

Stable. Otherwise desired = stableDesired.

# Limits

Then, when ready > 0, the rate limits apply: desired is at most
ceil(ready × MaxScaleUpRate) and at least floor(ready / MaxScaleDownRate).
Flooring lets a single instance go to zero (with a rate above 1), and a
larger fleet reaches zero in a few halving steps. Last, desired is clamped to
[Min, Max], so the bounds win over everything else.

Each Decision carries a short Reason, such as "stable avg 3.2/target 1 → 4"
or "scale to zero after 30s idle", with the limits that applied appended.
*/
package autoscale
