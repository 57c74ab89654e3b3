package report

import (
	"fmt"
	"io"
	"strings"
)

// A Bar is one target a benchmark is held to, judged on figures measured
// in the same run as its baseline: "at least 80 % of loopback TCP's
// throughput", not "at least 2 GB/s".
type Bar struct {
	// Bar says what is held to what, e.g. "cross node, 64 MiB-1 GiB:
	// throughput ≥ 0.8× tcp".
	Bar string `json:"bar"`
	// Series is the measured series, Baseline the one it is judged
	// against ("" for an absolute bar).
	Series   string `json:"series"`
	Baseline string `json:"baseline,omitempty"`
	// Measured gives the figures the verdict rests on, per size.
	Measured string `json:"measured"`
	// Worst is the figure of the worst size, in the bar's own unit (a
	// ratio, or milliseconds for an absolute bar), and Want the bar.
	Worst float64 `json:"worst"`
	Want  float64 `json:"want"`
	// Met reports whether the worst size meets the bar.
	Met bool `json:"met"`
}

// Verdict is "met" or "not met", with the worst figure against the bar.
func (b Bar) Verdict() string {
	if b.Met {
		return fmt.Sprintf("met (worst %s, bar %s)", formatFigure(b.Worst), formatFigure(b.Want))
	}
	return fmt.Sprintf("**not met** (worst %s, bar %s)", formatFigure(b.Worst), formatFigure(b.Want))
}

func formatFigure(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	case x >= 0.01:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.2g", x)
	}
}

// WriteBars writes bars as a Markdown table: bar, series, baseline, the
// measured figures and the verdict.
func WriteBars(w io.Writer, bars []Bar) error {
	var b strings.Builder
	row(&b, []string{"bar", "series", "against", "measured", "verdict"})
	row(&b, []string{"---", "---", "---", "---", "---"})
	for _, x := range bars {
		base := x.Baseline
		if base == "" {
			base = "—"
		}
		row(&b, []string{x.Bar, x.Series, base, x.Measured, x.Verdict()})
	}
	_, err := io.WriteString(w, b.String())
	return err
}
