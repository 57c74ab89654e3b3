package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"time"
)

// Size units.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// ErrMismatch reports that a transfer returned bytes that differ from the
// payload it was given: a wrong length, a wrong checksum, or the payload slice
// itself instead of the consumer's copy.
var ErrMismatch = errors.New("bench: transfer returned different bytes than it was given")

// A Transfer hands one payload from a producer to a consumer and returns the
// bytes the consumer got, for example SET then GET through Redis.
//
// Transfer must not return payload itself (nor a slice aliasing it): the
// consumer's bytes must be its own. The returned slice may be reused by the
// next call. Transfers are called from one goroutine at a time.
type Transfer interface {
	// Name is the series name in reports, e.g. "tcp" or "redis".
	Name() string
	// Transfer moves payload to the consumer and returns what it received.
	Transfer(ctx context.Context, payload []byte) ([]byte, error)
	// Close releases the transfer's connections and servers.
	Close() error
}

// A Cleaner is a Transfer with cleanup to do after each call, such as
// deleting the key or object it stored. RunTransfers calls Cleanup after each
// Transfer and its verification, outside the timed section, so that the
// figures measure the handoff and not the housekeeping.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// Sample is the raw latencies of one series at one payload size.
type Sample struct {
	Series    string
	Size      int64
	Latencies []time.Duration
}

// Point summarizes one series at one payload size.
type Point struct {
	Series string `json:"series"`
	// Size is the payload size in bytes.
	Size int64 `json:"size"`
	// N is the number of measured iterations (warm-up excluded).
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Mean time.Duration `json:"mean_ns"`
	// Throughput is Size divided by Mean, in bytes per second.
	Throughput float64 `json:"throughput_bps"`
}

// Result is one benchmark run.
type Result struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	// Host describes the machine: cpus, go version, kernel, memory.
	Host   map[string]string `json:"host"`
	Points []Point           `json:"points"`
	Notes  []string          `json:"notes,omitempty"`
}

// Options control [RunTransfers]. Zero fields take the defaults named below.
type Options struct {
	// Sizes are the payload sizes in bytes; default DefaultSizes().
	Sizes []int64
	// MinIters is the least number of measured iterations per series and
	// size, even past Budget; default 3.
	MinIters int
	// MaxIters caps the measured iterations per series and size; default 1000.
	MaxIters int
	// Budget is the measuring time per series per size; default 2s.
	Budget time.Duration
	// Progress, if not nil, gets one line per (size, series).
	Progress io.Writer
	// Name names the Result; default "transfers".
	Name string
}

func (o Options) withDefaults() Options {
	if len(o.Sizes) == 0 {
		o.Sizes = DefaultSizes()
	}
	if o.MinIters <= 0 {
		o.MinIters = 3
	}
	if o.MaxIters <= 0 {
		o.MaxIters = 1000
	}
	if o.MaxIters < o.MinIters {
		o.MaxIters = o.MinIters
	}
	if o.Budget <= 0 {
		o.Budget = 2 * time.Second
	}
	if o.Name == "" {
		o.Name = "transfers"
	}
	return o
}

// DefaultSizes returns the payload sizes of a full run: 1 KiB, 64 KiB, 1 MiB,
// 16 MiB, 64 MiB, 256 MiB and 1 GiB.
func DefaultSizes() []int64 {
	return []int64{KiB, 64 * KiB, MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB}
}

// NewResult returns an empty Result named name, stamped with the current time
// and this host's description.
func NewResult(name string) Result {
	return Result{Name: name, Started: time.Now().UTC(), Host: HostInfo()}
}

// RunTransfers measures every transfer at every size.
//
// For each size it makes one random payload and its checksum, warms every
// transfer up once, then runs rounds in which each unfinished transfer does
// one iteration, so that the series are interleaved and machine noise hits
// them alike. A series is finished at a size when it has done MaxIters
// iterations, or has spent Budget measuring and done at least MinIters.
// Every returned byte slice is checked against the payload (length and
// CRC-32C, outside the timed section); a mismatch fails the run with an error
// wrapping [ErrMismatch] that names the series and size. A transfer that is a
// [Cleaner] is cleaned up after every call, also outside the timed section.
//
// On error RunTransfers returns the points measured so far with the error.
// The caller still owns ts and must Close them.
func RunTransfers(ctx context.Context, opts Options, ts []Transfer) (Result, error) {
	opts = opts.withDefaults()
	res := NewResult(opts.Name)
	if len(ts) == 0 {
		return res, errors.New("bench: no transfers to run")
	}
	rng := rand.NewChaCha8([32]byte{'h', 'a', 'n', 'd', 'o', 'f', 'f'})
	for _, size := range opts.Sizes {
		if size <= 0 {
			return res, fmt.Errorf("bench: payload size %d is not positive", size)
		}
		points, err := runSize(ctx, opts, ts, size, rng)
		res.Points = append(res.Points, points...)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// series is the measuring state of one transfer at one size.
type series struct {
	t     Transfer
	lat   []time.Duration
	spent time.Duration
	done  bool
}

func runSize(ctx context.Context, opts Options, ts []Transfer, size int64, rng *rand.ChaCha8) ([]Point, error) {
	// Start each size from a collected heap so that garbage left by the
	// previous size is not charged to this one.
	runtime.GC()
	payload := make([]byte, size)
	_, _ = rng.Read(payload)
	sum := crc32.Checksum(payload, castagnoli)

	ss := make([]*series, len(ts))
	for i, t := range ts {
		ss[i] = &series{t: t, lat: make([]time.Duration, 0, min(opts.MaxIters, 1024))}
		if err := once(ctx, t, payload, sum, size); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for left := len(ss); left > 0; {
		for _, s := range ss {
			if s.done {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("bench: %s at %s: %w", s.t.Name(), FormatSize(size), err)
			}
			start := time.Now()
			got, err := s.t.Transfer(ctx, payload)
			d := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("bench: %s at %s: %w", s.t.Name(), FormatSize(size), err)
			}
			if err := verify(got, payload, sum); err != nil {
				return nil, fmt.Errorf("bench: %s at %s: %w", s.t.Name(), FormatSize(size), err)
			}
			if err := cleanup(ctx, s.t); err != nil {
				return nil, fmt.Errorf("bench: %s at %s: %w", s.t.Name(), FormatSize(size), err)
			}
			s.lat = append(s.lat, d)
			s.spent += d
			n := len(s.lat)
			if n >= opts.MaxIters || (n >= opts.MinIters && s.spent >= opts.Budget) {
				s.done = true
				left--
			}
		}
	}
	points := make([]Point, len(ss))
	for i, s := range ss {
		points[i] = Summarize(s.t.Name(), size, s.lat)
		if opts.Progress != nil {
			p := points[i]
			fmt.Fprintf(opts.Progress, "%-8s %-14s n=%-5d p50=%-10s p99=%-10s %s\n",
				FormatSize(size), p.Series, p.N, FormatDuration(p.P50), FormatDuration(p.P99), FormatThroughput(p.Throughput))
		}
	}
	return points, nil
}

func once(ctx context.Context, t Transfer, payload []byte, sum uint32, size int64) error {
	got, err := t.Transfer(ctx, payload)
	if err != nil {
		return fmt.Errorf("bench: %s at %s: %w", t.Name(), FormatSize(size), err)
	}
	if err := verify(got, payload, sum); err != nil {
		return fmt.Errorf("bench: %s at %s: %w", t.Name(), FormatSize(size), err)
	}
	if err := cleanup(ctx, t); err != nil {
		return fmt.Errorf("bench: %s at %s: %w", t.Name(), FormatSize(size), err)
	}
	return nil
}

func cleanup(ctx context.Context, t Transfer) error {
	if c, ok := t.(Cleaner); ok {
		if err := c.Cleanup(ctx); err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verify checks that got holds the payload's bytes in memory of its own.
func verify(got, payload []byte, sum uint32) error {
	if len(got) != len(payload) {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrMismatch, len(got), len(payload))
	}
	if len(got) > 0 && &got[0] == &payload[0] {
		return fmt.Errorf("%w: returned the payload slice itself, not the consumer's copy", ErrMismatch)
	}
	if c := crc32.Checksum(got, castagnoli); c != sum {
		return fmt.Errorf("%w: checksum %08x, want %08x", ErrMismatch, c, sum)
	}
	return nil
}
