package autoscale

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Config{Target: 10, Max: 5}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"min equals max", func(c *Config) { c.Min, c.Max = 5, 5 }, nil},
		{"fractional target", func(c *Config) { c.Target = 0.5 }, nil},
		{"zero target", func(c *Config) { c.Target = 0 }, []string{"target 0"}},
		{"negative target", func(c *Config) { c.Target = -1 }, []string{"target -1"}},
		{"NaN target", func(c *Config) { c.Target = math.NaN() }, []string{"target NaN"}},
		{"infinite target", func(c *Config) { c.Target = math.Inf(1) }, []string{"target +Inf"}},
		{"zero max", func(c *Config) { c.Max = 0 }, []string{"max 0 must be at least 1"}},
		{"negative min", func(c *Config) { c.Min = -1 }, []string{"min -1 must not be negative"}},
		{"min above max", func(c *Config) { c.Min = 6 }, []string{"min 6 exceeds max 5"}},
		{"short stable window", func(c *Config) { c.StableWindow, c.PanicWindow = 500*time.Millisecond, 500*time.Millisecond },
			[]string{"stable window 500ms", "panic window 500ms"}},
		{"short stable window, default panic window", func(c *Config) { c.StableWindow = 500 * time.Millisecond },
			[]string{"stable window 500ms"}},
		{"long stable window", func(c *Config) { c.StableWindow = 2 * time.Hour }, []string{"stable window 2h0m0s"}},
		{"negative stable window", func(c *Config) { c.StableWindow = -time.Second }, []string{"stable window -1s"}},
		{"panic window above stable", func(c *Config) { c.StableWindow, c.PanicWindow = 10*time.Second, 11*time.Second },
			[]string{"panic window 11s must be between 1s and the stable window 10s"}},
		{"negative grace", func(c *Config) { c.ScaleToZeroGrace = -time.Second }, []string{"grace -1s"}},
		{"threshold 1", func(c *Config) { c.PanicThreshold = 1 }, []string{"panic threshold 1"}},
		{"down rate 1", func(c *Config) { c.MaxScaleDownRate = 1 }, []string{"scale-down rate 1"}},
		{"up rate below 1", func(c *Config) { c.MaxScaleUpRate = 0.5 }, []string{"scale-up rate 0.5"}},
		{"NaN rate", func(c *Config) { c.MaxScaleUpRate = math.NaN() }, []string{"scale-up rate NaN"}},
		{"all at once", func(c *Config) { *c = Config{Target: -1, Min: -1, PanicThreshold: 0.5} },
			[]string{"target -1", "max 0", "min -1", "panic threshold 0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := New(c); err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors mentioning %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if lines := strings.Count(err.Error(), "\n") + 1; lines != len(tt.want) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", lines, len(tt.want), err)
			}
			if a, err := New(c); a != nil || !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New() = %v, %v; want nil, ErrInvalidConfig", a, err)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{Target: 1, Max: 1}.withDefaults()
	want := Config{
		Target: 1, Max: 1,
		StableWindow:     DefaultStableWindow,
		PanicWindow:      DefaultPanicWindow,
		ScaleToZeroGrace: DefaultScaleToZeroGrace,
		PanicThreshold:   DefaultPanicThreshold,
		MaxScaleDownRate: DefaultMaxScaleDownRate,
		MaxScaleUpRate:   DefaultMaxScaleUpRate,
	}
	if got != want {
		t.Errorf("withDefaults() = %+v, want %+v", got, want)
	}
	// Explicit values are kept, and a short stable window caps the default
	// panic window.
	got = Config{Target: 1, Max: 1, StableWindow: 3 * time.Second, ScaleToZeroGrace: time.Second}.withDefaults()
	if got.StableWindow != 3*time.Second || got.PanicWindow != 3*time.Second || got.ScaleToZeroGrace != time.Second {
		t.Errorf("withDefaults() = %+v", got)
	}
}
