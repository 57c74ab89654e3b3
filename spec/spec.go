package spec

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Function is a deployable function. The YAML form starts with `name:`.
type Function struct {
	// Name is the function's name: lowercase letters, digits and '-', 1–63
	// characters, starting with a letter (a DNS label).
	Name string `yaml:"name" json:"name"`
	// Run says how to start an instance.
	Run Run `yaml:"run" json:"run"`
	// Env is added to the instance's environment.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Concurrency is the most requests one instance serves at once.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Scale bounds and tunes the autoscaler for this function.
	Scale Scale `yaml:"scale,omitempty" json:"scale,omitempty"`
	// Memory is the per-instance memory limit in bytes (YAML: "128Mi", "1Gi",
	// "512M" or a plain number of bytes). Zero means no limit.
	Memory Bytes `yaml:"memory,omitempty" json:"memory,omitempty"`
	// Timeout bounds one invocation (YAML: a Go duration such as "30s").
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Store lists the buckets of the cluster store the function may use,
	// over its node's S3 API and through its mount. Without it the
	// function reaches no bucket at all.
	Store Store `yaml:"store,omitempty" json:"store,omitzero"`
}

// Store grants a function buckets of the cluster store. Each entry names
// one bucket ("results") or, ending in '*', every bucket whose name starts
// with what comes before it ("scratch-*"; "*" alone is every bucket, for
// tooling functions). A bucket granted in both lists is an error.
type Store struct {
	// Read lists the buckets the function may list and read.
	Read []string `yaml:"read,omitempty" json:"read,omitempty"`
	// ReadWrite lists the buckets the function may also write: put and
	// delete objects, and create or delete the bucket itself.
	ReadWrite []string `yaml:"readWrite,omitempty" json:"readWrite,omitempty"`
}

// Allows reports whether s lets a function read bucket or, with write set,
// write it.
func (s Store) Allows(bucket string, write bool) bool {
	for _, p := range s.ReadWrite {
		if MatchBucket(p, bucket) {
			return true
		}
	}
	if write {
		return false
	}
	for _, p := range s.Read {
		if MatchBucket(p, bucket) {
			return true
		}
	}
	return false
}

// IsZero reports whether s grants nothing.
func (s Store) IsZero() bool { return len(s.Read) == 0 && len(s.ReadWrite) == 0 }

// ValidGrant reports whether p is a valid entry of store.read or
// store.readWrite: a bucket name, or a prefix that can start one followed
// by '*'.
func ValidGrant(p string) bool { return checkGrant(p) == "" }

// MatchBucket reports whether the grant pattern (a bucket name, or a
// prefix followed by '*') covers bucket.
func MatchBucket(pattern, bucket string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(bucket, prefix)
	}
	return pattern == bucket
}

// Run says how to start an instance: either a command, or a Go package that
// the platform builds once per deploy.
type Run struct {
	// Command is the program to execute (looked up in PATH when it has no
	// slash; relative paths are relative to the spec file's directory).
	Command string `yaml:"command,omitempty" json:"command,omitempty"`
	// Args are passed to Command (or to the built Go binary).
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
	// Go is a Go package path or directory to build (e.g. "./examples/echo"),
	// relative to the spec file's directory.
	Go string `yaml:"go,omitempty" json:"go,omitempty"`
	// Dir is the working directory of the instance (default: the spec's
	// directory).
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
}

// Scale configures the concurrency-based autoscaler (as Knative's KPA).
type Scale struct {
	Min int `yaml:"min,omitempty" json:"min,omitempty"`
	// Max is the most instances; 0 means the default (10).
	Max int `yaml:"max,omitempty" json:"max,omitempty"`
	// Target is the in-flight requests per instance the autoscaler aims for;
	// 0 means 70% of Concurrency.
	Target float64 `yaml:"target,omitempty" json:"target,omitempty"`
	// StableWindow defaults to 60s, PanicWindow to 6s, ScaleToZeroGrace to 30s.
	StableWindow     Duration `yaml:"stableWindow,omitempty" json:"stableWindow,omitempty"`
	PanicWindow      Duration `yaml:"panicWindow,omitempty" json:"panicWindow,omitempty"`
	ScaleToZeroGrace Duration `yaml:"scaleToZeroGrace,omitempty" json:"scaleToZeroGrace,omitempty"`
}

// Bytes is a size in bytes that reads "128Mi", "1Gi", "64M", "1024" in YAML
// and JSON.
type Bytes int64

// Duration is a time.Duration that reads "30s" in YAML and JSON.
type Duration time.Duration

// Defaults applied by Parse when a field is left out.
const (
	DefaultConcurrency      = 100
	DefaultMaxScale         = 10
	DefaultTimeout          = Duration(5 * time.Minute)
	DefaultStableWindow     = Duration(60 * time.Second)
	DefaultPanicWindow      = Duration(6 * time.Second)
	DefaultScaleToZeroGrace = Duration(30 * time.Second)
)

// MaxSize is the largest spec Parse accepts, in bytes.
const MaxSize = 1 << 20

// ErrInvalid is wrapped by every error that Parse, ParseFile and Validate
// return for a spec that is malformed or breaks a rule (errors.Is works on
// the joined error). I/O errors from ParseFile do not wrap it.
var ErrInvalid = errors.New("spec: invalid function spec")

// A FieldError is one problem in a spec. Parse, ParseFile and Validate
// return every problem they find, joined with errors.Join; use errors.As or
// the joined error's Unwrap() []error to get at each one.
type FieldError struct {
	File  string // the spec file, set by ParseFile
	Line  int    // 1-based line in the YAML; 0 when unknown
	Field string // dotted path such as "scale.max"; empty for the document as a whole
	Msg   string // what is wrong and what is allowed
}

func (e *FieldError) Error() string {
	s := "spec: "
	switch {
	case e.File != "" && e.Line > 0:
		s += fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		s += e.File + ": "
	case e.Line > 0:
		s += fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }
