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
