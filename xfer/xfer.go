// Package xfer names the ways Handoff moves data between functions and holds
// the one place where the mode of an edge is chosen.
//
// Every path that carries a payload (the gateway, the node agent's local API,
// the workflow runner) asks Choose; no other code decides a mode. The mechanisms
// themselves (references, streams, the store) plug in by registering as
// available in the Policy.
package xfer

import (
	"errors"
	"fmt"
)

// Mode is how one payload crosses one edge.
type Mode string

// The transfer modes. Inline is the payload in the request body; the others are
// the four mechanisms of the design brief.
const (
	Inline Mode = "inline"
	Ref    Mode = "ref"
	Stream Mode = "stream"
	Store  Mode = "store"
)

// Modes lists every mode in the order reports show them.
var Modes = []Mode{Inline, Ref, Stream, Store}

// DefaultInlineMax is the largest payload carried inline by default: the
// 6 MiB that AWS Lambda allows for a synchronous request.
const DefaultInlineMax = 6 << 20

// ErrTooLarge means a payload exceeds the inline limit and no other mode can
// carry it.
var ErrTooLarge = errors.New("xfer: payload exceeds the inline limit")

// Edge describes one hand-over of data, as far as it is known when the choice
// is made.
type Edge struct {
	From, To string // function names ("" for a client)
	Size     int64  // payload bytes; -1 when not known in advance (chunked)
	Pinned   Mode   // a mode the user pinned for this edge, or ""
}

// Policy decides modes. The zero value carries everything inline up to
// DefaultInlineMax.
type Policy struct {
	InlineMax int64         // 0 means DefaultInlineMax
	Available map[Mode]bool // mechanisms that are running; Inline always is
}

func (p Policy) inlineMax() int64 {
	if p.InlineMax > 0 {
		return p.InlineMax
	}
	return DefaultInlineMax
}

// Choose returns the mode for e and a short reason suitable for run summaries.
func (p Policy) Choose(e Edge) (Mode, string, error) {
	if e.Pinned != "" && e.Pinned != Inline {
		if !p.Available[e.Pinned] {
			return "", "", fmt.Errorf("xfer: edge %s→%s is pinned to mode %q, which this platform does not run yet; pin %q or remove the pin", name(e.From), name(e.To), e.Pinned, Inline)
		}
		return e.Pinned, "pinned", nil
	}
	max := p.inlineMax()
	if e.Size < 0 && e.Pinned == "" && p.Available[Ref] {
		// A body of unknown length that the sender did not finish within
		// a peek (see the node agent) is buffered and passed by reference.
		return Ref, "length not known in advance", nil
	}
	if e.Size <= max {
		return Inline, fmt.Sprintf("%d B fits the inline limit %d B", e.Size, max), nil
	}
	if e.Pinned == "" && p.Available[Ref] {
		return Ref, "larger than the inline limit", nil
	}
	return "", "", fmt.Errorf("%w: payload of %s for %s exceeds the inline limit %s; raise --inline-max or send it by reference", ErrTooLarge, Human(e.Size), name(e.To), Human(max))
}

func name(fn string) string {
	if fn == "" {
		return "client"
	}
	return fn
}

// Human formats a byte count as "6 MiB", "1.5 GiB" or "512 B".
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	if v == float64(int64(v)) {
		s = fmt.Sprintf("%d", int64(v))
	}
	return s + " " + string("KMGTPE"[exp]) + "iB"
}
