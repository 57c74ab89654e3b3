package lease

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Manager grants and tracks the leases of one node. It does no I/O, starts
// no goroutines and never reads the clock: methods whose answer depends on
// time take now as an argument.
//
// A Manager is not safe for concurrent use; the node agent serializes calls,
// for example with its own mutex.
type Manager struct {
	cfg    Config // with defaults applied and validated
	leases map[string]*lease
	seq    uint64         // grants so far; orders leases by grant
	peers  []PeerCapacity // sorted by Node
}

// lease is the manager's record of one lease.
type lease struct {
	seq       uint64
	id, fn    string
	mode      Mode
	hotPoll   time.Duration
	milli     int64 // per executor
	mem       int64 // per executor
	size      int
	slots     []slot
	granted   time.Time
	expires   time.Time
	ended     time.Time // zero until draining
	endReason string
	overdue   bool // reported by Tick as overdue
}

type slot struct {
	state  ExecState
	reason string
	added  time.Time
	lost   time.Time
	acct   Accounting // Allocated is computed, never stored
}

// New returns a Manager for cfg, after applying defaults to its zero fields.
// The error wraps ErrInvalid when cfg is unusable.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg.withDefaults(), leases: map[string]*lease{}}, nil
}

// Config returns the configuration in use, with defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// Capacity returns this node's total capacity and what no lease holds now,
// for gossip. Draining leases hold theirs until Reclaimed.
func (m *Manager) Capacity() Capacity {
	free := m.cfg.Capacity
	for _, l := range m.leases {
		n := l.live()
		free.Executors -= n
		free.MilliCores -= int64(n) * l.milli
		free.Memory -= int64(n) * l.mem
	}
	return Capacity{Free: free, Total: m.cfg.Capacity}
}

// SetPeers replaces what the manager knows of the other nodes' capacity.
// The list must not include this node. Entries older than
// Config.PeerStaleness at the time of a Grant are ignored by it; those
// already stale at now are dropped here.
func (m *Manager) SetPeers(now time.Time, peers []PeerCapacity) {
	m.peers = m.peers[:0]
	for _, p := range peers {
		if !m.stale(now, p) {
			m.peers = append(m.peers, p)
		}
	}
	slices.SortFunc(m.peers, func(a, b PeerCapacity) int { return strings.Compare(a.Node, b.Node) })
}

func (m *Manager) stale(now time.Time, p PeerCapacity) bool {
	return now.Sub(p.AsOf) > m.cfg.PeerStaleness
}

// Grant leases req.Executors executors from this node's free capacity, all
// or none, for req.Duration from now. The executors start out Starting: the
// caller starts them and reports each with ExecutorUp.
//
// When this node has too little free capacity, the error is a *Redirect to
// the fresh peer with the most free cores that has room; failing that, it
// wraps ErrUnsatisfiable, and also ErrNoCapacity if some known node could
// hold the request once leases end. Invalid requests wrap ErrInvalid.
func (m *Manager) Grant(now time.Time, req Request) (Lease, error) {
	req, err := m.cfg.check(req)
	if err != nil {
		return Lease{}, err
	}
	free := m.Capacity().Free
	if free.holds(req.MilliCores, req.Memory) < req.Executors {
		return Lease{}, m.refuse(now, req, free)
	}
	id := m.cfg.IDs()
	if _, dup := m.leases[id]; dup || id == "" {
		return Lease{}, fmt.Errorf("lease: Config.IDs returned %q, which is empty or in use; it must return a new id on every call", id)
	}
	m.seq++
	l := &lease{
		seq: m.seq, id: id, fn: req.Function,
		mode: req.Mode, hotPoll: req.HotPoll,
		milli: req.MilliCores, mem: req.Memory, size: req.Executors,
		granted: now, expires: now.Add(req.Duration),
	}
	for range req.Executors {
		l.slots = append(l.slots, slot{added: now})
	}
	m.leases[id] = l
	return l.snapshot(now), nil
}

// refuse explains why req does not fit here, and where it could go.
func (m *Manager) refuse(now time.Time, req Request, free Resources) error {
	milli, mem, n := req.MilliCores, req.Memory, req.Executors
	shape := fmtExecutors(n, milli, mem)
	var to *PeerCapacity
	nowMost, nowWhere := free.holds(milli, mem), "this node"
	everMost, everWhere := m.cfg.Capacity.holds(milli, mem), "this node"
	biggest, biggestWhere := m.cfg.Capacity, "this node"
	for i := range m.peers {
		p := &m.peers[i]
		if m.stale(now, *p) {
			continue
		}
		k := p.Free.holds(milli, mem)
		if k >= n && (to == nil || p.Free.MilliCores > to.Free.MilliCores) {
			to = p
		}
		if k > nowMost {
			nowMost, nowWhere = k, "node "+p.Node
		}
		// A peer that gossips no total has at least what it has free.
		if t := max(k, p.Total.holds(milli, mem)); t > everMost {
			everMost, everWhere = t, "node "+p.Node
		}
		if p.Total.MilliCores > biggest.MilliCores {
			biggest, biggestWhere = p.Total, "node "+p.Node
		}
	}
	switch {
	case to != nil:
		return &Redirect{Node: to.Node, Addr: to.Addr, Free: to.Free, msg: fmt.Sprintf(
			"%v: this node has %v free, too little for %s; ask node %s at %s, which has %v free",
			ErrNoCapacity, free, shape, to.Node, to.Addr, to.Free)}
	case everMost >= n:
		msg := fmt.Sprintf("%v: no known node has room for %s now", ErrNoCapacity, shape)
		if nowMost > 0 {
			msg += fmt.Sprintf("; the most one node can grant now is %d (%s): retry later or ask for %d", nowMost, nowWhere, nowMost)
		} else if n > 1 {
			msg += ", not even for one: retry later"
		} else {
			msg += ": retry later"
		}
		return &sentinels{errs: []error{ErrNoCapacity, ErrUnsatisfiable}, msg: msg}
	case everMost > 0:
		return fmt.Errorf("%w: %s exceed the total capacity of every known node; the most one node can hold is %d (%s): ask for at most %d",
			ErrUnsatisfiable, shape, everMost, everWhere, everMost)
	default:
		return fmt.Errorf("%w: no known node can hold even one executor of %s and %s; the biggest, %s, has %v in all: ask for smaller executors",
			ErrUnsatisfiable, fmtCores(milli), fmtBytes(mem), biggestWhere, biggest)
	}
}

// Get returns a snapshot of the lease id. The error wraps ErrUnknownLease.
func (m *Manager) Get(now time.Time, id string) (Lease, error) {
	l, err := m.lookup(id)
	if err != nil {
		return Lease{}, err
	}
	return l.snapshot(now), nil
}

// Leases returns a snapshot of every lease not yet reclaimed, in the order
// they were granted.
func (m *Manager) Leases(now time.Time) []Lease {
	var out []Lease
	for _, l := range m.sorted() {
		out = append(out, l.snapshot(now))
	}
	return out
}

// Renew sets the lease to expire d after now. d must be more than 0 and at
// most Config.MaxDuration (ErrInvalid). A lease that has expired, even if
// Tick has not noticed yet, or was released cannot be renewed (ErrExpired).
func (m *Manager) Renew(now time.Time, id string, d time.Duration) (Lease, error) {
	l, err := m.current(now, id)
	if err != nil {
		return Lease{}, err
	}
	if d <= 0 || d > m.cfg.MaxDuration {
		return Lease{}, fmt.Errorf("%w: renew lease %s for %v: give more than 0 and at most %v", ErrInvalid, id, d, m.cfg.MaxDuration)
	}
	l.expires = now.Add(d)
	return l.snapshot(now), nil
}

// Release ends the lease before it expires: it starts draining, and the
// caller stops its executors and confirms with Reclaimed. A lease that is
// already draining gives ErrExpired.
func (m *Manager) Release(now time.Time, id string) (Reclaim, error) {
	l, err := m.lookup(id)
	if err != nil {
		return Reclaim{}, err
	}
	if !l.ended.IsZero() {
		return Reclaim{}, l.endedErr(now)
	}
	return l.drain(now, "released"), nil
}

// Tick moves the leases that have expired by now to Draining and returns
// them, in grant order, for the caller to stop. It also returns, once, each
// lease that has been draining for Config.DrainGrace, as Overdue. Call it
// about once a second and before taking capacity figures for gossip.
func (m *Manager) Tick(now time.Time) []Reclaim {
	var out []Reclaim
	for _, l := range m.sorted() {
		switch {
		case l.ended.IsZero() && !now.Before(l.expires):
			out = append(out, l.drain(now, "expired"))
		case !l.ended.IsZero() && !l.overdue && now.Sub(l.ended) >= m.cfg.DrainGrace:
			l.overdue = true
			r := l.reclaim()
			r.Overdue = true
			out = append(out, r)
		}
	}
	return out
}

// Reclaimed confirms that the executors of a draining lease have stopped:
// their capacity is free and the lease is forgotten. It returns the final
// snapshot, in state Gone, with the accounting up to now.
func (m *Manager) Reclaimed(now time.Time, id string) (Lease, error) {
	l, err := m.lookup(id)
	if err != nil {
		return Lease{}, err
	}
	if l.ended.IsZero() {
		return Lease{}, fmt.Errorf("%w: lease %s is %s, not draining: release it first", ErrInvalid, id, l.state())
	}
	final := l.snapshot(now)
	final.State = Gone
	delete(m.leases, id)
	return final, nil
}

// ExecutorUp reports that executor index of the lease is running. Once every
// executor not lost is up, a pending lease is active.
func (m *Manager) ExecutorUp(id string, index int) error {
	s, err := m.slot(id, index)
	if err != nil {
		return err
	}
	if s.state == Lost {
		return fmt.Errorf("%w: executor %d of lease %s was reported lost (%s); stop it, and top the lease up instead", ErrInvalid, index, id, s.reason)
	}
	s.state = Up
	return nil
}

// ExecutorLost reports that executor index of the lease went away without
// being asked (it crashed, or was killed). Its capacity is free at once and
// it stays listed as lost; TopUp asks for a replacement. Reporting an
// executor lost twice keeps the first reason.
func (m *Manager) ExecutorLost(now time.Time, id string, index int, reason string) error {
	s, err := m.slot(id, index)
	if err != nil {
		return err
	}
	if s.state != Lost {
		s.state, s.reason, s.lost = Lost, reason, now
	}
	return nil
}

// TopUp adds n executors to the lease to replace lost ones, all or none, and
// returns the new slots for the caller to start. The executors not lost may
// not exceed the lease's size (ErrInvalid); the new ones must fit this
// node's free capacity (ErrNoCapacity). They run until the lease ends.
func (m *Manager) TopUp(now time.Time, id string, n int) ([]ExecutorSlot, error) {
	l, err := m.current(now, id)
	if err != nil {
		return nil, err
	}
	switch live := l.live(); {
	case live == l.size:
		return nil, fmt.Errorf("%w: top up lease %s by %d: it has all its %d executors, and a top-up only replaces lost ones; grant a new lease for more",
			ErrInvalid, id, n, l.size)
	case n < 1 || live+n > l.size:
		give := "1"
		if lost := l.size - live; lost > 1 {
			give = fmt.Sprintf("1 to %d", lost)
		}
		return nil, fmt.Errorf("%w: top up lease %s by %d: it has lost %d of its %d executors, so give %s; grant a new lease for more",
			ErrInvalid, id, n, l.size-live, l.size, give)
	}
	if free := m.Capacity().Free; free.holds(l.milli, l.mem) < n {
		return nil, fmt.Errorf("%w: lease %s needs %s; this node has %v free: retry later",
			ErrNoCapacity, id, fmtExecutors(n, l.milli, l.mem), free)
	}
	var added []ExecutorSlot
	for range n {
		added = append(added, ExecutorSlot{Index: len(l.slots), State: Starting})
		l.slots = append(l.slots, slot{added: now})
	}
	return added, nil
}

// Busy adds d to the time executor index of the lease spent running calls.
func (m *Manager) Busy(id string, index int, d time.Duration) error {
	return m.account(id, index, d, func(a *Accounting) { a.Busy += d })
}

// HotPolled adds d to the time executor index of the lease spent
// busy-polling for calls.
func (m *Manager) HotPolled(id string, index int, d time.Duration) error {
	return m.account(id, index, d, func(a *Accounting) { a.HotPolling += d })
}

// Invocations adds n to the calls executor index of the lease has run.
func (m *Manager) Invocations(id string, index int, n uint64) error {
	return m.account(id, index, 0, func(a *Accounting) { a.Invocations += n })
}

// account applies an executor's report. Reports are taken in every state,
// lost included, since they may trail the event that ended the executor.
func (m *Manager) account(id string, index int, d time.Duration, add func(*Accounting)) error {
	if d < 0 {
		return fmt.Errorf("%w: executor %d of lease %s reported %v; durations must not be negative", ErrInvalid, index, id, d)
	}
	s, err := m.slot(id, index)
	if err != nil {
		return err
	}
	add(&s.acct)
	return nil
}

func (m *Manager) lookup(id string) (*lease, error) {
	l, ok := m.leases[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q was never granted by this node, or has been reclaimed; grant a new lease", ErrUnknownLease, id)
	}
	return l, nil
}

// current returns the lease id if it has not ended by now.
func (m *Manager) current(now time.Time, id string) (*lease, error) {
	l, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if !l.ended.IsZero() || !now.Before(l.expires) {
		return nil, l.endedErr(now)
	}
	return l, nil
}

func (m *Manager) slot(id string, index int) (*slot, error) {
	l, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(l.slots) {
		return nil, fmt.Errorf("%w: lease %s has no executor %d; its executors are 0 to %d", ErrInvalid, id, index, len(l.slots)-1)
	}
	return &l.slots[index], nil
}

func (m *Manager) sorted() []*lease {
	ls := make([]*lease, 0, len(m.leases))
	for _, l := range m.leases {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b *lease) int { return cmp.Compare(a.seq, b.seq) })
	return ls
}

// live counts the executors that hold capacity: all but the lost ones.
func (l *lease) live() int {
	n := 0
	for _, s := range l.slots {
		if s.state != Lost {
			n++
		}
	}
	return n
}

func (l *lease) state() State {
	if !l.ended.IsZero() {
		return Draining
	}
	for _, s := range l.slots {
		if s.state == Starting {
			return Pending
		}
	}
	return Active
}

func (l *lease) drain(now time.Time, reason string) Reclaim {
	l.ended, l.endReason = now, reason
	return l.reclaim()
}

func (l *lease) reclaim() Reclaim {
	r := Reclaim{ID: l.id, Function: l.fn, Reason: l.endReason}
	for i, s := range l.slots {
		if s.state != Lost {
			r.Executors = append(r.Executors, i)
		}
	}
	return r
}

func (l *lease) endedErr(now time.Time) error {
	if l.endReason == "released" {
		return fmt.Errorf("%w: lease %s was released %v ago; grant a new lease", ErrExpired, l.id, now.Sub(l.ended))
	}
	return fmt.Errorf("%w: lease %s expired %v ago; grant a new lease, and renew it well before it expires", ErrExpired, l.id, now.Sub(l.expires))
}

func (l *lease) snapshot(now time.Time) Lease {
	out := Lease{
		ID: l.id, Function: l.fn, State: l.state(), Mode: l.mode, HotPoll: l.hotPoll,
		MilliCores: l.milli, Memory: l.mem, Size: l.size,
		GrantedAt: l.granted, Expires: l.expires, EndedAt: l.ended, EndReason: l.endReason,
	}
	for i, s := range l.slots {
		e := ExecutorSlot{Index: i, State: s.state, Reason: s.reason, Accounting: s.acct}
		end := now
		if s.state == Lost {
			end = s.lost
		}
		e.Allocated = max(0, end.Sub(s.added))
		out.Accounting.add(e.Accounting)
		out.Executors = append(out.Executors, e)
	}
	return out
}
