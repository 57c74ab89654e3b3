// Package state keeps the control plane's durable state in an embedded bbolt
// database (D/state.db for `handoff up --dir D`): the deployed functions and
// the queue of asynchronous invocations with their results.
//
// Everything a caller is told has happened (a function deployed, an
// invocation accepted with 202, a result recorded) has been committed and
// fsynced first, so it survives a crash of the control plane, kill -9
// included. Sync stays on for that reason; its cost is one fdatasync per
// write transaction, a few milliseconds on a virtual disk, which bounds a
// lone writer to a few hundred writes a second. Concurrent Enqueue, Complete
// and Fail calls share transactions and so fsyncs (bbolt's Batch); see
// BenchmarkEnqueue and BenchmarkEnqueueParallel.
//
// # Usage
//
//	db, err := state.Open(filepath.Join(dir, "state.db"), clock.Real{})
//	if err != nil {
//		return err // e.g. the directory is in use by another handoff process
//	}
//	defer db.Close()
//
//	inv, err := db.Enqueue("resize", body, 3, requestID) // answer 202 {"id": inv.ID}
//
//	// dispatcher loop
//	batch, err := db.Claim(16)
//	for _, inv := range batch {
//		status, out, err := invoke(inv)
//		if err != nil {
//			db.Fail(inv.ID, err.Error(), backoff(inv.Attempts))
//			continue
//		}
//		db.Complete(inv.ID, status, out)
//	}
//
// # Invocation life cycle
//
//	Enqueue ─► queued ─Claim─► running ─Complete─► succeeded (2xx) or failed
//	             ▲                  │
//	             │                  ├─Fail, no attempts left─► failed
//	             └──────────────────┤
//	                                └ Fail with attempts left, or Open after
//	                                  the previous process died
//
// An invocation that a previous process left running (it crashed or was
// stopped mid-invocation) goes back to queued when the database is opened
// again, and that attempt is not counted, so no accepted invocation is lost.
// Delivery is therefore at least once: a function may see an input again if
// the control plane died while it ran.
//
// # Layout
//
// Buckets, all in one file:
//
//	functions    name                  → JSON {function, version, updated}
//	invocations  id                    → JSON metadata (no payloads)
//	inputs       id                    → input bytes, as is
//	outputs      id                    → output bytes, as is
//	queue        notBefore|seq         → id   (queued invocations, ready order)
//	running      id                    → ""   (claimed invocations)
//	done         finished|id           → ""   (finished invocations, for Prune)
//	counts       status                → uint64 (for Counts)
//
// Every transaction that changes an invocation's status updates the record,
// the index buckets and the counts together, so they never disagree. Claim
// walks the queue index from its start and stops at the first entry that is
// not yet due, so its cost is proportional to what it claims, not to the
// size of the queue. Payloads live apart from the metadata so that Counts,
// Prune and the indexes never read or decode megabytes.
package state
