// Package spec defines the function spec that users deploy (YAML) and that
// the control plane hands to node agents (JSON): parsing, defaults and
// validation.
//
// # Format
//
// A spec is one YAML document whose first key is name: (the CLI recognises
// spec files by it). Every field but name and one of run.command or run.go is
// optional; the comments give the defaults and the rules Validate enforces.
//
//	name: echo              # required; a DNS label: 1–63 of a-z, 0-9 and '-',
//	                        # starting with a letter, not ending with '-'
//	run:                    # exactly one of command and go
//	  command: ./bin/echo   # a program; looked up in PATH when it has no '/',
//	                        # else relative to the spec's directory
//	  go: ./examples/echo   # or a Go package to build once per deploy; "./..."
//	                        # and "../..." are relative to the spec's directory
//	  args: [--verbose]     # arguments for the program (default: none)
//	  dir: .                # working directory (default: the spec's directory)
//	env:                    # added to the instance's environment (default: none);
//	  GREETING: hello       # names are letters, digits and '_', not starting
//	                        # with a digit; PORT and HANDOFF_* are reserved
//	concurrency: 100        # most requests one instance serves at once; 1–10000
//	scale:
//	  min: 0                # fewest instances; 0 scales to zero
//	  max: 10               # most instances; 1–1000 and >= min
//	                        # (default 10, or min when that is larger)
//	  target: 70            # in-flight requests per instance the autoscaler aims
//	                        # for; above 0 and <= concurrency (default 70% of
//	                        # concurrency, at least 1)
//	  stableWindow: 60s     # averaging window for scaling decisions; above 0
//	  panicWindow: 6s       # short window for bursts; above 0, <= stableWindow
//	  scaleToZeroGrace: 30s # idle time before the last instance stops; above 0
//	memory: 0               # memory limit per instance; 0 (no limit) or at
//	                        # least 4Mi, e.g. 128Mi, 1Gi, 1.5Gi, 512M, 67108864
//	timeout: 5m             # limit on one invocation; above 0 and at most 1h
//	store:                  # buckets of the cluster store the function may use
//	                        # (default: none at all), over its node's S3 API
//	                        # and through its mount; at most 32 entries
//	  read: [corpus]        # list and read these buckets
//	  readWrite:            # also put and delete objects, create and delete
//	    - results           # the bucket; a bucket name, or a prefix and '*':
//	    - scratch-*         # every bucket whose name starts with "scratch-"
//	                        # ("*" alone: every bucket)
//
// Sizes are a number of bytes or a number with a binary suffix (Ki, Mi, Gi,
// Ti, Pi, Ei), a decimal suffix (k, M, G, T, P, E) or B, as in Kubernetes;
// see ParseBytes. Durations are Go durations such as 500ms, 30s or 1m30s.
// Unknown fields, repeated keys, a second document and specs larger than
// MaxSize (1 MiB) are errors.
//
// A function's instances reach the store with a credential of their own
// that carries the function's store grants (package s3api,
// FunctionKey); a request outside them is refused with AccessDenied,
// naming the grant to add here.
//
// # Usage
//
// The CLI reads a file with ParseFile, which also makes the paths in Run
// absolute. The control plane receives the Function as JSON; ParseJSON
// decodes, defaults and validates it, and json.Marshal writes it back
// unchanged. Code that builds a Function by hand calls ApplyDefaults and then
// Validate.
//
// # Errors
//
// All three report every problem at once: the error joins one *FieldError
// per problem (errors.Join), each naming the line (when known) and the field,
// and saying what is allowed:
//
//	spec: line 4: unknown field "concurency" (did you mean "concurrency"?)
//	spec: line 5: scale.max: 1 is below scale.min 2; set max >= min
//
// Every such error wraps ErrInvalid.
package spec
