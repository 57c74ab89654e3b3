package state

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"
)

func wantCounts(t *testing.T, db *DB, queued, running, succeeded, failed int) {
	t.Helper()
	got, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[Status]int{StatusQueued: queued, StatusRunning: running, StatusSucceeded: succeeded, StatusFailed: failed}
	for s, n := range want {
		if got[s] != n {
			t.Fatalf("Counts = %v, want %v", got, want)
		}
	}
}

func TestEnqueueClaimComplete(t *testing.T) {
	db, fc := openTest(t)
	inv, err := db.Enqueue("echo", []byte("hello"), 3, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(inv.ID) {
		t.Fatalf("ID %q is not 128 bits of base64url", inv.ID)
	}
	if inv.Status != StatusQueued || inv.Attempts != 0 || inv.MaxAttempts != 3 ||
		inv.RequestID != "req-1" || !inv.Created.Equal(epoch) || !inv.NotBefore.Equal(epoch) {
		t.Fatalf("Enqueue returned %+v", inv)
	}
	wantCounts(t, db, 1, 0, 0, 0)

	fc.Advance(time.Second)
	got, err := db.Claim(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != inv.ID || got[0].Status != StatusRunning ||
		got[0].Attempts != 1 || string(got[0].Input) != "hello" || got[0].Function != "echo" {
		t.Fatalf("Claim = %+v", got)
	}
	if more, _ := db.Claim(10); len(more) != 0 {
		t.Fatalf("second Claim returned %d invocations, want none", len(more))
	}
	wantCounts(t, db, 0, 1, 0, 0)

	fc.Advance(time.Second)
	if err := db.Complete(inv.ID, 200, []byte("HELLO")); err != nil {
		t.Fatal(err)
	}
	done, err := db.Invocation(inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != StatusSucceeded || done.HTTPStatus != 200 || string(done.Output) != "HELLO" ||
		string(done.Input) != "hello" || !done.Updated.Equal(epoch.Add(2*time.Second)) ||
		!done.Created.Equal(epoch) || done.RequestID != "req-1" {
		t.Fatalf("after Complete: %+v", done)
	}
	wantCounts(t, db, 0, 0, 1, 0)

	if err := db.Complete(inv.ID, 200, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Complete twice: %v, want ErrNotRunning", err)
	}
	if _, err := db.Fail(inv.ID, "late", 0); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Fail after Complete: %v, want ErrNotRunning", err)
	}
	if _, err := db.Invocation("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Invocation(nope): %v, want ErrNotFound", err)
	}
	if err := db.Complete("nope", 200, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Complete(nope): %v, want ErrNotFound", err)
	}
}

func TestCompleteWithErrorStatusFails(t *testing.T) {
	db, _ := openTest(t)
	inv, _ := db.Enqueue("f", nil, 1, "")
	if _, err := db.Claim(1); err != nil {
		t.Fatal(err)
	}
	if err := db.Complete(inv.ID, 422, []byte(`{"error":"bad input"}`)); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Invocation(inv.ID)
	if got.Status != StatusFailed || got.HTTPStatus != 422 || len(got.Input) != 0 {
		t.Fatalf("after Complete(422): %+v", got)
	}
	wantCounts(t, db, 0, 0, 0, 1)
}

func TestClaimOldestFirstAndLimit(t *testing.T) {
	db, fc := openTest(t)
	var ids []string
	for i := 0; i < 5; i++ {
		inv, err := db.Enqueue("f", []byte{byte(i)}, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inv.ID)
		if i%2 == 0 {
			fc.Advance(time.Millisecond) // some share an instant, some do not
		}
	}
	var got []string
	for _, n := range []int{2, 2, 2} {
		batch, err := db.Claim(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > n {
			t.Fatalf("Claim(%d) returned %d", n, len(batch))
		}
		for _, inv := range batch {
			got = append(got, inv.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("claimed in order %v, want %v", got, ids)
	}
	if batch, err := db.Claim(0); err != nil || len(batch) != 0 {
		t.Fatalf("Claim(0) = %v, %v", batch, err)
	}
}

func TestFailRetriesThenFails(t *testing.T) {
	db, fc := openTest(t)
	inv, _ := db.Enqueue("flaky", []byte("in"), 3, "")

	for attempt := 1; attempt <= 3; attempt++ {
		batch, err := db.Claim(1)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) != 1 || batch[0].Attempts != attempt {
			t.Fatalf("attempt %d: Claim = %+v", attempt, batch)
		}
		msg := fmt.Sprintf("boom %d", attempt)
		got, err := db.Fail(inv.ID, msg, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.Error != msg || got.Attempts != attempt {
			t.Fatalf("attempt %d: Fail = %+v", attempt, got)
		}
		if attempt < 3 {
			if got.Status != StatusQueued || !got.NotBefore.Equal(fc.Now().Add(10*time.Second)) {
				t.Fatalf("attempt %d: Fail = %+v, want queued 10s from now", attempt, got)
			}
			wantCounts(t, db, 1, 0, 0, 0)
			// Not due yet.
			fc.Advance(9 * time.Second)
			if batch, _ := db.Claim(1); len(batch) != 0 {
				t.Fatalf("attempt %d: claimed before NotBefore", attempt)
			}
			fc.Advance(time.Second)
			continue
		}
		if got.Status != StatusFailed {
			t.Fatalf("last attempt: Fail = %+v, want failed", got)
		}
	}
	wantCounts(t, db, 0, 0, 0, 1)
	got, _ := db.Invocation(inv.ID)
	if got.Status != StatusFailed || got.Error != "boom 3" || got.Attempts != 3 || string(got.Input) != "in" {
		t.Fatalf("final: %+v", got)
	}
	if batch, _ := db.Claim(1); len(batch) != 0 {
		t.Fatalf("a failed invocation was claimed: %+v", batch)
	}
}

func TestNotBeforeRespected(t *testing.T) {
	db, fc := openTest(t)
	late, _ := db.Enqueue("f", nil, 2, "")
	if _, err := db.Claim(1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Fail(late.ID, "retry me", time.Minute); err != nil {
		t.Fatal(err)
	}
	early, _ := db.Enqueue("f", nil, 1, "")

	// Only the fresh one is due, although the retried one was queued first.
	batch, _ := db.Claim(10)
	if len(batch) != 1 || batch[0].ID != early.ID {
		t.Fatalf("Claim = %+v, want only %s", batch, early.ID)
	}
	fc.Advance(time.Minute - time.Nanosecond)
	if batch, _ := db.Claim(10); len(batch) != 0 {
		t.Fatalf("claimed %d a nanosecond early", len(batch))
	}
	fc.Advance(time.Nanosecond)
	batch, _ = db.Claim(10)
	if len(batch) != 1 || batch[0].ID != late.ID || batch[0].Attempts != 2 {
		t.Fatalf("at NotBefore: Claim = %+v, want %s on attempt 2", batch, late.ID)
	}
}

func TestPrune(t *testing.T) {
	db, fc := openTest(t)
	old, _ := db.Enqueue("f", []byte("old"), 1, "")
	oldFail, _ := db.Enqueue("f", []byte("oldfail"), 1, "")
	db.Claim(2)
	db.Complete(old.ID, 200, []byte("out"))
	db.Fail(oldFail.ID, "x", 0)

	fc.Advance(23 * time.Hour)
	recent, _ := db.Enqueue("f", nil, 1, "")
	db.Claim(1)
	db.Complete(recent.ID, 200, nil)
	waiting, _ := db.Enqueue("f", nil, 1, "")
	running, _ := db.Enqueue("f", nil, 1, "")
	fc.Advance(2 * time.Hour)
	if batch, _ := db.Claim(1); len(batch) != 1 || batch[0].ID != waiting.ID {
		t.Fatalf("Claim = %+v", batch)
	}
	_ = running

	n, err := db.Prune(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Prune = %d, want 2", n)
	}
	for _, id := range []string{old.ID, oldFail.ID} {
		if _, err := db.Invocation(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pruned %s: %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{recent.ID, waiting.ID, running.ID} {
		if _, err := db.Invocation(id); err != nil {
			t.Fatalf("kept %s: %v", id, err)
		}
	}
	wantCounts(t, db, 1, 1, 1, 0)
	// Queued and running ones are never pruned, however old.
	fc.Advance(100 * time.Hour)
	if n, _ := db.Prune(time.Hour); n != 1 {
		t.Fatalf("second Prune = %d, want 1 (only the finished one)", n)
	}
	wantCounts(t, db, 1, 1, 0, 0)
}

func TestLargePayload(t *testing.T) {
	db, _ := openTest(t)
	in := bytes.Repeat([]byte("0123456789abcdef"), 6<<20/16) // the 6 MiB inline limit
	inv, err := db.Enqueue("big", in, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := db.Claim(1)
	if err != nil || len(batch) != 1 || !bytes.Equal(batch[0].Input, in) {
		t.Fatalf("Claim of 6 MiB input: %d invocations, %v", len(batch), err)
	}
	if err := db.Complete(inv.ID, 200, in); err != nil {
		t.Fatal(err)
	}
	got, err := db.Invocation(inv.ID)
	if err != nil || !bytes.Equal(got.Output, in) || !bytes.Equal(got.Input, in) {
		t.Fatalf("read back 6 MiB: %v", err)
	}
}

// TestConcurrentClaimNeverDuplicates runs enqueuers and claimers at once and
// checks that every invocation is handed to exactly one claimer.
func TestConcurrentClaimNeverDuplicates(t *testing.T) {
	db, _ := openTest(t)
	const enqueuers, perEnqueuer, claimers = 4, 50, 4
	total := enqueuers * perEnqueuer

	var (
		mu      sync.Mutex // guards claimed and enq
		claimed = map[string]int{}
		enq     = map[string]bool{}
	)
	var wgEnq, wgClaim sync.WaitGroup
	enqDone := make(chan struct{})
	errs := make(chan error, enqueuers+claimers)
	for i := 0; i < enqueuers; i++ {
		wgEnq.Add(1)
		go func() {
			defer wgEnq.Done()
			for j := 0; j < perEnqueuer; j++ {
				inv, err := db.Enqueue("f", []byte{byte(j)}, 1, "")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				enq[inv.ID] = true
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < claimers; i++ {
		wgClaim.Add(1)
		go func() {
			defer wgClaim.Done()
			for {
				batch, err := db.Claim(3)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, inv := range batch {
					claimed[inv.ID]++
				}
				n, want := len(claimed), len(enq)
				mu.Unlock()
				if len(batch) == 0 {
					select {
					case <-enqDone:
						// Every enqueue has returned, so everything
						// there is to claim is queued and due.
						if n >= want {
							return
						}
					default:
					}
				}
			}
		}()
	}
	wgEnq.Wait()
	close(enqDone)
	wgClaim.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(claimed) != total || len(enq) != total {
		t.Fatalf("claimed %d distinct, enqueued %d, want %d", len(claimed), len(enq), total)
	}
	for id, n := range claimed {
		if n != 1 || !enq[id] {
			t.Fatalf("invocation %s claimed %d times (enqueued: %v)", id, n, enq[id])
		}
	}
	wantCounts(t, db, 0, total, 0, 0)
}
