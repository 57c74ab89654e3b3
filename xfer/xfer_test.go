package xfer

import (
	"errors"
	"strings"
	"testing"
)

func TestChooseInlineUpToLimit(t *testing.T) {
	p := Policy{InlineMax: 1024}
	m, _, err := p.Choose(Edge{To: "count", Size: 1024})
	if err != nil || m != Inline {
		t.Fatalf("Choose(1024) = %q, %v; want inline", m, err)
	}
	_, _, err = p.Choose(Edge{To: "count", Size: 1025})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Choose(1025) err = %v; want ErrTooLarge", err)
	}
	for _, want := range []string{"count", "1 KiB", "--inline-max"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestChooseRefWhenAvailable(t *testing.T) {
	p := Policy{InlineMax: 10, Available: map[Mode]bool{Ref: true}}
	if m, _, err := p.Choose(Edge{Size: 11}); err != nil || m != Ref {
		t.Fatalf("Choose = %q, %v; want ref", m, err)
	}
}

func TestChoosePinnedUnavailable(t *testing.T) {
	if _, _, err := (Policy{}).Choose(Edge{From: "a", To: "b", Pinned: Stream}); err == nil {
		t.Fatal("pinning an unavailable mode succeeded")
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1024: "1 KiB", 6 << 20: "6 MiB", 3 << 29: "1.5 GiB"} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q; want %q", n, got, want)
		}
	}
}

func TestChooseRefForUnknownLength(t *testing.T) {
	p := Policy{InlineMax: 10, Available: map[Mode]bool{Ref: true}}
	if m, _, err := p.Choose(Edge{Size: -1}); err != nil || m != Ref {
		t.Fatalf("Choose(unknown) = %q, %v; want ref", m, err)
	}
	if m, _, err := (Policy{InlineMax: 10}).Choose(Edge{Size: -1}); err != nil || m != Inline {
		t.Fatalf("Choose(unknown) without ref = %q, %v; want inline (streamed)", m, err)
	}
}

func TestChooseEdge(t *testing.T) {
	all := Policy{Available: map[Mode]bool{Ref: true, Stream: true}}
	refOnly := Policy{Available: map[Mode]bool{Ref: true}}
	streamOnly := Policy{Available: map[Mode]bool{Stream: true}}
	tests := []struct {
		name   string
		p      Policy
		e      EdgeFacts
		want   Mode
		reason string
	}{
		{"hint fits inline", all, EdgeFacts{SizeHint: 8 << 10, Overlap: true}, Inline, "8 KiB hint fits the inline limit 6 MiB"},
		{"hint at the limit", all, EdgeFacts{SizeHint: 6 << 20}, Inline, "6 MiB hint fits"},
		{"overlap streams", all, EdgeFacts{Overlap: true}, Stream, "producer and consumer overlap"},
		{"large overlap streams", all, EdgeFacts{Overlap: true, SizeHint: 1 << 30}, Stream, "streamed through fixed buffers"},
		{"no overlap buffers by ref", all, EdgeFacts{}, Ref, "consumer needs its whole input first"},
		{"no overlap without ref streams", streamOnly, EdgeFacts{}, Stream, "ref not running"},
		{"overlap without stream: ref", refOnly, EdgeFacts{Overlap: true}, Ref, "stream not running"},
		{"nothing running: inline", Policy{}, EdgeFacts{Overlap: true}, Inline, "inline up to the limit 6 MiB"},
		{"pinned and running", all, EdgeFacts{Pinned: Ref, Overlap: true}, Ref, "pinned"},
		{"pinned inline over a small hint", all, EdgeFacts{Pinned: Inline, SizeHint: 1 << 20}, Inline, "pinned"},
		{"pin beats the hint", all, EdgeFacts{Pinned: Stream, SizeHint: 1}, Stream, "pinned"},
	}
	for _, tt := range tests {
		m, reason, err := tt.p.ChooseEdge(tt.e)
		if err != nil || m != tt.want || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: ChooseEdge = %q, %q, %v; want %q, %q", tt.name, m, reason, err, tt.want, tt.reason)
		}
	}
}

func TestChooseEdgeErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		e    EdgeFacts
		is   error
		says []string
	}{
		{"pinned store", Policy{Available: map[Mode]bool{Ref: true, Stream: true}},
			EdgeFacts{From: "gen.out", To: "count.in", Pinned: Store}, ErrNotRunning,
			[]string{"gen.out→count.in", `"store"`, "remove the pin"}},
		{"pinned inline over the limit", Policy{InlineMax: 1 << 20},
			EdgeFacts{From: "a.out", To: "b.in", Pinned: Inline, SizeHint: 2 << 20}, ErrTooLarge,
			[]string{"a.out→b.in", "2 MiB", "1 MiB", "pinned inline"}},
		{"too large for inline alone", Policy{},
			EdgeFacts{From: "a.out", To: "b.in", Overlap: true, SizeHint: 1 << 30}, ErrTooLarge,
			[]string{"a.out→b.in", "1 GiB", "6 MiB", "--inline-max"}},
	}
	for _, tt := range tests {
		_, _, err := tt.p.ChooseEdge(tt.e)
		if !errors.Is(err, tt.is) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.is)
			continue
		}
		for _, s := range tt.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tt.name, err, s)
			}
		}
	}
}

func TestChoosePinnedUnavailableWraps(t *testing.T) {
	_, _, err := (Policy{}).Choose(Edge{From: "a", To: "b", Pinned: Stream})
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "a→b") {
		t.Fatalf("err = %v; want ErrNotRunning naming a→b", err)
	}
}
