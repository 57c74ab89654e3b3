package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults applied to the zero fields of a Config.
const (
	DefaultStableWindow     = 60 * time.Second
	DefaultPanicWindow      = 6 * time.Second
	DefaultScaleToZeroGrace = 30 * time.Second
	DefaultPanicThreshold   = 2.0
	DefaultMaxScaleDownRate = 2.0
	DefaultMaxScaleUpRate   = 1000.0
)

// BucketWidth is the time resolution of the sample history: samples that
// fall in the same BucketWidth slot are averaged into one value, and windows
// are rounded up to whole buckets.
const BucketWidth = time.Second

// MaxStableWindow is the longest stable window accepted. It bounds the
// sample history to MaxStableWindow/BucketWidth buckets per function.
const MaxStableWindow = time.Hour

// ErrInvalidConfig is returned (wrapped, with the offending field named) by
// Config.Validate and New when a Config cannot drive an autoscaler. Test for
// it with errors.Is.
var ErrInvalidConfig = errors.New("autoscale: invalid config")

// Config tunes one Autoscaler. Zero durations, thresholds and rates mean the
// defaults above; Target and Max have no default and must be set.
type Config struct {
	// Target is the number of in-flight requests per instance to aim for.
	// It must be greater than zero.
	Target float64
	// Min and Max bound the desired scale. Max must be at least 1; Min may be
	// 0, which allows scale to zero.
	Min, Max int
	// StableWindow is the averaging window for ordinary decisions and the
	// time panic mode must go quiet before it ends (default 60s).
	StableWindow time.Duration
	// PanicWindow is the short window that detects bursts (default 6s, or
	// StableWindow if that is shorter).
	PanicWindow time.Duration
	// ScaleToZeroGrace is how long concurrency must have been exactly zero
	// before the desired scale may drop to zero (default 30s).
	ScaleToZeroGrace time.Duration
	// PanicThreshold enters panic mode when the panic-window desired scale
	// is at least PanicThreshold times the ready instances (default 2.0).
	PanicThreshold float64
	// MaxScaleDownRate keeps one decision from going below
	// floor(ready/MaxScaleDownRate) (default 2.0). It must exceed 1, or a
	// single instance could never be released.
	MaxScaleDownRate float64
	// MaxScaleUpRate keeps one decision from going above
	// ceil(ready*MaxScaleUpRate) (default 1000.0). Growth from zero ready
	// instances is not limited. It must exceed 1.
	MaxScaleUpRate float64
}

// withDefaults returns c with every zero field that has a default filled in.
func (c Config) withDefaults() Config {
	if c.StableWindow == 0 {
		c.StableWindow = DefaultStableWindow
	}
	if c.PanicWindow == 0 {
		c.PanicWindow = DefaultPanicWindow
		// A defaulted panic window must not make a short, explicitly chosen
		// stable window invalid.
		if c.StableWindow >= BucketWidth {
			c.PanicWindow = min(c.PanicWindow, c.StableWindow)
		}
	}
	if c.ScaleToZeroGrace == 0 {
		c.ScaleToZeroGrace = DefaultScaleToZeroGrace
	}
	if c.PanicThreshold == 0 {
		c.PanicThreshold = DefaultPanicThreshold
	}
	if c.MaxScaleDownRate == 0 {
		c.MaxScaleDownRate = DefaultMaxScaleDownRate
	}
	if c.MaxScaleUpRate == 0 {
		c.MaxScaleUpRate = DefaultMaxScaleUpRate
	}
	return c
}

// Validate reports every problem with c (after defaults are applied) at
// once, each wrapping ErrInvalidConfig. It returns nil for a usable Config.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if !(c.Target > 0) || math.IsInf(c.Target, 0) { // !(x > 0) also catches NaN
		bad("target %v must be a finite number of in-flight requests per instance greater than 0", c.Target)
	}
	if c.Max < 1 {
		bad("max %d must be at least 1", c.Max)
	}
	if c.Min < 0 {
		bad("min %d must not be negative; use 0 to allow scale to zero", c.Min)
	}
	if c.Max >= 1 && c.Min > c.Max {
		bad("min %d exceeds max %d; raise max or lower min", c.Min, c.Max)
	}
	stableOK := c.StableWindow >= BucketWidth && c.StableWindow <= MaxStableWindow
	if !stableOK {
		bad("stable window %v must be between %v and %v", c.StableWindow, BucketWidth, MaxStableWindow)
	}
	// Comparing with an invalid stable window would only repeat that error.
	if c.PanicWindow < BucketWidth || stableOK && c.PanicWindow > c.StableWindow {
		bad("panic window %v must be between %v and the stable window %v", c.PanicWindow, BucketWidth, c.StableWindow)
	}
	if c.ScaleToZeroGrace < 0 {
		bad("scale-to-zero grace %v must not be negative", c.ScaleToZeroGrace)
	}
	// A threshold of 1 or less would panic whenever load merely matches the
	// current capacity, which is the normal, healthy state.
	if !(c.PanicThreshold > 1) || math.IsInf(c.PanicThreshold, 0) {
		bad("panic threshold %v must be a finite number greater than 1", c.PanicThreshold)
	}
	if !(c.MaxScaleDownRate > 1) || math.IsInf(c.MaxScaleDownRate, 0) {
		bad("max scale-down rate %v must be a finite number greater than 1", c.MaxScaleDownRate)
	}
	if !(c.MaxScaleUpRate > 1) || math.IsInf(c.MaxScaleUpRate, 0) {
		bad("max scale-up rate %v must be a finite number greater than 1", c.MaxScaleUpRate)
	}
	return errors.Join(errs...)
}
