package report

import (
	"fmt"
	"math"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/handoff-dev/handoff/bench"
)

// WritePNG plots the median latency of every series in r against payload
// size on log-log axes, one line with markers per series and a legend, and
// writes the plot as a PNG image to path.
func WritePNG(path string, r bench.Result, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "payload size"
	p.Y.Label.Text = "median latency (p50)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = sizeTicks(r.Sizes())
	p.Y.Tick.Marker = plot.TickerFunc(durationTicks)
	p.Add(plotter.NewGrid())
	// Latency grows with size, so the bottom right is the empty corner.
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(-8), vg.Points(8)

	n := 0
	for i, s := range r.Series() {
		var xys plotter.XYs
		for _, size := range r.Sizes() {
			pt, ok := r.Lookup(s, size)
			if !ok || pt.P50 <= 0 || size <= 0 {
				continue
			}
			xys = append(xys, plotter.XY{X: float64(size), Y: pt.P50.Seconds()})
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("report: plot %s: %w", s, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		points.Radius = vg.Points(3)
		p.Add(line, points)
		p.Legend.Add(s, line, points)
		n++
	}
	if n == 0 {
		return fmt.Errorf("report: plot %q: no points with a latency to plot", title)
	}
	// Margins on both axes keep the end labels and markers whole.
	p.X.Min, p.X.Max = p.X.Min/1.5, p.X.Max*1.5
	p.Y.Min, p.Y.Max = p.Y.Min/1.5, p.Y.Max*1.5
	wt, err := p.WriterTo(9*vg.Inch, 6*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("report: plot %q: %w", title, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// sizeTicks labels the measured sizes ("1K", "64K", "1G").
func sizeTicks(sizes []int64) plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ts []plot.Tick
		for _, s := range sizes {
			if v := float64(s); v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: shortSize(s)})
			}
		}
		return ts
	})
}

func shortSize(n int64) string {
	s := strings.ReplaceAll(bench.FormatSize(n), " ", "")
	return strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B")
}

// durationTicks puts a labelled tick at every power of ten seconds in
// [lo, hi] and unlabelled ones at its multiples 2 to 9.
func durationTicks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		dec := math.Pow(10, e)
		for m := 1.0; m < 10; m++ {
			v := m * dec
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = secondsLabel(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

func secondsLabel(v float64) string {
	switch {
	case v >= 1:
		return fmt.Sprintf("%gs", v)
	case v >= 1e-3:
		return fmt.Sprintf("%gms", math.Round(v*1e3*1000)/1000)
	case v >= 1e-6:
		return fmt.Sprintf("%gµs", math.Round(v*1e6*1000)/1000)
	default:
		return fmt.Sprintf("%gns", math.Round(v*1e9))
	}
}
