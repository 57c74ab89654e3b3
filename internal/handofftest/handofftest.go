// Package handofftest holds helpers shared by Handoff's tests.
package handofftest

import (
	"testing"
	"time"
)

// CheckFor calls fn every poll until it returns nil, and fails the test with
// fn's last error once total has passed. Tests poll with it instead of
// sleeping for a fixed time.
func CheckFor(t testing.TB, total, poll time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", total, err)
		}
		time.Sleep(poll)
	}
}
