package spec

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/store"
)

// Limits enforced by Validate.
const (
	MaxConcurrency = 10000
	MaxScale       = 1000
	MinMemory      = Bytes(4 << 20)
	MaxTimeout     = Duration(time.Hour)
	// MaxGrants bounds the entries of store.read and store.readWrite
	// together: a function's S3 access key carries them.
	MaxGrants = 32
)

// ApplyDefaults fills in the fields left at zero: Concurrency, Scale.Max
// (DefaultMaxScale, or Scale.Min when that is larger), Scale.Target (70% of
// Concurrency, at least 1), the scale windows and Timeout. It also turns an
// empty Env or Run.Args into nil, so that a Function survives a YAML or JSON
// round trip unchanged.
func (f *Function) ApplyDefaults() {
	if f.Concurrency == 0 {
		f.Concurrency = DefaultConcurrency
	}
	s := &f.Scale
	if s.Max == 0 {
		s.Max = DefaultMaxScale
		if s.Min > s.Max && s.Min <= MaxScale {
			s.Max = s.Min
		}
	}
	if s.Target == 0 {
		s.Target = max(1, float64(max(f.Concurrency, 1))*7/10)
	}
	if s.StableWindow == 0 {
		s.StableWindow = DefaultStableWindow
	}
	if s.PanicWindow == 0 {
		s.PanicWindow = DefaultPanicWindow
	}
	if s.ScaleToZeroGrace == 0 {
		s.ScaleToZeroGrace = DefaultScaleToZeroGrace
	}
	if f.Timeout == 0 {
		f.Timeout = DefaultTimeout
	}
	if len(f.Env) == 0 {
		f.Env = nil
	}
	if len(f.Run.Args) == 0 {
		f.Run.Args = nil
	}
	if len(f.Store.Read) == 0 {
		f.Store.Read = nil
	}
	if len(f.Store.ReadWrite) == 0 {
		f.Store.ReadWrite = nil
	}
}

// Validate checks f, with defaults applied, against the rules in the package
// documentation. It returns every problem, as *FieldError values joined
// with errors.Join, each wrapping ErrInvalid; nil when f is valid.
func (f Function) Validate() error {
	if errs := f.validate(); len(errs) > 0 {
		return join(errs)
	}
	return nil
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (f Function) validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	switch {
	case f.Name == "":
		bad("name", `missing; set a DNS label such as "echo"`)
	case len(f.Name) > 63 || !dnsLabel.MatchString(f.Name):
		bad("name", "%q is not a DNS label; use 1–63 lowercase letters, digits and '-', starting with a letter and not ending with '-'", f.Name)
	}

	r := f.Run
	switch {
	case r.Command == "" && r.Go == "":
		bad("run", "neither command nor go is set; set run.command (a program) or run.go (a Go package to build)")
	case r.Command != "" && r.Go != "":
		bad("run", "both command and go are set; set exactly one")
	}
	for _, p := range [][2]string{{"run.command", r.Command}, {"run.go", r.Go}, {"run.dir", r.Dir}} {
		if strings.ContainsRune(p[1], 0) {
			bad(p[0], "contains a NUL byte; remove it")
		}
	}
	if slices.ContainsFunc(r.Args, func(a string) bool { return strings.ContainsRune(a, 0) }) {
		bad("run.args", "an argument contains a NUL byte; remove it")
	}

	concurrencyOK := f.Concurrency >= 1 && f.Concurrency <= MaxConcurrency
	if !concurrencyOK {
		bad("concurrency", "%d is out of range; set 1 to %d requests per instance", f.Concurrency, MaxConcurrency)
	}

	s := f.Scale
	if s.Min < 0 {
		bad("scale.min", "%d is negative; set 0 (scale to zero) or more", s.Min)
	}
	switch {
	case s.Max < 1:
		bad("scale.max", "%d is below 1; set 1 to %d", s.Max, MaxScale)
	case s.Max > MaxScale:
		bad("scale.max", "%d is above %d; set 1 to %d", s.Max, MaxScale, MaxScale)
	case s.Max < s.Min:
		bad("scale.max", "%d is below scale.min %d; set max >= min", s.Max, s.Min)
	}
	switch {
	case !(s.Target > 0) || math.IsInf(s.Target, 0):
		bad("scale.target", "%g is not a positive number; set the in-flight requests per instance to aim for, at most concurrency (default 70%% of it)", s.Target)
	case concurrencyOK && s.Target > float64(f.Concurrency):
		bad("scale.target", "%g is above concurrency %d; set target <= concurrency", s.Target, f.Concurrency)
	}
	for _, w := range []struct {
		field string
		d     Duration
	}{{"scale.stableWindow", s.StableWindow}, {"scale.panicWindow", s.PanicWindow}, {"scale.scaleToZeroGrace", s.ScaleToZeroGrace}} {
		if w.d <= 0 {
			bad(w.field, "%s is not positive; set a duration such as 30s", w.d)
		}
	}
	if s.PanicWindow > s.StableWindow && s.StableWindow > 0 {
		bad("scale.panicWindow", "%s is longer than scale.stableWindow %s; set panicWindow <= stableWindow", s.PanicWindow, s.StableWindow)
	}

	switch {
	case f.Memory < 0:
		bad("memory", "%s is negative; set 0 (no limit) or at least %s", f.Memory, MinMemory)
	case f.Memory > 0 && f.Memory < MinMemory:
		bad("memory", "%s is below the %s minimum; set 0 (no limit) or at least %s", f.Memory, MinMemory, MinMemory)
	}

	switch {
	case f.Timeout <= 0:
		bad("timeout", "%s is not positive; set a duration up to 1h, such as 30s", f.Timeout)
	case f.Timeout > MaxTimeout:
		bad("timeout", "%s is above the 1h maximum; set at most 1h", f.Timeout)
	}

	for _, k := range slices.Sorted(maps.Keys(f.Env)) {
		field := fmt.Sprintf("env[%q]", k)
		switch {
		case !envName.MatchString(k):
			bad(field, "not a valid variable name; use letters, digits and '_', not starting with a digit")
		case k == "PORT":
			bad(field, "reserved; the platform sets PORT for every instance")
		case strings.HasPrefix(k, "HANDOFF_"):
			bad(field, "names starting with HANDOFF_ are reserved for the platform; rename the variable")
		}
		if strings.ContainsRune(f.Env[k], 0) {
			bad(field, "the value contains a NUL byte; remove it")
		}
	}

	if n := len(f.Store.Read) + len(f.Store.ReadWrite); n > MaxGrants {
		bad("store", "%d buckets granted; grant at most %d, with patterns such as \"scratch-*\" for families of buckets", n, MaxGrants)
	}
	seen := map[string]string{}
	for _, l := range []struct {
		field string
		list  []string
	}{{"store.readWrite", f.Store.ReadWrite}, {"store.read", f.Store.Read}} {
		for i, p := range l.list {
			field := fmt.Sprintf("%s[%d]", l.field, i)
			if msg := checkGrant(p); msg != "" {
				bad(field, "%s", msg)
				continue
			}
			if prev, ok := seen[p]; ok {
				if prev == l.field {
					bad(field, "%q is listed twice; keep one", p)
				} else {
					bad(field, "%q is also in store.readWrite, which includes reading; remove it from store.read", p)
				}
				continue
			}
			seen[p] = l.field
		}
	}
	return errs
}

// checkGrant says what is wrong with a bucket grant pattern, or "".
func checkGrant(p string) string {
	prefix, wild := strings.CutSuffix(p, "*")
	switch {
	case p == "":
		return `empty; name a bucket such as "results", or a family such as "scratch-*"`
	case strings.Contains(prefix, "*"):
		return fmt.Sprintf("%q has a '*' before its end; '*' may only end a pattern, as in \"scratch-*\"", p)
	case !wild:
		if err := store.CheckBucketName(p); err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": bucket "); i >= 0 {
				msg = msg[i+2:]
			}
			return msg + "; name a bucket, or a family such as \"scratch-*\""
		}
		return ""
	case len(prefix) > 62:
		return fmt.Sprintf("%q is longer than a bucket name (63 characters) can match; shorten the prefix", p)
	}
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0:
		default:
			return fmt.Sprintf("%q can match no bucket: bucket names hold lowercase letters, digits, '.' and '-', and start with a letter or digit", p)
		}
	}
	return ""
}
