package buffer

import (
	"errors"
	"strings"
	"testing"
)

func TestID(t *testing.T) {
	id := ID{0xde, 0xad, 0xbe, 0xef, 15: 0x01}
	if s := id.String(); s != "deadbeef000000000000000000000001" {
		t.Fatalf("String = %q", s)
	}
	for _, s := range []string{"deadbeef000000000000000000000001", "DEADBEEF000000000000000000000001"} {
		if got, err := ParseID(s); err != nil || got != id {
			t.Fatalf("ParseID(%q) = %v, %v; want %v", s, got, err, id)
		}
	}
	for _, bad := range []string{"", "deadbeef", "deadbeef0000000000000000000000010", "xxadbeef000000000000000000000001", strings.Repeat("a", 1<<20)} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseID(%.40q) = %v; want ErrInvalid", bad, err)
		} else if len(err.Error()) > 200 {
			t.Errorf("ParseID error is %d bytes long; it must not echo its input whole", len(err.Error()))
		}
	}
	seen := map[ID]bool{}
	for range 1000 {
		id := newID()
		if id.IsZero() || seen[id] {
			t.Fatalf("newID returned %v twice or zero", id)
		}
		seen[id] = true
	}
}

// FuzzParseID checks that ParseID accepts exactly what String can write
// (in either case) and round-trips it.
func FuzzParseID(f *testing.F) {
	f.Add("deadbeef000000000000000000000001")
	f.Add("DEADBEEF00000000000000000000000g")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseID(%q) = %v; want ErrInvalid", s, err)
			}
			return
		}
		if got := id.String(); got != strings.ToLower(s) {
			t.Fatalf("ParseID(%q).String() = %q", s, got)
		}
	})
}
