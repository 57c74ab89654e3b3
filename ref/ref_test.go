package ref

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	now     = time.Date(2026, 11, 23, 19, 54, 0, 0, time.UTC)
	secret1 = bytes.Repeat([]byte{0x11}, 32)
	secret2 = bytes.Repeat([]byte{0x22}, 48)
)

func sample() Ref {
	return Ref{
		Holder:   "n1",
		Buffer:   [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		Size:     64 << 20,
		Checksum: 0xcafef00d,
		Expires:  now.Add(5 * time.Minute),
		Readers:  []string{"count", "merge-2"},
		Reads:    3,
		Issuer:   "split",
	}
}

func newKeyring(t testing.TB) *Keyring {
	t.Helper()
	k := NewKeyring()
	if err := k.Add(1, secret1); err != nil {
		t.Fatal(err)
	}
	if err := k.Use(1); err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, k *Keyring, r Ref) string {
	t.Helper()
	tok, err := k.Sign(r)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
}

func TestRoundTrip(t *testing.T) {
	k := newKeyring(t)
	in := sample()
	tok := sign(t, k, in)
	if !strings.HasPrefix(tok, Prefix) || len(tok) > MaxTokenLen {
		t.Fatalf("token %q", tok)
	}
	// A token travels in headers and JSON strings as is.
	if strings.ContainsAny(tok, " \t\r\n\"\\+/=,;") {
		t.Fatalf("token has characters unsafe in a header or JSON: %q", tok)
	}
	in.KeyID = 1
	for name, parse := range map[string]func() (Ref, error){
		"Verify": func() (Ref, error) { return k.Verify(tok, now) },
		"Parse":  func() (Ref, error) { return Parse(tok) },
	} {
		out, err := parse()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("%s:\n got %v\nwant %v", name, out, in)
		}
	}
}

func TestEveryFieldSurvives(t *testing.T) {
	k := newKeyring(t)
	if err := k.Add(0xfedcba98, secret2); err != nil {
		t.Fatal(err)
	}
	if err := k.Use(0xfedcba98); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 63)
	readers := make([]string, MaxReaders)
	for i := range readers {
		readers[i] = fmt.Sprintf("f%d-%s", i, long[:59])
	}
	cases := []Ref{
		sample(),
		{Holder: "0", Size: 0, Expires: time.Unix(1, 0), Readers: []string{AnyReader}, Reads: 1, Issuer: "a"},
		{Holder: strings.Repeat("-", 63), Buffer: [16]byte{15: 0xff}, Size: 1<<63 - 1, Checksum: 0xffffffff,
			Expires: time.Unix(maxExpires, 0), Readers: readers, Reads: 0xffffffff, Issuer: long},
	}
	for i, in := range cases {
		tok := sign(t, k, in)
		if len(tok) > MaxTokenLen {
			t.Fatalf("case %d: token of %d bytes", i, len(tok))
		}
		out, err := Parse(tok)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		in.KeyID = 0xfedcba98
		in.Expires = in.Expires.UTC()
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("case %d:\n got %v\nwant %v", i, out, in)
		}
	}
}

func TestSignTruncatesExpiry(t *testing.T) {
	k := newKeyring(t)
	r := sample()
	r.Expires = now.Add(1500 * time.Millisecond)
	got, err := Parse(sign(t, k, r))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expires.Equal(now.Add(time.Second)) {
		t.Fatalf("expires %v, want %v", got.Expires, now.Add(time.Second))
	}
}

// TestTamperText changes every character of a token to several others:
// no change may verify, and each must fail as forged, damaged or (when it
// hits the key id) signed by an unknown key.
func TestTamperText(t *testing.T) {
	k := newKeyring(t)
	tok := sign(t, k, sample())
	for i := 0; i < len(tok); i++ {
		for _, c := range []byte{tok[i] ^ 1, tok[i] ^ 0x20, 'A', 'z', '0', '-', '_', '.', '=', 0, 0xff} {
			if c == tok[i] {
				continue
			}
			bad := tok[:i] + string([]byte{c}) + tok[i+1:]
			checkRefused(t, k, bad, fmt.Sprintf("char %d to %q", i, c))
		}
	}
	checkRefused(t, k, tok[:len(tok)-1], "truncated by one")
	checkRefused(t, k, tok+"A", "extended by one")
	checkRefused(t, k, "", "empty")
	checkRefused(t, k, Prefix, "prefix only")
	checkRefused(t, k, strings.Repeat("A", MaxTokenLen+1), "too long")
}

// TestTamperBytes flips every bit of the decoded token and re-encodes it
// validly, so the change reaches the MAC check.
func TestTamperBytes(t *testing.T) {
	k := newKeyring(t)
	tok := sign(t, k, sample())
	raw, err := b64.DecodeString(tok[len(Prefix):])
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(raw)
			bad[i] ^= 1 << bit
			err := checkRefused(t, k, Prefix+b64.EncodeToString(bad), fmt.Sprintf("byte %d bit %d", i, bit))
			if i >= 4 && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("byte %d bit %d: %v, want ErrBadSignature", i, bit, err)
			}
		}
	}
}

// checkRefused fails unless tok is refused with one of the errors a damaged
// token may produce. ErrUnknownKey is allowed only when the key id changed.
func checkRefused(t *testing.T, k *Keyring, tok, what string) error {
	t.Helper()
	r, err := k.Verify(tok, now)
	switch {
	case err == nil:
		t.Fatalf("%s: tampered token verified: %v", what, r)
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrMalformed):
	case errors.Is(err, ErrUnknownKey):
		body, _, serr := split(tok)
		if serr != nil || len(body) < 4 || body[0]|body[1]|body[2] == 0 && body[3] == 1 {
			t.Fatalf("%s: ErrUnknownKey but the key id is intact: %v", what, err)
		}
	default:
		t.Fatalf("%s: unexpected error %v", what, err)
	}
	return err
}

func TestForgedWithOtherSecret(t *testing.T) {
	forger := NewKeyring()
	if err := forger.Add(1, secret2); err != nil {
		t.Fatal(err)
	}
	if err := forger.Use(1); err != nil {
		t.Fatal(err)
	}
	r := sample()
	r.Reads = 1000
	_, err := newKeyring(t).Verify(sign(t, forger, r), now)
	wantErr(t, err, ErrBadSignature)
}

func TestRemovedKey(t *testing.T) {
	k := newKeyring(t)
	tok := sign(t, k, sample())
	k.Remove(1)
	_, err := k.Verify(tok, now)
	wantErr(t, err, ErrUnknownKey)
	if !strings.Contains(err.Error(), "key 1") {
		t.Errorf("error does not name the key: %v", err)
	}
	_, err = k.Sign(sample())
	wantErr(t, err, ErrUnknownKey)
}

func TestRotation(t *testing.T) {
	k := newKeyring(t)
	old := sign(t, k, sample())
	if err := k.Add(2, secret2); err != nil {
		t.Fatal(err)
	}
	if err := k.Use(2); err != nil {
		t.Fatal(err)
	}
	fresh := sign(t, k, sample())
	for _, tc := range []struct {
		tok string
		key uint32
	}{{old, 1}, {fresh, 2}} {
		r, err := k.Verify(tc.tok, now)
		if err != nil {
			t.Fatalf("key %d: %v", tc.key, err)
		}
		if r.KeyID != tc.key {
			t.Fatalf("KeyID = %d, want %d", r.KeyID, tc.key)
		}
	}
	k.Remove(1)
	if _, err := k.Verify(old, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old token after Remove(1): %v", err)
	}
	if _, err := k.Verify(fresh, now); err != nil {
		t.Fatalf("new token after Remove(1): %v", err)
	}
}

func TestKeyringErrors(t *testing.T) {
	k := NewKeyring()
	if err := k.Add(1, secret1[:31]); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := k.Sign(sample()); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Sign with no key: %v", err)
	}
	wantErr(t, k.Use(7), ErrUnknownKey)
	if err := k.Add(1, secret1); err != nil {
		t.Fatal(err)
	}
	if err := k.Add(1, secret1); err != nil {
		t.Errorf("re-adding the same secret: %v", err)
	}
	if err := k.Add(1, secret2); err == nil {
		t.Error("replacing a secret under a known id accepted")
	}
	if got := k.IDs(); !reflect.DeepEqual(got, []uint32{1}) {
		t.Errorf("IDs = %v", got)
	}
	// The keyring keeps its own copy of the secret.
	s := bytes.Clone(secret2)
	if err := k.Add(2, s); err != nil {
		t.Fatal(err)
	}
	if err := k.Use(2); err != nil {
		t.Fatal(err)
	}
	tok := sign(t, k, sample())
	s[0] ^= 1
	if _, err := k.Verify(tok, now); err != nil {
		t.Fatalf("after the caller changed its secret slice: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	k := newKeyring(t)
	r := sample()
	tok := sign(t, k, r)
	if _, err := k.Verify(tok, r.Expires.Add(-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	_, err := k.Verify(tok, r.Expires)
	wantErr(t, err, ErrExpired)
	_, err = k.Verify(tok, r.Expires.Add(6*time.Minute))
	wantErr(t, err, ErrExpired)
	want := "ref: expired at 2026-11-23T19:59:00Z (6m0s ago); ask the sender for a new reference or raise its ttl"
	if err.Error() != want {
		t.Fatalf("error text\n got %s\nwant %s", err, want)
	}
	// Parse does not check expiry: it is for inspection.
	if _, err := Parse(tok); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedFor(t *testing.T) {
	k := newKeyring(t)
	r, err := k.Verify(sign(t, k, sample()), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"count", "merge-2"} {
		if err := r.AllowedFor(fn); err != nil {
			t.Errorf("%s: %v", fn, err)
		}
	}
	for _, fn := range []string{"merge", "", "*", "count "} {
		err := r.AllowedFor(fn)
		wantErr(t, err, ErrWrongReader)
		if fn == "merge" && !strings.Contains(err.Error(), `"split"`) {
			t.Errorf("error does not name the issuer: %v", err)
		}
	}
	r.Readers = []string{AnyReader}
	if err := r.AllowedFor("anything"); err != nil {
		t.Errorf("AnyReader: %v", err)
	}
}

func TestSignValidates(t *testing.T) {
	k := newKeyring(t)
	long := strings.Repeat("a", 64)
	many := make([]string, MaxReaders+1)
	for i := range many {
		many[i] = fmt.Sprintf("f%d", i)
	}
	for name, edit := range map[string]func(*Ref){
		"no holder":           func(r *Ref) { r.Holder = "" },
		"long holder":         func(r *Ref) { r.Holder = long },
		"upper holder":        func(r *Ref) { r.Holder = "N1" },
		"dotted holder":       func(r *Ref) { r.Holder = "n1.local" },
		"negative size":       func(r *Ref) { r.Size = -1 },
		"zero expiry":         func(r *Ref) { r.Expires = time.Time{} },
		"expiry 1970":         func(r *Ref) { r.Expires = time.Unix(0, 0) },
		"expiry before 1970":  func(r *Ref) { r.Expires = time.Unix(-5, 0) },
		"expiry after 9999":   func(r *Ref) { r.Expires = time.Unix(maxExpires+1, 0) },
		"no readers":          func(r *Ref) { r.Readers = nil },
		"empty reader":        func(r *Ref) { r.Readers = []string{""} },
		"reader with digit":   func(r *Ref) { r.Readers = []string{"1a"} },
		"reader ends with -":  func(r *Ref) { r.Readers = []string{"a-"} },
		"long reader":         func(r *Ref) { r.Readers = []string{long} },
		"duplicate reader":    func(r *Ref) { r.Readers = []string{"a", "b", "a"} },
		"any among others":    func(r *Ref) { r.Readers = []string{"a", AnyReader} },
		"too many readers":    func(r *Ref) { r.Readers = many },
		"zero reads":          func(r *Ref) { r.Reads = 0 },
		"no issuer":           func(r *Ref) { r.Issuer = "" },
		"issuer is wildcard":  func(r *Ref) { r.Issuer = AnyReader },
		"issuer with capital": func(r *Ref) { r.Issuer = "Split" },
	} {
		r := sample()
		edit(&r)
		tok, err := k.Sign(r)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Sign = %q, %v; want ErrInvalid", name, tok, err)
		}
	}
}

// TestParseRefusesInvalidBodies signs bodies that break the field rules
// (as a buggy or foreign signer might) and checks that Parse and Verify
// refuse them as malformed.
func TestParseRefusesInvalidBodies(t *testing.T) {
	k := newKeyring(t)
	// Offsets with a two-byte holder: key 0, holder 4, buffer 7, size 23,
	// checksum 31, flags 35, expires 36, reads 44, issuer 48, readers 50.
	body := encodeBody(nil, Ref{KeyID: 1, Holder: "n1", Expires: now, Readers: []string{"a"}, Reads: 1, Issuer: "b"})
	for name, edit := range map[string]func([]byte) []byte{
		"trailing byte":  func(b []byte) []byte { return append(b, 0) },
		"truncated":      func(b []byte) []byte { return b[:len(b)-1] },
		"negative size":  func(b []byte) []byte { b[23] = 0x80; return b },
		"zero reads":     func(b []byte) []byte { b[44], b[45], b[46], b[47] = 0, 0, 0, 0; return b },
		"unknown flag":   func(b []byte) []byte { b[35] = 2; return b },
		"deferred sum":   func(b []byte) []byte { b[34], b[35] = 1, 1; return b },
		"33 readers":     func(b []byte) []byte { b[len(b)-3] = 33; return b },
		"upper holder":   func(b []byte) []byte { b[5] = 'N'; return b },
		"long holder":    func(b []byte) []byte { b[4] = 64; return b },
		"zero readers":   func(b []byte) []byte { return append(b[:len(b)-3], 0) },
		"huge expiry":    func(b []byte) []byte { b[36] = 0x7f; return b },
		"negative exp.":  func(b []byte) []byte { b[36] = 0xff; return b },
		"reader is any+": func(b []byte) []byte { return append(b[:len(b)-3], 2, 1, '*', 1, 'a') },
	} {
		bad := edit(bytes.Clone(body))
		tok := Prefix + b64.EncodeToString(appendTag(bad, secret1, bad))
		if r, err := Parse(tok); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, %v; want ErrMalformed", name, r, err)
		}
		if r, err := k.Verify(tok, now.Add(-time.Hour)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, %v; want ErrMalformed", name, r, err)
		}
	}
}

func TestReadCounterConcurrent(t *testing.T) {
	const allowed, goroutines, tries = 37, 16, 10
	var c ReadCounter
	buf := [16]byte{1}
	other := [16]byte{2}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, lefts = 0, map[uint32]bool{}
	)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < tries; i++ {
				left, err := c.Take(buf, allowed)
				if err != nil {
					if !errors.Is(err, ErrExhausted) {
						t.Errorf("Take: %v", err)
					}
					continue
				}
				mu.Lock()
				ok++
				if lefts[left] {
					t.Errorf("left %d returned twice", left)
				}
				lefts[left] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != allowed {
		t.Fatalf("%d reads succeeded, want exactly %d", ok, allowed)
	}
	if !lefts[0] || !lefts[allowed-1] {
		t.Fatalf("left values %v do not run from %d to 0", lefts, allowed-1)
	}
	if left, err := c.Take(other, 1); err != nil || left != 0 {
		t.Fatalf("another buffer: %d, %v", left, err)
	}
	_, err := c.Take(buf, allowed)
	wantErr(t, err, ErrExhausted)
	c.Forget(buf)
	if left, err := c.Take(buf, 2); err != nil || left != 1 {
		t.Fatalf("after Forget: %d, %v", left, err)
	}
	_, err = c.Take([16]byte{3}, 0)
	wantErr(t, err, ErrExhausted)
}

// TestKeyringConcurrent signs, verifies and rotates from many goroutines;
// run it with -race.
func TestKeyringConcurrent(t *testing.T) {
	k := newKeyring(t)
	if err := k.Add(2, secret2); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tok, err := k.Sign(sample())
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.Verify(tok, now); err != nil {
					t.Error(err)
					return
				}
				if err := k.Use(uint32(1 + i%2)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestShortestBody(t *testing.T) {
	r := Ref{Holder: "n", Expires: now, Readers: []string{AnyReader}, Reads: 1, Issuer: "a"}
	if n := len(encodeBody(nil, r)); n != minBody || n != bodyLen(r) || minBody != 52 {
		t.Fatalf("shortest body is %d bytes, minBody %d, doc.go says 52", n, minBody)
	}
}

func TestDeferredChecksum(t *testing.T) {
	k := newKeyring(t)
	r := sample()
	r.Checksum, r.Deferred = 0, true
	got, err := k.Verify(sign(t, k, r), now.Add(-time.Minute))
	if err != nil || !got.Deferred || got.Checksum != 0 {
		t.Fatalf("Verify = %+v, %v; want the deferred flag back", got, err)
	}
	if !strings.Contains(got.String(), "deferred") {
		t.Errorf("String() = %q does not say the checksum is deferred", got.String())
	}
	r.Checksum = 7
	if _, err := k.Sign(r); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Sign(deferred with a checksum) = %v; want ErrInvalid", err)
	}
}
