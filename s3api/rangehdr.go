package s3api

import (
	"strconv"
	"strings"

	"github.com/handoff-dev/handoff/store"
)

// parseRange parses an HTTP Range header for one byte range: "bytes=a-b",
// "bytes=a-" or "bytes=-n". ok is false when the header is malformed or
// names several ranges: as RFC 9110 allows and S3 does, such a header is
// ignored and the whole object is served. A well-formed range that misses
// the object is caught later, by store.Range.Resolve, as 416.
func parseRange(h string) (r store.Range, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return r, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return r, false
	}
	num := func(s string) (int64, bool) {
		if s == "" || len(s) > 19 {
			return 0, false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if first == "" {
		n, ok := num(last)
		if !ok || n == 0 {
			return r, false
		}
		return store.Range{Suffix: n}, true
	}
	a, ok := num(first)
	if !ok {
		return r, false
	}
	if last == "" {
		return store.Range{First: a, Last: -1}, true
	}
	b, ok := num(last)
	if !ok || b < a {
		return r, false
	}
	return store.Range{First: a, Last: b}, true
}
