// Package report writes a [bench.Result] as JSON, as Markdown tables and as
// a PNG plot of latency against payload size.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/handoff-dev/handoff/bench"
)

// WriteJSON writes r as indented JSON. Durations are in nanoseconds.
func WriteJSON(w io.Writer, r bench.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// ReadJSON reads a Result written by WriteJSON.
func ReadJSON(rd io.Reader) (bench.Result, error) {
	var r bench.Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return r, fmt.Errorf("report: %w", err)
	}
	return r, nil
}

// WriteMarkdown writes r as a heading, the host description, a table with a
// row per payload size and a column per series whose cells read
// "p50 / MB/s", and r's notes.
func WriteMarkdown(w io.Writer, r bench.Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", r.Name)
	if !r.Started.IsZero() {
		fmt.Fprintf(&b, "Started %s", r.Started.Format("2006-01-02 15:04:05 MST"))
	}
	if len(r.Host) > 0 {
		keys := make([]string, 0, len(r.Host))
		for k := range r.Host {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " " + r.Host[k]
		}
		fmt.Fprintf(&b, " on %s", strings.Join(parts, ", "))
	}
	b.WriteString(".\n\n")
	table(&b, r, r.Series())
	b.WriteString("\nCells: median latency / MB/s (size over mean latency).\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTable writes the table of WriteMarkdown for the given series only,
// with a row per payload size at which one of them has a point.
func WriteTable(w io.Writer, r bench.Result, series ...string) error {
	var b strings.Builder
	table(&b, r, series)
	_, err := io.WriteString(w, b.String())
	return err
}

// table writes a row per size at which one of series has a point, a
// column per series, cells "p50 / MB/s".
func table(b *strings.Builder, r bench.Result, series []string) {
	row(b, append([]string{"size"}, series...))
	row(b, append([]string{"---:"}, repeat("---:", len(series))...))
	for _, size := range r.Sizes() {
		cells := []string{bench.FormatSize(size)}
		some := false
		for _, s := range series {
			p, ok := r.Lookup(s, size)
			if !ok || p.N == 0 {
				cells = append(cells, "")
				continue
			}
			some = true
			cells = append(cells, fmt.Sprintf("%s / %s", bench.FormatDuration(p.P50), mbps(p.Throughput)))
		}
		if some {
			row(b, cells)
		}
	}
}

// WriteRatios writes a table with a row per payload size and a column per
// series in series (all but the baseline when empty), whose cells are each
// point's median latency as a multiple of the baseline series' at the same
// size (bench.Ratio): "0.25×" is four times as fast as the baseline.
func WriteRatios(w io.Writer, r bench.Result, baseline string, series ...string) error {
	if !slices.Contains(r.Series(), baseline) {
		return fmt.Errorf("report: baseline series %q is not in the result (have %s)", baseline, strings.Join(r.Series(), ", "))
	}
	if len(series) == 0 {
		for _, s := range r.Series() {
			if s != baseline {
				series = append(series, s)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Median latency as a multiple of %s's (lower is faster):\n\n", baseline)
	row(&b, append([]string{"size"}, series...))
	row(&b, append([]string{"---:"}, repeat("---:", len(series))...))
	for _, size := range r.Sizes() {
		base, ok := r.Lookup(baseline, size)
		if !ok {
			continue
		}
		cells := []string{bench.FormatSize(size)}
		for _, s := range series {
			p, ok := r.Lookup(s, size)
			x := bench.Ratio(p, base)
			if !ok || p.N == 0 || math.IsNaN(x) {
				cells = append(cells, "")
				continue
			}
			cells = append(cells, FormatRatio(x))
		}
		row(&b, cells)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatRatio writes a ratio with as many digits as its size deserves:
// "182×", "11.0×", "1.22×", "0.0031×".
func FormatRatio(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	case x >= 0.01:
		return fmt.Sprintf("%.2f×", x)
	default:
		return fmt.Sprintf("%.2g×", x)
	}
}

func mbps(bps float64) string {
	v := bps / 1e6
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func row(b *strings.Builder, cells []string) {
	b.WriteString("| ")
	b.WriteString(strings.Join(cells, " | "))
	b.WriteString(" |\n")
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
