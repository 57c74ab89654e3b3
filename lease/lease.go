package lease

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Errors returned (wrapped, with the lease and the figures named) by the
// Manager. Test for them with errors.Is.
var (
	// ErrInvalid means a Request, a Config or an argument cannot be used as
	// given; the message names the field and says what to give instead.
	ErrInvalid = errors.New("lease: invalid")

	// ErrNoCapacity means the capacity asked for exists but is in use now:
	// retrying later can succeed. From Grant it comes either as a
	// *Redirect, naming a peer that has room now, or together with
	// ErrUnsatisfiable when no known node has room now. From TopUp it means
	// this node has no room for the replacements now.
	ErrNoCapacity = errors.New("lease: no free capacity")

	// ErrUnsatisfiable means no known node can grant the request now. When
	// the error does not also match ErrNoCapacity, no known node could ever
	// grant it: it exceeds every node's total capacity, and only a smaller
	// request can succeed. The message says the largest request that fits.
	ErrUnsatisfiable = errors.New("lease: unsatisfiable")

	// ErrUnknownLease means the lease id was never granted by this manager,
	// or the lease has been reclaimed since.
	ErrUnknownLease = errors.New("lease: unknown lease")

	// ErrExpired means the lease has ended: it expired or was released. It
	// can no longer be renewed or topped up; grant a new one.
	ErrExpired = errors.New("lease: ended")
)

// Redirect is Grant's answer when this node has too little free capacity
// but a peer, going by its latest gossip, has enough: ask that peer. It
// wraps ErrNoCapacity.
type Redirect struct {
	Node, Addr string    // the peer to ask
	Free       Resources // the peer's free capacity as last gossiped
	msg        string
}

func (r *Redirect) Error() string { return r.msg }
func (r *Redirect) Unwrap() error { return ErrNoCapacity }

// sentinels is an error with its own message that matches several
// sentinel errors.
type sentinels struct {
	msg  string
	errs []error
}

func (e *sentinels) Error() string   { return e.msg }
func (e *sentinels) Unwrap() []error { return e.errs }

// Mode is how a leased executor waits for its next call.
type Mode uint8

const (
	// Auto busy-polls for HotPoll after each call, then blocks (goes warm)
	// until the next one. It is the zero Mode.
	Auto Mode = iota
	// Hot busy-polls for the whole lease: the lowest latency, and a whole
	// core per executor.
	Hot
	// Warm always blocks between calls: no core is burnt while idle, at the
	// cost of a wake-up on every call.
	Warm
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Hot:
		return "hot"
	case Warm:
		return "warm"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "auto", "hot" or "warm". The error wraps ErrInvalid.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Auto, Hot, Warm} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: mode %q is unknown; give hot, warm or auto", ErrInvalid, s)
}

// Resources is an amount of node capacity.
type Resources struct {
	MilliCores int64 // CPU; 1000 is one logical core
	Memory     int64 // bytes
	Executors  int
}

func (r Resources) String() string {
	return fmt.Sprintf("%s, %s, %s", fmtCores(r.MilliCores), fmtBytes(r.Memory), plural(r.Executors, "executor"))
}

// holds returns how many executors of the given size fit in r.
func (r Resources) holds(milliCores, memory int64) int {
	return int(max(0, min(int64(r.Executors), r.MilliCores/milliCores, r.Memory/memory)))
}

// Capacity is a node's capacity: what it has in all, and what no lease
// holds now.
type Capacity struct {
	Free, Total Resources
}

// PeerCapacity is another node's capacity as gossiped. AsOf is when it was
// measured, on the caller's clock.
type PeerCapacity struct {
	Node, Addr string
	Capacity
	AsOf time.Time
}

// Request asks for a lease on Executors executors of one size.
type Request struct {
	Function   string
	Executors  int           // at least 1
	MilliCores int64         // per executor; 1000 is one logical core
	Memory     int64         // per executor, in bytes
	Duration   time.Duration // at most Config.MaxDuration; renew to hold longer
	Mode       Mode
	// HotPoll is how long an Auto executor busy-polls after a call before
	// it blocks; 0 means DefaultHotPoll. Hot and Warm executors take none.
	HotPoll time.Duration
}

// State is where a lease is in its life.
type State uint8

const (
	// Pending: granted, and some executors are still starting.
	Pending State = iota
	// Active: every executor not lost is up.
	Active
	// Draining: expired or released. Calls in flight may finish; the
	// caller stops the executors and confirms with Reclaimed. The
	// executors hold their capacity until then.
	Draining
	// Gone: reclaimed; the capacity is free and the manager has forgotten
	// the lease. Only the Lease returned by Reclaimed shows this state.
	Gone
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Active:
		return "active"
	case Draining:
		return "draining"
	case Gone:
		return "gone"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ExecState is where one executor of a lease is.
type ExecState uint8

const (
	Starting ExecState = iota // granted; the caller is starting it
	Up                        // running and taking calls
	Lost                      // gone without being asked; its capacity is free
)

func (s ExecState) String() string {
	switch s {
	case Starting:
		return "starting"
	case Up:
		return "up"
	case Lost:
		return "lost"
	}
	return "ExecState(" + strconv.Itoa(int(s)) + ")"
}

// Accounting is what a lease, or one of its executors, has used.
type Accounting struct {
	// Allocated is executor time held: for each executor, the time from
	// its grant (or top-up) until it was lost, the lease was reclaimed, or
	// now.
	Allocated time.Duration
	// Busy, HotPolling and Invocations are the sums of what the executors
	// reported.
	Busy, HotPolling time.Duration
	Invocations      uint64
}

func (a *Accounting) add(b Accounting) {
	a.Allocated += b.Allocated
	a.Busy += b.Busy
	a.HotPolling += b.HotPolling
	a.Invocations += b.Invocations
}

// ExecutorSlot is one executor of a lease. Indexes count from 0 and are
// never reused: a replacement gets the next index, and a lost executor
// stays listed.
type ExecutorSlot struct {
	Index  int
	State  ExecState
	Reason string // why it was lost
	Accounting
}

// Lease is a snapshot of one lease.
type Lease struct {
	ID, Function string
	State        State
	Mode         Mode
	HotPoll      time.Duration // in effect; 0 unless Mode is Auto
	MilliCores   int64         // per executor
	Memory       int64         // per executor
	// Size is the number of executors granted. Replacements keep the
	// executors not lost at or below it.
	Size      int
	Executors []ExecutorSlot
	GrantedAt time.Time
	Expires   time.Time
	EndedAt   time.Time // when draining began; zero before
	EndReason string    // "expired" or "released"
	Accounting
}

// Reclaim tells the caller to stop a lease's executors: gracefully, letting
// calls in flight finish, unless Overdue. Confirm with Manager.Reclaimed.
type Reclaim struct {
	ID, Function string
	Executors    []int  // indexes of the executors not lost
	Reason       string // "expired" or "released"
	// Overdue means the lease has been draining for Config.DrainGrace
	// without being reclaimed: stop the executors now, in-flight calls or
	// not. Tick reports each lease once as overdue.
	Overdue bool
}

// fmtCores formats milli-cores: "1 core", "2.5 cores".
func fmtCores(m int64) string {
	if m == 1000 {
		return "1 core"
	}
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) + " cores"
}

// fmtBytes formats a byte count in the largest binary unit that divides it.
func fmtBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// fmtExecutors formats n executors of one size: "2 executors of 1 core and 1GiB".
func fmtExecutors(n int, milliCores, memory int64) string {
	return fmt.Sprintf("%s of %s and %s", plural(n, "executor"), fmtCores(milliCores), fmtBytes(memory))
}
