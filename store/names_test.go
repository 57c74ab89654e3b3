package store

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckBucketName(t *testing.T) {
	for _, ok := range []string{"abc", "my-bucket.2026", strings.Repeat("a", 63), "1.2.3.x"} {
		if err := CheckBucketName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"ab", strings.Repeat("a", 64), "Abc", "a_b", "-ab", "ab-", ".ab", "a..b", "a.-b", "a-.b", "10.0.0.1", "a b", "ünï"} {
		err := CheckBucketName(bad)
		if !errors.Is(err, ErrInvalidBucketName) || !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, ok := range []string{"a", "dir/sub/file.txt", "sp ace", "ünï/🙂", strings.Repeat("k", MaxKeyLen), "//"} {
		if err := CheckKey(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("k", MaxKeyLen+1), "\xff\xfe"} {
		if err := CheckKey(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"abc", "a..b", "10.0.0.1", "ünï", "dir/k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckBucketName(s) == nil {
			// A valid bucket name is a valid DNS label sequence, so
			// virtual-host addressing works for it.
			if len(s) < 3 || len(s) > 63 || strings.ToLower(s) != s || strings.Contains(s, "..") || !utf8.ValidString(s) {
				t.Fatalf("accepted bucket name %q", s)
			}
		}
		if CheckKey(s) == nil && (s == "" || len(s) > MaxKeyLen || !utf8.ValidString(s)) {
			t.Fatalf("accepted key %q", s)
		}
	})
}

func TestRangeResolve(t *testing.T) {
	cases := []struct {
		r       Range
		size    int64
		off, n  int64
		invalid bool
	}{
		{Range{First: 0, Last: 9}, 100, 0, 10, false},
		{Range{First: 90, Last: 200}, 100, 90, 10, false},
		{Range{First: 5, Last: -1}, 100, 5, 95, false},
		{Range{Suffix: 10}, 100, 90, 10, false},
		{Range{Suffix: 1000}, 100, 0, 100, false},
		{Range{First: 100, Last: -1}, 100, 0, 0, true},
		{Range{First: 0, Last: 0}, 0, 0, 0, true},
		{Range{Suffix: 1}, 0, 0, 0, true},
		{Range{First: 9, Last: 3}, 100, 0, 0, true},
	}
	for _, c := range cases {
		off, n, err := c.r.Resolve(c.size)
		if c.invalid != errors.Is(err, ErrInvalidRange) || (!c.invalid && (off != c.off || n != c.n)) {
			t.Errorf("%+v on %d: %d %d %v", c.r, c.size, off, n, err)
		}
	}
}
