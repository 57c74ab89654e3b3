// Package buffer is the node agent's payload buffer store: where a
// payload passed by reference (package ref) waits until its receivers pull
// it.
//
// Buffers belong to the node agent, not to any instance: the sender hands
// its payload over and may exit at once, losing nothing. Each buffer has
// an id, a number of allowed reads and an expiry; it is freed after its
// last read or at its expiry, whichever comes first.
//
// In-memory buffers are sealed memfds (package memfd). Sealing makes the
// bytes immutable, so a receiver on the same node can be handed the file
// descriptor itself (zero copy) and needs no private copy to guard against
// later writes, and a receiver elsewhere can be sent the bytes with
// sendfile(2) straight from the memfd (Reader.WriteTo).
//
// Memory is bounded by Config.Memory. When it is full, a Put waits up to
// Config.Wait for room; then it writes to an unlinked file in
// Config.SpillDir, or fails with ErrFull when spilling is off. An instance
// that fills a memfd itself hands it over with Adopt, which never copies
// and so never spills.
//
// # Usage
//
//	store, err := buffer.New(buffer.Config{Memory: 1 << 30, SpillDir: "/var/lib/handoff/spill"})
//	defer store.Close()
//
//	// The sender's node agent keeps the payload and signs a reference to info.ID.
//	info, err := store.Put(ctx, body, size, buffer.Meta{Reads: 1, Expires: now.Add(ttl), Issuer: "split"})
//
//	// The holder serves a pull after verifying the reference.
//	rd, err := store.Open(info.ID) // takes one read; ErrNotFound, ErrExhausted
//	defer rd.Close()
//	_, err = io.Copy(conn, rd) // sendfile from the memfd
//
// # Memory accounting
//
// The accounting is a pure core (budget.go) the Store drives under its
// lock: reservations are granted first come, first served, so a large Put
// is not starved by small ones. A Put of known size reserves all of it
// before reading; one of unknown size (-1) reserves 4 MiB steps as bytes
// arrive and gives the unused rest back at the end. A buffer's bytes stay
// reserved while it is held and while any Reader of it is open, so a
// buffer freed under a reader still counts until the reader closes.
// Spill files do not count against the budget.
//
// # Lifetime and concurrency
//
// A Store is safe for concurrent use; one mutex, Store.mu, guards the
// index, the budget and the counters, and is never held while copying
// payload bytes or waiting. Each buffer carries a reference count: one for
// the index, one per open Reader. Free, expiry, the last read and Close
// take the buffer out of the index at once; its file is closed and its
// memory given back exactly once, when the count reaches zero.
//
// The store sweeps expired buffers itself every second when it runs on
// the real clock; see Config.Clock.
package buffer
