package lease

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Defaults applied to the zero fields of a Config and a Request.
const (
	DefaultMaxDuration   = 10 * time.Minute
	DefaultPeerStaleness = 5 * time.Second // five missed node heartbeats
	DefaultDrainGrace    = 10 * time.Second
	DefaultHotPoll       = 50 * time.Millisecond
)

// Config sets up one node's Manager. Capacity has no default; zero
// durations mean the defaults above.
type Config struct {
	// Capacity is what the node lends out in all, for example
	// {MilliCores: runtime.NumCPU() * 1000, Memory: 3/4 of RAM, Executors: 64}.
	Capacity Resources
	// MaxDuration bounds a lease's duration and each renewal.
	MaxDuration time.Duration
	// PeerStaleness is how old a peer's gossiped capacity may be and still
	// be used for redirects and for judging what the cluster can hold.
	PeerStaleness time.Duration
	// DrainGrace is how long a lease may drain before Tick reports it again
	// as overdue.
	DrainGrace time.Duration
	// IDs returns a new, unique lease id on each call; in production a
	// random 128-bit hex string, since clients present it to executors
	// directly. The default counts L1, L2, ... which suits tests.
	IDs func() string
}

func (c Config) withDefaults() Config {
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.PeerStaleness == 0 {
		c.PeerStaleness = DefaultPeerStaleness
	}
	if c.DrainGrace == 0 {
		c.DrainGrace = DefaultDrainGrace
	}
	if c.IDs == nil {
		n := 0
		c.IDs = func() string { n++; return "L" + strconv.Itoa(n) }
	}
	return c
}

// Validate reports every problem with c at once, each wrapping ErrInvalid.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: config: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if c.Capacity.MilliCores < 1 {
		bad("capacity of %dm cores must be at least 1m; give the node's cores × 1000, e.g. runtime.NumCPU()*1000", c.Capacity.MilliCores)
	}
	if c.Capacity.Memory < 1 {
		bad("capacity of %d bytes of memory must be more than 0; give the bytes executors may use", c.Capacity.Memory)
	}
	if c.Capacity.Executors < 1 {
		bad("capacity of %d executors must be at least 1", c.Capacity.Executors)
	}
	if c.MaxDuration < 0 {
		bad("max duration %v must not be negative; 0 means %v", c.MaxDuration, DefaultMaxDuration)
	}
	if c.PeerStaleness < 0 {
		bad("peer staleness %v must not be negative; 0 means %v", c.PeerStaleness, DefaultPeerStaleness)
	}
	if c.DrainGrace < 0 {
		bad("drain grace %v must not be negative; 0 means %v", c.DrainGrace, DefaultDrainGrace)
	}
	return errors.Join(errs...)
}

// check reports every problem with r at once, each wrapping ErrInvalid, and
// returns r with its defaults applied.
func (c Config) check(r Request) (Request, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if r.Function == "" {
		bad("function name is empty; give the name of a deployed function")
	}
	if r.Executors < 1 {
		bad("%d executors: ask for at least 1", r.Executors)
	}
	if r.MilliCores < 1 {
		bad("%dm cores per executor: give at least 1m (1000m is one core)", r.MilliCores)
	} else if r.Mode == Hot && r.MilliCores < 1000 {
		bad("a hot executor busy-polls a whole core, so %s per executor is too little: give at least 1000m, or use mode auto or warm", fmtCores(r.MilliCores))
	}
	if r.Memory < 1 {
		bad("%d bytes of memory per executor: give more than 0", r.Memory)
	}
	switch {
	case r.Duration <= 0:
		bad("duration %v: give how long to hold the executors, more than 0 and at most %v", r.Duration, c.MaxDuration)
	case r.Duration > c.MaxDuration:
		bad("duration %v is above the maximum %v: ask for at most %v and renew before it ends", r.Duration, c.MaxDuration, c.MaxDuration)
	}
	switch {
	case r.Mode > Warm:
		bad("mode %d is unknown; give hot, warm or auto", r.Mode)
	case r.HotPoll < 0:
		bad("hot-poll %v must not be negative; 0 means %v", r.HotPoll, DefaultHotPoll)
	case r.HotPoll > 0 && r.Mode != Auto:
		bad("hot-poll %v applies to mode auto only (%s executors never switch); drop it or use mode auto", r.HotPoll, r.Mode)
	case r.Mode == Auto && r.HotPoll == 0:
		r.HotPoll = DefaultHotPoll
	}
	return r, errors.Join(errs...)
}
