package stream

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

func TestPartOfIsStable(t *testing.T) {
	// Every process and machine must agree; these values are the contract
	// (docs/stream-format.md). Changing them breaks mixed-version fan-outs.
	cases := []struct {
		key  string
		n    int
		want int
	}{
		{"", 8, 6},
		{"a", 8, 3},
		{"q", 8, 4},
		{"user-42", 10, 3},
		{"user-43", 10, 1},
		{"key", 1, 0},
		{"key", 1000003, 665245},
	}
	for _, c := range cases {
		if got := PartOf([]byte(c.key), c.n); got != c.want {
			t.Errorf("PartOf(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}

func TestPartOfSpreads(t *testing.T) {
	for _, n := range []int{2, 7, 8, 16, 100} {
		counts := make([]int, n)
		const keys = 200000
		for i := range keys {
			counts[PartOf(fmt.Appendf(nil, "key-%d", i), n)]++
		}
		mean := keys / n
		for part, c := range counts {
			if c < mean*9/10 || c > mean*11/10 {
				t.Errorf("n=%d: part %d got %d keys, mean %d", n, part, c, mean)
			}
		}
	}
	// Keys that differ only in their last byte, or only in the high bits
	// of a byte, must spread too.
	for _, keys := range [][]string{
		{"user-40", "user-41", "user-42", "user-43", "user-44", "user-45", "user-46", "user-47"},
		{"a", "q", "A", "Q", "!", "1", "\xa1", "\xe1"},
	} {
		seen := map[int]bool{}
		for _, k := range keys {
			seen[PartOf([]byte(k), 8)] = true
		}
		if len(seen) < 4 {
			t.Errorf("keys %q fell into %d of 8 parts", keys, len(seen))
		}
	}
}

func TestPartitioner(t *testing.T) {
	bufs := make([]bytes.Buffer, 3)
	parts := []io.Writer{&bufs[0], &bufs[1], &bufs[2]}

	p := NewPartitioner(parts, RoundRobin)
	for i := range 7 {
		p.WriteRecord([]byte("ignored"), fmt.Appendf(nil, "%d;", i))
	}
	if got := bufs[0].String() + "|" + bufs[1].String() + "|" + bufs[2].String(); got != "0;3;6;|1;4;|2;5;" {
		t.Fatalf("round robin spread %q", got)
	}

	for i := range bufs {
		bufs[i].Reset()
	}
	p = NewPartitioner(parts, Hash)
	for i := range 100 {
		key := fmt.Appendf(nil, "k%d", i%10)
		p.WriteRecord(key, append(key, ';'))
	}
	for i := range 10 {
		key := fmt.Appendf(nil, "k%d", i)
		rec := string(key) + ";"
		if n := bytes.Count(bufs[PartOf(key, 3)].Bytes(), []byte(rec)); n != 10 {
			t.Errorf("key %s: %d of 10 records in part %d", key, n, PartOf(key, 3))
		}
	}
}

func TestParsePartition(t *testing.T) {
	for _, p := range []Partition{Hash, RoundRobin} {
		if got, err := ParsePartition(p.String()); got != p || err != nil {
			t.Errorf("ParsePartition(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParsePartition("random"); err == nil {
		t.Error("ParsePartition(random) succeeded")
	}
}
