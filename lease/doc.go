/*
Package lease is the pure core of Handoff's executor leases, the "leases and
direct invocation" path modelled on rFaaS: a client leases executors from a
node agent for a while and then invokes them directly, bypassing the
gateway.

A Manager holds one node's capacity and its leases. It decides grants and
redirects, tracks each lease's executors and accounting, and says when
executors must be stopped. It does no I/O, starts no goroutines and never
reads the clock: time is an argument (the caller reads its clock.Clock), and
lease ids come from Config.IDs. Starting and stopping executor processes,
gossiping capacity, serving the lease API and checking lease ids on direct
calls are the node agent's job.

# Usage

The node agent creates one Manager, serializes calls to it with its own
mutex, and drives it from its API handlers and one ticker:

	m, err := lease.New(lease.Config{
		Capacity: lease.Resources{MilliCores: int64(runtime.NumCPU()) * 1000, Memory: mem, Executors: 64},
		IDs:      randomHex128, // clients present the id to executors: make it unguessable
	})

	// Lease request from a client.
	l, err := m.Grant(clk.Now(), req)
	var r *lease.Redirect
	switch {
	case err == nil:
		for _, e := range l.Executors {
			go start(l, e.Index) // then m.ExecutorUp(l.ID, e.Index), or m.ExecutorLost(now, ...)
		}
	case errors.As(err, &r):
		// 409 with r.Node and r.Addr: the client asks that node instead.
	case errors.Is(err, lease.ErrNoCapacity):
		// 503: the cluster is busy; retry later, or ask for what the message says.
	default:
		// ErrUnsatisfiable alone (never fits) or ErrInvalid: 400 with err's message.
	}

	// About once a second.
	for _, rc := range m.Tick(clk.Now()) {
		go stop(rc) // gracefully, or at once if rc.Overdue; then m.Reclaimed(now, rc.ID)
	}
	m.SetPeers(clk.Now(), gossip.Peers())
	gossip.Publish(m.Capacity())

The client renews with Renew well before Expires and ends with Release; the
executors' reports (Busy, HotPolled, Invocations) reach the manager through
the agent. Leases(now) lists every lease with its accounting, for
"handoff leases" and metrics.

# States

	Grant ──► Pending ──(all executors up)──► Active
	             │                              │
	             └──(expired: Tick, or Release)─┴──► Draining ──Reclaimed──► Gone

A lease is Pending while any executor not lost is still starting, and Active
once all are up. It expires at Expires whether or not Tick has run: from
then on Renew and TopUp give ErrExpired, and the next Tick moves it to
Draining and returns it as a Reclaim. Release does the same at once.
Draining executors may finish the calls in flight and still hold their
capacity; the caller stops them and confirms with Reclaimed, which frees the
capacity and forgets the lease. If that takes longer than Config.DrainGrace,
Tick returns the lease once more, as Overdue: stop it now. So a client that
vanishes without a word holds its executors until its lease expires and no
longer.

An executor that dies on its own is reported with ExecutorLost: its capacity
is free at once and it stays on the lease as Lost. TopUp adds replacements,
with new indexes, as long as the executors not lost stay within the lease's
Size.

# Capacity and redirection

Capacity is counted in milli-cores, bytes and executor slots; every
executor of a lease has the same size, and each executor not lost holds one
slot and its size until the lease is reclaimed. Grant is all or nothing.

When this node has too little free, Grant looks at the peers' gossiped
capacity (SetPeers), ignoring figures older than Config.PeerStaleness:

  - If peers have room now, the error is a *Redirect (wrapping
    ErrNoCapacity) to the one with the most free cores; ties go to the name
    that sorts first.
  - Otherwise, if the request would fit some known node's total capacity,
    the error wraps both ErrNoCapacity and ErrUnsatisfiable: nobody can
    grant it now, retry later. The message says the most executors of that
    size one node could grant now.
  - Otherwise the error wraps ErrUnsatisfiable alone: the request exceeds
    every known node and never will fit. The message says the largest
    request that could, or that the executors themselves are too big.

No request ever waits: every answer is immediate, so a client never hangs
on a lease that cannot come. Redirects are hints from gossip; the peer
decides for itself and may redirect again.

# Modes

Hot executors busy-poll for calls for the whole lease (the lowest latency,
and a whole core each, so they need at least 1000 milli-cores). Warm
executors block between calls. Auto executors busy-poll for HotPoll
(default 50 ms) after each call, then block. The manager validates and
records the mode; the executor implements it.

# Accounting

Each executor's Accounting holds Allocated, the executor time it held (from
its grant or top-up until it was lost, the lease was reclaimed, or now), and
the sums of what it reported: Busy time running calls, HotPolling time spent
polling, and Invocations. A lease's Accounting is the sum over its
executors, lost ones included. Reports are taken until the lease is
reclaimed, since they may trail the executor's end; Reclaimed returns the
final figures.
*/
package lease
