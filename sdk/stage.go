package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/stream"
)

// HeaderTask carries the ticket of the workflow task an invocation runs.
const HeaderTask = "X-Handoff-Task"

// headerPorts carries, on a stage's answer, the bytes it moved per port.
const headerPorts = "X-Handoff-Ports"

// StageFunc runs one task of a workflow stage. It reads its inputs and
// writes its outputs through s; returning nil ends every output with its
// trailer, returning an error aborts them, so consumers never take partial
// data as complete.
type StageFunc func(ctx context.Context, s *Stage) error

// StreamFunc is a stage with one input and one output: in is the input
// port "in" (or the run's input for a first stage), out the output port
// "out" (or, for a last stage, its part of the run's result).
type StreamFunc func(ctx context.Context, in io.Reader, out io.Writer) error

// ServeStage serves f as a workflow stage, as Serve does for a handler.
// The node agent opens the stage's channels before the run starts and
// hands their ends to the instance: on one node the input is a pipe from
// the producer's own process, never a copy through the node agent.
func ServeStage(f StageFunc) { serveMain(StageHandler(f), nil) }

// ServeStream serves f as a workflow stage with one input and one output.
func ServeStream(f StreamFunc) { ServeStage(streamStage(f)) }

func streamStage(f StreamFunc) StageFunc {
	return func(ctx context.Context, s *Stage) error {
		var in io.Reader = s.Body
		if _, ok := s.inputs["in"]; ok {
			in = s.Input("in")
		}
		var out io.Writer = s.Result
		if _, ok := s.outputs["out"]; ok {
			out = s.Output("out")
		}
		return f(ctx, in, out)
	}
}

// Stage is one task of a workflow stage, as its handler sees it.
type Stage struct {
	Run   string // the run's id
	Task  string // e.g. "count-2"
	Name  string // the stage's name, e.g. "count"
	Index int    // this task's index in the stage, 0..Count-1
	Count int    // the stage's parallelism
	// Params are the stage's params from the workflow spec.
	Params map[string]string
	// Body is the invocation's request body: the run's input for a stage
	// without inputs, empty otherwise.
	Body io.Reader
	// Result is the invocation's answer: for a stage without outputs, its
	// part of the run's result (up to the inline limit).
	Result io.Writer

	inputs  map[string]*inPort
	outputs map[string]*outPort
}

type inPort struct {
	pattern string
	parts   []*stream.Reader
	files   []*os.File
}

type outPort struct {
	pattern, key string
	parts        []*stream.Writer
	files        []*os.File
	taken        []bool // parts handed over by TakeOutputFile
}

// Param returns a stage param, or def when it is not set.
func (s *Stage) Param(name, def string) string {
	if v, ok := s.Params[name]; ok {
		return v
	}
	return def
}

// Input returns input port name as one reader: its parts (one per
// producer task) one after the other, in producer order. Read Inputs in
// parallel instead when producers should not wait for each other.
func (s *Stage) Input(name string) io.Reader {
	p, err := s.in(name)
	if err != nil {
		return errReader{err}
	}
	rs := make([]io.Reader, len(p.parts))
	for i, r := range p.parts {
		rs[i] = r
	}
	return io.MultiReader(rs...)
}

// Inputs returns the parts of input port name, one per producer task.
func (s *Stage) Inputs(name string) []io.Reader {
	p, err := s.in(name)
	if err != nil {
		return []io.Reader{errReader{err}}
	}
	rs := make([]io.Reader, len(p.parts))
	for i, r := range p.parts {
		rs[i] = r
	}
	return rs
}

// Output returns output port name as a writer: to its one consumer (pipe,
// merge) or to every consumer (broadcast). A partitioned port is written
// with Partitioned.
func (s *Stage) Output(name string) io.Writer {
	p, err := s.out(name)
	if err != nil {
		return errWriter{err}
	}
	switch p.pattern {
	case "partition", "shuffle":
		return errWriter{fmt.Errorf("sdk: output %q of stage %s is partitioned (%s): write records with Partitioned(%q)", name, s.Name, p.pattern, name)}
	}
	if len(p.parts) == 1 {
		return p.parts[0]
	}
	ws := make([]io.Writer, len(p.parts))
	for i, w := range p.parts {
		ws[i] = w
	}
	return io.MultiWriter(ws...)
}

// TakeOutputFile hands part part of output port name to the caller as
// the channel's own descriptor, for a program that writes the stream
// format itself (docs/stream-format.md): the stage no longer frames,
// ends or closes that part. Most stages never need this.
func (s *Stage) TakeOutputFile(name string, part int) (*os.File, error) {
	p, err := s.out(name)
	if err != nil {
		return nil, err
	}
	if part < 0 || part >= len(p.files) || p.taken[part] {
		return nil, fmt.Errorf("sdk: output %q of stage %s has no part %d to take (it has %d)", name, s.Name, part, len(p.files))
	}
	p.taken[part] = true
	return p.files[part], nil
}

// IsPartitioned reports whether output port name is partitioned
// (partition and shuffle edges), to be written with Partitioned.
func (s *Stage) IsPartitioned(name string) bool {
	p, err := s.out(name)
	return err == nil && (p.pattern == "partition" || p.pattern == "shuffle")
}

// Partitioned returns a record writer over the parts of output port name:
// by the hash of each record's key, or round robin, as the edge says.
func (s *Stage) Partitioned(name string) *stream.Partitioner {
	p, err := s.out(name)
	if err != nil {
		return stream.NewPartitioner([]io.Writer{errWriter{err}}, stream.RoundRobin)
	}
	by, err := stream.ParsePartition(p.key)
	if err != nil {
		by = stream.Hash
	}
	ws := make([]io.Writer, len(p.parts))
	for i, w := range p.parts {
		ws[i] = w
	}
	return stream.NewPartitioner(ws, by)
}

func (s *Stage) in(name string) (*inPort, error) {
	if p, ok := s.inputs[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("sdk: stage %s has no input port %q (its inputs: %s)", s.Name, name, portNames(s.inputs))
}

func (s *Stage) out(name string) (*outPort, error) {
	if p, ok := s.outputs[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("sdk: stage %s has no output port %q (its outputs: %s)", s.Name, name, portNames(s.outputs))
}

func portNames[P any](m map[string]P) string {
	if len(m) == 0 {
		return "none"
	}
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

// stageInfo mirrors the node agent's description of a task.
type stageInfo struct {
	Run     string            `json:"run"`
	Task    string            `json:"task"`
	Stage   string            `json:"stage"`
	Index   int               `json:"index"`
	Count   int               `json:"count"`
	Params  map[string]string `json:"params"`
	Inputs  []stagePort       `json:"inputs"`
	Outputs []stagePort       `json:"outputs"`
}

type stagePort struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
	Key     string `json:"key"`
	Parts   int    `json:"parts"`
}

// StageHandler is the http.Handler that ServeStage serves.
func StageHandler(f StageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ticket := r.Header.Get(HeaderTask)
		if ticket == "" {
			writeError(w, http.StatusBadRequest, "not_a_task", "this function is a workflow stage: run it in a workflow (handoff run FILE), not with a plain invocation")
			return
		}
		ctx := r.Context()
		s, err := openStage(ctx, ticket)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "stage_setup", err.Error())
			return
		}
		var result bytes.Buffer
		s.Body, s.Result = r.Body, &result
		// The node agent hangs up when the run ends: closing the ends
		// unblocks the handler's reads and writes at once.
		stop := context.AfterFunc(ctx, s.closeFiles)
		err = f(ctx, s)
		stop()
		if err == nil {
			err = s.finish()
		} else {
			s.abort(err)
		}
		s.closeFiles()
		if err != nil {
			code := "stage_failed"
			if isStreamError(err) {
				code = "channel_failed"
			}
			writeError(w, http.StatusInternalServerError, code, err.Error())
			return
		}
		ports, _ := json.Marshal(s.counts())
		w.Header().Set(headerPorts, string(ports))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(result.Bytes())
	})
}

func isStreamError(err error) bool {
	for _, e := range []error{stream.ErrTruncated, stream.ErrMismatch, stream.ErrAborted, stream.ErrMalformed, os.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")
}

// openStage asks the node agent for the task's description and every port
// end, over the descriptor socket.
func openStage(ctx context.Context, ticket string) (*Stage, error) {
	resp, _, err := stageExchange(ctx, fdpass.Request{Op: "task", Ticket: ticket})
	if err != nil {
		return nil, err
	}
	var info stageInfo
	if err := json.Unmarshal(resp.Info, &info); err != nil {
		return nil, fmt.Errorf("sdk: the node agent's task description: %v", err)
	}
	s := &Stage{Run: info.Run, Task: info.Task, Name: info.Stage, Index: info.Index, Count: info.Count,
		Params: info.Params, inputs: map[string]*inPort{}, outputs: map[string]*outPort{}}
	for _, p := range info.Inputs {
		ip := &inPort{pattern: p.Pattern}
		s.inputs[p.Name] = ip
		for part := 0; part < p.Parts; part++ {
			_, f, err := stageExchange(ctx, fdpass.Request{Op: "port", Ticket: ticket, Dir: "in", Port: p.Name, Part: part})
			if err != nil {
				s.closeFiles()
				return nil, err
			}
			ip.files = append(ip.files, f)
			ip.parts = append(ip.parts, stream.NewReader(f))
		}
	}
	for _, p := range info.Outputs {
		op := &outPort{pattern: p.Pattern, key: p.Key}
		s.outputs[p.Name] = op
		for part := 0; part < p.Parts; part++ {
			_, f, err := stageExchange(ctx, fdpass.Request{Op: "port", Ticket: ticket, Dir: "out", Port: p.Name, Part: part})
			if err != nil {
				s.closeFiles()
				return nil, err
			}
			op.files = append(op.files, f)
			op.parts = append(op.parts, stream.NewWriter(f))
			op.taken = append(op.taken, false)
		}
	}
	return s, nil
}

// stageExchange is one request on the descriptor socket.
func stageExchange(ctx context.Context, req fdpass.Request) (fdpass.Response, *os.File, error) {
	path := os.Getenv("HANDOFF_FD")
	if path == "" {
		return fdpass.Response{}, nil, fmt.Errorf("%w: a workflow stage takes its channels from the node agent", ErrNoFD)
	}
	select {
	case fd.sem <- struct{}{}:
	case <-ctx.Done():
		return fdpass.Response{}, nil, ctx.Err()
	}
	defer func() { <-fd.sem }()
	resp, f, err := exchangeLocked(ctx, req.Op, path, req, nil)
	if err != nil {
		return resp, nil, err
	}
	if resp.Error != "" || resp.Code != "" {
		if f != nil {
			f.Close()
		}
		return resp, nil, fmt.Errorf("sdk: stage set-up (%s): %s: %s", req.Op, resp.Code, resp.Error)
	}
	if req.Op == "port" && f == nil {
		return resp, nil, errors.New("sdk: the node agent answered a port request without a descriptor; report this as a node agent bug")
	}
	return resp, f, nil
}

// finish ends every output with its trailer.
func (s *Stage) finish() error {
	var errs []error
	for name, p := range s.outputs {
		for i, w := range p.parts {
			if p.taken[i] {
				continue
			}
			if err := w.Close(); err != nil {
				errs = append(errs, fmt.Errorf("output %s part %d: %w", name, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// abort tells every consumer that the stage failed.
func (s *Stage) abort(cause error) {
	msg := fmt.Sprintf("stage %s task %s failed: %v", s.Name, s.Task, cause)
	for _, p := range s.outputs {
		for i, w := range p.parts {
			if !p.taken[i] {
				_ = w.Abort(msg)
			}
		}
	}
}

func (s *Stage) closeFiles() {
	for _, p := range s.inputs {
		for _, f := range p.files {
			f.Close()
		}
	}
	for _, p := range s.outputs {
		for i, f := range p.files {
			if !p.taken[i] {
				f.Close()
			}
		}
	}
}

// counts are the data bytes moved per port part ("in:name", "out:name").
func (s *Stage) counts() map[string][]int64 {
	m := map[string][]int64{}
	for name, p := range s.inputs {
		for _, r := range p.parts {
			m["in:"+name] = append(m["in:"+name], r.Bytes())
		}
	}
	for name, p := range s.outputs {
		for _, w := range p.parts {
			m["out:"+name] = append(m["out:"+name], w.Bytes())
		}
	}
	return m
}
