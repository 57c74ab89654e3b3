package bench

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of lat by the
// nearest-rank method, or 0 when lat is empty. lat need not be sorted and is
// not modified.
func Percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) time.Duration {
	switch {
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Summarize turns the latencies of one series at one size into a Point.
func Summarize(series string, size int64, lat []time.Duration) Point {
	p := Point{Series: series, Size: size, N: len(lat)}
	if len(lat) == 0 {
		return p
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	p.P50 = percentileSorted(s, 50)
	p.P99 = percentileSorted(s, 99)
	p.Mean = total / time.Duration(len(s))
	if p.Mean > 0 {
		p.Throughput = float64(size) / p.Mean.Seconds()
	}
	return p
}

// Ratio returns how many times a's median latency is b's: with b the
// baseline, 0.25 means a takes a quarter of the baseline's time (4× faster)
// and 3 means it takes three times as long. It returns NaN when b has no
// latency.
func Ratio(a, b Point) float64 {
	if b.P50 <= 0 {
		return math.NaN()
	}
	return float64(a.P50) / float64(b.P50)
}

// Speedup returns b's median latency over a's: with b the baseline, 4 means
// a is four times as fast. It is 1/Ratio(a, b).
func Speedup(a, b Point) float64 {
	if a.P50 <= 0 {
		return math.NaN()
	}
	return float64(b.P50) / float64(a.P50)
}

// Lookup returns the point of series at size in r.
func (r Result) Lookup(series string, size int64) (Point, bool) {
	for _, p := range r.Points {
		if p.Series == series && p.Size == size {
			return p, true
		}
	}
	return Point{}, false
}

// Series returns the series names in r in order of first appearance.
func (r Result) Series() []string {
	var names []string
	for _, p := range r.Points {
		if !slices.Contains(names, p.Series) {
			names = append(names, p.Series)
		}
	}
	return names
}

// Sizes returns the distinct payload sizes in r, ascending.
func (r Result) Sizes() []int64 {
	var sizes []int64
	for _, p := range r.Points {
		if !slices.Contains(sizes, p.Size) {
			sizes = append(sizes, p.Size)
		}
	}
	slices.Sort(sizes)
	return sizes
}

// HostInfo describes this machine: cpus, Go version, OS and architecture,
// kernel release and total memory (the last two where /proc has them).
func HostInfo() map[string]string {
	h := map[string]string{
		"cpus":       strconv.Itoa(runtime.NumCPU()),
		"gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0)),
		"go":         runtime.Version(),
		"os":         runtime.GOOS + "/" + runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				h["memory"] = strings.TrimSpace(rest)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				h["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return h
}

// FormatSize formats a byte count with a binary unit: "64 KiB", "1 GiB",
// "1.5 MiB", "100 B".
func FormatSize(n int64) string {
	units := []struct {
		v    int64
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}}
	for _, u := range units {
		if n >= u.v {
			if n%u.v == 0 {
				return fmt.Sprintf("%d %s", n/u.v, u.name)
			}
			return fmt.Sprintf("%.3g %s", float64(n)/float64(u.v), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// FormatDuration formats d with three significant digits: "62.1µs",
// "1.05ms", "2.50s".
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		return sig3(d.Seconds()) + "s"
	}
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// FormatThroughput formats bytes per second in decimal units: "4.71 GB/s".
func FormatThroughput(bps float64) string {
	switch {
	case bps >= 1e9:
		return sig3(bps/1e9) + " GB/s"
	case bps >= 1e6:
		return sig3(bps/1e6) + " MB/s"
	case bps >= 1e3:
		return sig3(bps/1e3) + " kB/s"
	default:
		return sig3(bps) + " B/s"
	}
}
