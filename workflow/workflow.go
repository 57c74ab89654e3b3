package workflow

import (
	"errors"
	"fmt"

	"github.com/handoff-dev/handoff/xfer"
)

// Workflow is a pipeline of stages connected by edges, as parsed from YAML.
type Workflow struct {
	// Name names the workflow: a DNS label, as a function name.
	Name   string
	Stages []Stage
	Edges  []Edge
}

// Stage runs one deployed function as Parallelism tasks.
type Stage struct {
	// Name is unique in the workflow: a DNS label, as a function name.
	Name string
	// Function is the deployed function every task of the stage runs.
	Function string
	// Parallelism is the number of tasks, 1 to MaxParallelism.
	Parallelism int
	// Params is handed to every task of the stage.
	Params map[string]string
	// Interface is InterfaceStream or InterfaceHTTP.
	Interface string
	// Overlap says the stage produces while it consumes. False means it
	// needs its whole input before it starts producing (a sort). Parse
	// defaults it to true; the zero Stage says false.
	Overlap bool
}

// Edge connects an output port of one stage to an input port of another.
type Edge struct {
	From, To PortRef
	Pattern  Pattern
	// Mode is a mode the user pinned for the edge; "" means auto (the YAML's
	// mode: auto), chosen by xfer.Policy.ChooseEdge.
	Mode xfer.Mode
	// Key is how partition and shuffle edges spread records over consumer
	// tasks: KeyHash or KeyRoundRobin; "" on other patterns.
	Key     string
	Buffers Buffers
	// SizeHint is the bytes one channel of the edge carries, if the user
	// knows; 0 when not known.
	SizeHint int64
}

// PortRef names a port of a stage ("stage.port" in YAML).
type PortRef struct {
	Stage, Port string
}

// String returns "stage.port".
func (r PortRef) String() string { return r.Stage + "." + r.Port }

// Buffers are the fixed buffers of one channel.
type Buffers struct {
	Count int   // buffers in the channel
	Size  int64 // bytes in one buffer
}

// Bytes is the memory one channel holds: Count × Size.
func (b Buffers) Bytes() int64 { return int64(b.Count) * b.Size }

// Pattern is how an edge connects the tasks of its two stages.
type Pattern string

// The patterns. N is the producer stage's parallelism, M the consumer's.
const (
	Pipe      Pattern = "pipe"      // task i → task i; N == M
	Broadcast Pattern = "broadcast" // one producer, every consumer task gets all of it; N == 1
	Partition Pattern = "partition" // one producer, its records split over the M consumers by Key; N == 1
	Merge     Pattern = "merge"     // every producer task into one consumer; M == 1
	Shuffle   Pattern = "shuffle"   // every producer task to every consumer task, split by Key; any N, M
)

// Patterns lists every pattern, in the order the documentation gives them.
var Patterns = []Pattern{Pipe, Broadcast, Partition, Merge, Shuffle}

// Stage interfaces.
const (
	// InterfaceStream: an SDK stage handler that gets its ports as pipes.
	InterfaceStream = "stream"
	// InterfaceHTTP: any HTTP function; its one input is the request body,
	// its one output the response body.
	InterfaceHTTP = "http"
)

// Keys of partition and shuffle edges.
const (
	KeyHash       = "hash"       // a record goes to the consumer its hash picks
	KeyRoundRobin = "roundrobin" // records go to the consumers in turn
)

// Default port names, used when an edge names only the stage.
const (
	DefaultOutPort = "out"
	DefaultInPort  = "in"
)

// Defaults and limits. Validate enforces the limits.
const (
	DefaultBufferCount = 8
	DefaultBufferSize  = 128 << 10 // 8 × 128 KiB = 1 MiB per channel

	MaxParallelism = 1024
	MinBufferCount = 1
	MaxBufferCount = 1024
	MinBufferSize  = 4 << 10
	MaxBufferSize  = 64 << 20

	// MaxTasks and MaxChannels bound what one workflow expands to, so that
	// a spec cannot make the control plane build a plan of millions of
	// channels (a shuffle of 1024 × 1024 is a million).
	MaxTasks    = 1 << 14
	MaxChannels = 1 << 16

	// MaxSize is the largest YAML document Parse accepts.
	MaxSize = 1 << 20
)

// ErrInvalid is wrapped by every error Parse and Validate return for a
// workflow that is malformed or breaks a rule (errors.Is works on the joined
// error).
var ErrInvalid = errors.New("workflow: invalid workflow")

// ErrNoCapacity means the nodes given to Build offer fewer task slots than
// the workflow has tasks.
var ErrNoCapacity = errors.New("workflow: not enough task slots")

// A FieldError is one problem in a workflow. Parse and Validate return every
// problem they find, joined with errors.Join.
type FieldError struct {
	Line    int    // 1-based line in the YAML; 0 when unknown
	Subject string // `stage "count"`, "edge gen.out→count.in", or "" for the workflow
	Field   string // the field, such as "parallelism" or "buffers.size"; may be ""
	Msg     string // what is wrong and what to do

	path string // "stages[1].parallelism": where Parse finds the line
}

func (e *FieldError) Error() string {
	s := "workflow: "
	if e.Line > 0 {
		s += fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Subject != "" {
		s += e.Subject + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func join(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// ApplyDefaults fills in the fields left at zero: a stage's Parallelism (1)
// and Interface (stream); an edge's ports ("out" and "in"), Pattern (pipe),
// Key (hash, on partition and shuffle edges) and Buffers (8 × 128 KiB).
// Stage.Overlap has no zero default: Parse sets it to true unless the YAML
// says false.
func (w *Workflow) ApplyDefaults() {
	for i := range w.Stages {
		s := &w.Stages[i]
		if s.Parallelism == 0 {
			s.Parallelism = 1
		}
		if s.Interface == "" {
			s.Interface = InterfaceStream
		}
		if len(s.Params) == 0 {
			s.Params = nil
		}
	}
	for i := range w.Edges {
		e := &w.Edges[i]
		if e.From.Port == "" {
			e.From.Port = DefaultOutPort
		}
		if e.To.Port == "" {
			e.To.Port = DefaultInPort
		}
		if e.Pattern == "" {
			e.Pattern = Pipe
		}
		if e.Key == "" && (e.Pattern == Partition || e.Pattern == Shuffle) {
			e.Key = KeyHash
		}
		if e.Buffers.Count == 0 {
			e.Buffers.Count = DefaultBufferCount
		}
		if e.Buffers.Size == 0 {
			e.Buffers.Size = DefaultBufferSize
		}
	}
}

// stage returns the index of the stage named name, or -1.
func (w *Workflow) stage(name string) int {
	for i := range w.Stages {
		if w.Stages[i].Name == name {
			return i
		}
	}
	return -1
}

// producerParts is how many parts an output port on edge e has in each
// producer task: one per consumer task it feeds.
func producerParts(p Pattern, consumers int) int {
	switch p {
	case Broadcast, Partition, Shuffle:
		return consumers
	}
	return 1 // pipe, merge
}

// consumerParts is how many parts an input port on edge e has in each
// consumer task: one per producer task that feeds it.
func consumerParts(p Pattern, producers int) int {
	switch p {
	case Merge, Shuffle:
		return producers
	}
	return 1 // pipe, broadcast, partition
}
