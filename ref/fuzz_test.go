package ref

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// fuzzSeeds are tokens for both fuzz targets besides testdata/fuzz: a
// valid token of each shape and some near misses.
func fuzzSeeds(f *testing.F) []string {
	k := newKeyring(f)
	any := Ref{Holder: "n2", Size: 1, Expires: now, Readers: []string{AnyReader}, Reads: 1, Issuer: "a"}
	tok := sign(f, k, sample())
	return []string{
		tok,
		sign(f, k, any),
		tok[:len(tok)-1],
		Prefix,
		"hr3." + tok[len(Prefix):], // a future layout
		"",
	}
}

// FuzzParse checks that Parse never panics, that its errors wrap
// ErrMalformed, and that a token it accepts is canonical: its body is
// exactly the encoding of the Ref Parse returned.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		r, err := Parse(token)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if msg := r.validate(); msg != "" {
			t.Fatalf("Parse accepted an invalid ref: %s", msg)
		}
		body, _, err := split(token)
		if err != nil {
			t.Fatal(err)
		}
		if again := encodeBody(nil, r); !bytes.Equal(again, body) || len(body) != bodyLen(r) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, body)
		}
		r2, err := decodeBody(body)
		if err != nil || r2.String() != r.String() {
			t.Fatalf("second decode: %v, %v", r2, err)
		}
	})
}

// FuzzVerify checks that tokens made up by the fuzzer never verify. Signing
// is deterministic, so a token that verifies must be exactly what Sign
// makes of its content: a seed signed with the same key. Anything else
// that verifies is a forgery.
func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	k := newKeyring(f)
	f.Fuzz(func(t *testing.T, token string) {
		r, err := k.Verify(token, now.Add(-time.Hour))
		if err == nil {
			if again, err := k.Sign(r); err != nil || again != token {
				t.Fatalf("made-up token verified: %v", r)
			}
			return
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}
