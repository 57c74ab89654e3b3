package state

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/clock"
	bolt "go.etcd.io/bbolt"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// openTest opens a fresh database in a temporary directory with a fake
// clock, checks its invariants at the end of the test and closes it.
func openTest(t testing.TB) (*DB, *clock.Fake) {
	t.Helper()
	fc := clock.NewFake(epoch)
	db, err := Open(filepath.Join(t.TempDir(), "state.db"), fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if db.closed.Load() {
			return
		}
		if tt, ok := t.(*testing.T); ok && !tt.Failed() {
			checkInvariants(tt, db)
		}
		db.Close()
	})
	return db, fc
}

// checkInvariants verifies that the index buckets and the counts agree with
// the invocation records.
func checkInvariants(t *testing.T, db *DB) {
	t.Helper()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		seen := map[Status]int{}
		queued := map[string]bool{}
		err := tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			m, err := getMeta(tx, v)
			if err != nil {
				return fmt.Errorf("queue entry %x → %s: %w", k, v, err)
			}
			if m.Status != StatusQueued || !bytes.Equal(queueKey(m), k) {
				return fmt.Errorf("queue entry %x → %s: record is %s with key %x", k, v, m.Status, queueKey(m))
			}
			queued[string(v)] = true
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketInvocations).ForEach(func(k, v []byte) error {
			m, err := getMeta(tx, k)
			if err != nil {
				return err
			}
			seen[m.Status]++
			inRunning := tx.Bucket(bucketRunning).Get(k) != nil
			inDone := tx.Bucket(bucketDone).Get(doneKey(k, m)) != nil
			switch m.Status {
			case StatusQueued:
				if !queued[string(k)] || inRunning || inDone {
					return fmt.Errorf("queued %s: in queue %v, running %v, done %v", k, queued[string(k)], inRunning, inDone)
				}
			case StatusRunning:
				if queued[string(k)] || !inRunning || inDone {
					return fmt.Errorf("running %s: in queue %v, running %v, done %v", k, queued[string(k)], inRunning, inDone)
				}
			case StatusSucceeded, StatusFailed:
				if queued[string(k)] || inRunning || !inDone {
					return fmt.Errorf("%s %s: in queue %v, running %v, done %v", m.Status, k, queued[string(k)], inRunning, inDone)
				}
			default:
				return fmt.Errorf("%s: status %q", k, m.Status)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n := tx.Bucket(bucketQueue).Stats().KeyN; n != seen[StatusQueued] {
			return fmt.Errorf("queue index has %d entries, %d records are queued", n, seen[StatusQueued])
		}
		if n := tx.Bucket(bucketRunning).Stats().KeyN; n != seen[StatusRunning] {
			return fmt.Errorf("running index has %d entries, %d records are running", n, seen[StatusRunning])
		}
		if n := tx.Bucket(bucketDone).Stats().KeyN; n != seen[StatusSucceeded]+seen[StatusFailed] {
			return fmt.Errorf("done index has %d entries, %d records are finished", n, seen[StatusSucceeded]+seen[StatusFailed])
		}
		for _, s := range []Status{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed} {
			if got := getCount(tx.Bucket(bucketCounts), s); got != int64(seen[s]) {
				return fmt.Errorf("count of %s is %d, records say %d", s, got, seen[s])
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("invariants: %v", err)
	}
}
