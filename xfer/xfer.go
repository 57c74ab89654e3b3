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

// ErrNotRunning means an edge is pinned to a mode that this platform does not
// run (yet): its mechanism is not in Policy.Available.
var ErrNotRunning = errors.New("xfer: pinned mode not running")

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
			return "", "", notRunning(name(e.From), name(e.To), e.Pinned)
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

// notRunning is the error for an edge pinned to a mode that is not running.
func notRunning(from, to string, m Mode) error {
	return fmt.Errorf("%w: edge %s→%s is pinned to mode %q, which this platform does not run yet; pin %q or remove the pin", ErrNotRunning, from, to, m, Inline)
}

// EdgeFacts describes one edge of a workflow (a producer stage's port feeding
// a consumer stage's port through channels) as the workflow runner knows it
// before any byte moves. Every channel of the edge gets the same mode.
type EdgeFacts struct {
	From, To string // producer and consumer, as "stage.port"
	Pattern  string // pipe, broadcast, partition, merge or shuffle
	Overlap  bool   // the consumer consumes while the producer produces
	SizeHint int64  // bytes one channel carries; 0 when not known
	Pinned   Mode   // a mode the user pinned for this edge, or ""
}

// ChooseEdge returns the mode for every channel of a workflow edge and a
// short reason for the run summary. The rules, in order:
//
//   - A pinned mode wins when it runs; a pin to a mode that does not wraps
//     ErrNotRunning (as in Choose), and a pin to inline with a size hint over
//     the inline limit wraps ErrTooLarge.
//   - A size hint that fits the inline limit: inline.
//   - A consumer that needs its whole input before it produces (Overlap
//     false): ref, so the producer writes at full speed into a buffer and
//     is not held back by a consumer that is not reading yet.
//   - Otherwise stream: producer and consumer run at once through fixed
//     buffers, and nothing is held whole in memory.
//   - Without stream, ref; without both, inline, which refuses a size hint
//     over the limit with ErrTooLarge.
//
// The pattern does not change the choice today; it is part of the facts so
// that rules that depend on it (the store for broadcasts to many readers)
// can be added here without changing callers.
func (p Policy) ChooseEdge(e EdgeFacts) (Mode, string, error) {
	max := p.inlineMax()
	switch {
	case e.Pinned == Inline && e.SizeHint > max:
		return "", "", fmt.Errorf("%w: edge %s→%s is pinned inline but its size hint %s exceeds the inline limit %s; pin another mode, remove the pin or raise --inline-max", ErrTooLarge, e.From, e.To, Human(e.SizeHint), Human(max))
	case e.Pinned == Inline:
		return Inline, "pinned", nil
	case e.Pinned != "" && !p.Available[e.Pinned]:
		return "", "", notRunning(e.From, e.To, e.Pinned)
	case e.Pinned != "":
		return e.Pinned, "pinned", nil
	}
	if e.SizeHint > 0 && e.SizeHint <= max {
		return Inline, fmt.Sprintf("%s hint fits the inline limit %s", Human(e.SizeHint), Human(max)), nil
	}
	if !e.Overlap && p.Available[Ref] {
		return Ref, "consumer needs its whole input first: buffered by reference so the producer is not held back", nil
	}
	if p.Available[Stream] {
		if !e.Overlap {
			return Stream, "consumer needs its whole input first, ref not running: streamed through fixed buffers", nil
		}
		return Stream, "producer and consumer overlap: streamed through fixed buffers", nil
	}
	if p.Available[Ref] {
		return Ref, "stream not running: buffered by reference", nil
	}
	if e.SizeHint > max {
		return "", "", fmt.Errorf("%w: edge %s→%s carries about %s (its size hint), over the inline limit %s, and neither stream nor ref runs here; raise --inline-max or run the stream or ref mechanism", ErrTooLarge, e.From, e.To, Human(e.SizeHint), Human(max))
	}
	return Inline, fmt.Sprintf("stream and ref not running: inline up to the limit %s", Human(max)), nil
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
