package store

import (
	"errors"
	"fmt"
	"testing"
)

// TestCodesRoundTrip checks that every sentinel survives Code and FromCode
// with its message, and that the specific name errors stay specific.
func TestCodesRoundTrip(t *testing.T) {
	for _, c := range codes {
		err := fmt.Errorf("%w: b/k", c.err)
		got := FromCode(Code(err), err.Error())
		if !errors.Is(got, c.err) || got.Error() != err.Error() {
			t.Errorf("%s: round trip gave %v", c.code, got)
		}
	}
	if got := FromCode(Code(ErrInvalidBucketName), "x"); !errors.Is(got, ErrInvalidName) {
		t.Errorf("a bucket name error lost its ErrInvalidName: %v", got)
	}
	if Code(errors.New("disk on fire")) != "internal" {
		t.Error("an unknown error has a code")
	}
	if got := FromCode("martian", "m"); got.Error() != "m" || errors.Unwrap(got) != nil {
		t.Errorf("unknown code gave %v", got)
	}
}
