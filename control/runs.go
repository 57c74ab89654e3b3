package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/state"
	"github.com/handoff-dev/handoff/workflow"
	"github.com/handoff-dev/handoff/xfer"
)

// The workflow runner. A run goes through three steps:
//
//  1. plan: expand the workflow into tasks and channels, choose each edge's
//     mode (xfer.Policy.ChooseEdge) and place the tasks (workflow.Build),
//     co-locating producers with their consumers;
//  2. prepare: every node agent starts its tasks' instances and opens every
//     channel with an end on it, cross-node streams included, before any
//     producer runs;
//  3. run: every task is invoked at once; streams flow while they run, and
//     ref and inline outputs are fed to their consumers' nodes as their
//     producers finish. The first failure cancels the run.

// channelGrace is how long a run goes on after a task reports a broken
// channel, so that the failure that broke it is reported first.
const channelGrace = time.Second

// DefaultRunSlots is how many tasks one node agent hosts in one run.
const DefaultRunSlots = 64

// runState is a run in progress (or kept after its end).
type runState struct {
	plan   *workflow.Plan
	input  []byte // the first stages' request body, kept for retries
	secret string
	ctx    context.Context
	cancel context.CancelFunc
	nodes  []string // nodes with tasks, sorted

	mu       sync.Mutex // guards all following fields
	status   api.Run
	progress map[string]node.TaskProgress // task → last polled progress
	results  map[string]node.TaskResult   // task → final result
}

// workflowPolicy is the mode policy of workflow edges: node agents run
// streams, references and the store.
func (s *Server) workflowPolicy() xfer.Policy {
	return xfer.Policy{InlineMax: s.cfg.InlineMax, Available: map[xfer.Mode]bool{xfer.Ref: true, xfer.Stream: true, xfer.Store: true}}
}

func (s *Server) handlePutWorkflow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := io.ReadAll(io.LimitReader(r.Body, workflow.MaxSize+1))
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "reading the workflow: "+err.Error())
		return
	}
	wf, err := workflow.Parse(b)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_workflow", err.Error())
		return
	}
	if wf.Name != name {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_workflow", fmt.Sprintf("the workflow is named %q, not %q: PUT it under its own name", wf.Name, name))
		return
	}
	for _, st := range wf.Stages {
		if s.function(st.Function) == nil {
			httpx.WriteError(w, http.StatusUnprocessableEntity, "not_deployed", fmt.Sprintf("stage %s runs function %q, which is not deployed; deploy it first (handoff deploy -f SPEC.yaml)", st.Name, st.Function))
			return
		}
	}
	if err := s.db.PutWorkflow(name, b); err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleStartRun(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := s.db.Workflow(name)
	if errors.Is(err, state.ErrNotFound) {
		httpx.WriteError(w, http.StatusNotFound, "no_such_workflow", fmt.Sprintf("workflow %q is not stored; put it first (handoff run FILE does)", name))
		return
	}
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state", err.Error())
		return
	}
	wf, err := workflow.Parse(b)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_workflow", err.Error())
		return
	}
	input, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.InlineMax+1))
	if err != nil || int64(len(input)) > s.cfg.InlineMax {
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, "input_too_large", fmt.Sprintf("a run's input travels inline, up to %s; pass large inputs by reference or through a first stage that reads them", xfer.Human(s.cfg.InlineMax)))
		return
	}
	rs, err := s.startRun(wf, input)
	if err != nil {
		status := http.StatusUnprocessableEntity
		if errors.Is(err, workflow.ErrNoCapacity) {
			status = http.StatusServiceUnavailable
		}
		httpx.WriteError(w, status, "run_refused", err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, rs.snapshot())
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if rs := s.run(id); rs != nil {
		httpx.WriteJSON(w, http.StatusOK, rs.snapshot())
		return
	}
	rec, err := s.storedRun(id)
	if err != nil || rec.Run.Workflow != r.PathValue("name") {
		httpx.WriteError(w, http.StatusNotFound, "no_such_run", fmt.Sprintf("run %q of workflow %q is unknown", id, r.PathValue("name")))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rec.Run)
}

// runRecord is a finished run as the database keeps it.
type runRecord struct {
	Run   api.Run `json:"run"`
	Input []byte  `json:"input,omitempty"`
}

func (s *Server) storedRun(id string) (runRecord, error) {
	var rec runRecord
	b, err := s.db.Run(id)
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(b, &rec)
}

// handleRetryRun starts a new run of the workflow (as stored now) with the
// input of an earlier run: a run that failed can be run again as it was.
func (s *Server) handleRetryRun(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	var input []byte
	if rs := s.run(id); rs != nil && rs.plan.Workflow.Name == name {
		if !rs.snapshot().Done() {
			httpx.WriteError(w, http.StatusConflict, "run_not_done", "run "+id+" has not ended; cancel it first or wait")
			return
		}
		input = rs.input
	} else if rec, err := s.storedRun(id); err == nil && rec.Run.Workflow == name {
		input = rec.Input
	} else {
		httpx.WriteError(w, http.StatusNotFound, "no_such_run", fmt.Sprintf("run %q of workflow %q is unknown", id, name))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(input))
	s.handleStartRun(w, r)
}

func (s *Server) handleCancelRun(w http.ResponseWriter, r *http.Request) {
	rs := s.run(r.PathValue("id"))
	if rs == nil {
		httpx.WriteError(w, http.StatusNotFound, "no_such_run", "run "+r.PathValue("id")+" is not running")
		return
	}
	rs.mu.Lock()
	if !rs.status.Done() {
		rs.status.State = "canceling"
	}
	rs.mu.Unlock()
	rs.cancel()
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) run(id string) *runState {
	s.runsMu.Lock()
	defer s.runsMu.Unlock()
	return s.runs[id]
}

func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startRun plans the run and starts it in the background.
func (s *Server) startRun(wf *workflow.Workflow, input []byte) (*runState, error) {
	fns := map[string]node.StartRequest{}
	for _, st := range wf.Stages {
		f := s.function(st.Function)
		if f == nil {
			return nil, fmt.Errorf("stage %s runs function %q, which is not deployed; deploy it first", st.Name, st.Function)
		}
		fns[st.Name] = node.StartRequest{Function: f.spec, Binary: f.binary}
	}
	var nodes []workflow.Node
	peers := map[string]string{}
	s.mu.Lock()
	for id, n := range s.nodes {
		if n.up {
			nodes = append(nodes, workflow.Node{ID: id, Slots: s.cfg.RunSlots})
			peers[id] = n.last.PeerAddr
		}
	}
	s.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	if len(nodes) == 0 {
		return nil, errors.New("no node agent is up to run the workflow; start one (handoff up starts them)")
	}
	plan, err := workflow.Build(wf, nodes, s.workflowPolicy())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runState{plan: plan, input: input, secret: newRunID() + newRunID(), ctx: ctx, cancel: cancel,
		progress: map[string]node.TaskProgress{}, results: map[string]node.TaskResult{}}
	rs.status = api.Run{ID: newRunID(), Workflow: wf.Name, State: "preparing", Started: time.Now()}
	rs.initStatus()
	for _, n := range plan.Node {
		if !contains(rs.nodes, n) {
			rs.nodes = append(rs.nodes, n)
		}
	}
	sort.Strings(rs.nodes)
	prep := s.prepareRequests(rs, fns, peers, input)
	s.runsMu.Lock()
	s.runs[rs.status.ID] = rs
	s.active.Add(1)
	s.runsMu.Unlock()
	go func() {
		defer s.active.Done()
		s.execute(rs, prep)
	}()
	return rs, nil
}

// cancelRuns cancels every run in progress, as the platform shuts down,
// and waits (until ctx ends) for them to end on their nodes and be stored.
func (s *Server) cancelRuns(ctx context.Context) {
	s.runsMu.Lock()
	for _, rs := range s.runs {
		rs.mu.Lock()
		if !rs.status.Done() {
			rs.status.State = "canceling"
		}
		rs.mu.Unlock()
		rs.cancel()
	}
	s.runsMu.Unlock()
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// initStatus fills the stages and edges of a fresh run's status.
func (rs *runState) initStatus() {
	p := rs.plan
	for _, st := range p.Workflow.Stages {
		rst := api.RunStage{Name: st.Name, Function: st.Function, Tasks: st.Parallelism}
		for _, t := range p.Tasks {
			if t.Stage == st.Name && !contains(rst.Nodes, p.Node[t.ID]) {
				rst.Nodes = append(rst.Nodes, p.Node[t.ID])
			}
		}
		sort.Strings(rst.Nodes)
		rs.status.Stages = append(rs.status.Stages, rst)
	}
	for i, e := range p.Workflow.Edges {
		re := api.RunEdge{From: e.From.String(), To: e.To.String(), Pattern: string(e.Pattern)}
		for _, ch := range p.Channels {
			if ch.Edge != i {
				continue
			}
			re.Channels++
			re.Mode, re.Reason = string(ch.Mode), ch.Reason
			if p.Node[ch.From.Task] != p.Node[ch.To.Task] {
				re.CrossNode++
			}
		}
		rs.status.Edges = append(rs.status.Edges, re)
	}
}

// prepareRequests builds each node's share of the run.
func (s *Server) prepareRequests(rs *runState, fns map[string]node.StartRequest, peers map[string]string, input []byte) map[string]*node.RunPrepare {
	p := rs.plan
	out := map[string]*node.RunPrepare{}
	for _, n := range rs.nodes {
		out[n] = &node.RunPrepare{Secret: rs.secret}
	}
	port := func(t workflow.Task, pt workflow.Port, chans []workflow.Channel, out bool) node.RunPort {
		e := p.Workflow.Edges[pt.Edge]
		rp := node.RunPort{Name: pt.Name, Pattern: string(e.Pattern), Key: e.Key}
		for _, ch := range chans {
			end := ch.To
			if !out {
				end = ch.From
			}
			if ch.Edge != pt.Edge || (out && ch.From.Port != pt.Name) || (!out && ch.To.Port != pt.Name) {
				continue
			}
			rc := node.RunChannel{ID: ch.ID, Mode: ch.Mode, Buffer: ch.Buffers.Bytes(), Reader: fns[p.Workflow.Edges[ch.Edge].To.Stage].Function.Name}
			if other := p.Node[end.Task]; other != p.Node[t.ID] {
				rc.Peer, rc.PeerNode = peers[other], other
			}
			rp.Channels = append(rp.Channels, rc)
		}
		return rp
	}
	for _, t := range p.Tasks {
		rt := node.RunTask{ID: t.ID, Stage: t.Stage, Index: t.Index, Count: t.Count, Params: t.Params,
			Interface: t.Interface, Start: fns[t.Stage]}
		if len(t.Inputs) == 0 {
			rt.Input = input
		}
		ins, outs := p.Inputs(t.ID), p.Outputs(t.ID)
		for _, pt := range t.Inputs {
			rt.Inputs = append(rt.Inputs, port(t, pt, ins, false))
		}
		for _, pt := range t.Outputs {
			rt.Outputs = append(rt.Outputs, port(t, pt, outs, true))
		}
		pr := out[p.Node[t.ID]]
		pr.Tasks = append(pr.Tasks, rt)
	}
	return out
}

// execute prepares and runs rs to its end.
func (s *Server) execute(rs *runState, prep map[string]*node.RunPrepare) {
	defer s.endRun(rs)
	id := rs.status.ID
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(rs.nodes))
	for i, n := range rs.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.nodeCall(rs.ctx, http.MethodPut, n, "/v1/runs/"+id, prep[n], nil)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("preparing node %s: %w", n, errs[i])
				rs.cancel()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		rs.fail("", "", err.Error())
		return
	}
	rs.mu.Lock()
	rs.status.Prepare = time.Since(start)
	if rs.status.State == "preparing" {
		rs.status.State = "running"
	}
	rs.mu.Unlock()

	stopPoll := s.pollProgress(rs)
	defer stopPoll()
	// The first failure, or a cancel, ends the run on every node.
	stopEnd := context.AfterFunc(rs.ctx, func() { s.closeRun(rs) })
	defer stopEnd()
	for _, t := range rs.plan.Tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Not canceled by rs.ctx: a run ends on the nodes (DELETE),
			// and each task then answers how it ended, so that the first
			// cause is not lost to the cancellation it caused.
			var res node.TaskResult
			err := s.nodeCall(context.Background(), http.MethodPost, rs.plan.Node[t.ID], "/v1/runs/"+id+"/tasks/"+t.ID, nil, &res)
			if err != nil {
				res = node.TaskResult{Task: t.ID, Failure: "canceled", Error: err.Error()}
				if rs.ctx.Err() == nil {
					res.Failure = "node"
					res.Error = fmt.Sprintf("node %s: %v", rs.plan.Node[t.ID], err)
				}
			}
			s.taskDone(rs, t, res)
		}()
	}
	wg.Wait()
}

// taskDone records a task's end: a failure cancels the run; ref and inline
// outputs go to their consumers' nodes.
func (s *Server) taskDone(rs *runState, t workflow.Task, res node.TaskResult) {
	rs.mu.Lock()
	rs.results[t.ID] = res
	rs.mu.Unlock()
	switch res.Failure {
	case "":
	case "channel":
		// A broken channel is usually the echo of a failure at its other
		// end, whose own report is on its way: give it a moment to arrive
		// before the run's end turns that task's failure into "canceled".
		time.AfterFunc(channelGrace, rs.cancel)
		return
	default:
		rs.cancel()
		return
	}
	for _, ch := range rs.plan.Outputs(t.ID) {
		feed, ok := res.Held[ch.ID]
		if !ok {
			continue
		}
		n := rs.plan.Node[ch.To.Task]
		if err := s.nodeCall(rs.ctx, http.MethodPut, n, "/v1/runs/"+rs.status.ID+"/channels/"+ch.ID, feed, nil); err != nil {
			rs.mu.Lock()
			rs.results[t.ID] = node.TaskResult{Task: t.ID, Failure: "channel", Error: fmt.Sprintf("feeding channel %s on node %s: %v", ch.ID, n, err)}
			rs.mu.Unlock()
			rs.cancel()
			return
		}
	}
}

// pollProgress reads the nodes' task counters twice a second.
func (s *Server) pollProgress(rs *runState) (stop func()) {
	ctx, cancel := context.WithCancel(rs.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, n := range rs.nodes {
				var p node.RunProgress
				if err := s.nodeCall(ctx, http.MethodGet, n, "/v1/runs/"+rs.status.ID, nil, &p); err != nil {
					continue
				}
				rs.mu.Lock()
				for id, tp := range p.Tasks {
					rs.progress[id] = tp
				}
				rs.mu.Unlock()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// endRun closes the run on every node and settles its final status.
func (s *Server) endRun(rs *runState) {
	s.closeRun(rs)
	rs.mu.Lock()
	canceled := rs.status.State == "canceling"
	if !rs.status.Done() {
		cause := rs.rootCause()
		switch {
		case cause != nil && !(canceled && cause.Failure == "canceled"):
			rs.failLocked(cause)
		case canceled:
			rs.status.State, rs.status.Error = "canceled", "the run was canceled before it finished"
		default:
			rs.status.State = "succeeded"
		}
	}
	rs.status.Ended = time.Now()
	rs.status.Elapsed = rs.status.Ended.Sub(rs.status.Started)
	snap := rs.snapshotLocked()
	rs.mu.Unlock()
	rs.cancel()
	if b, err := json.Marshal(runRecord{Run: snap, Input: rs.input}); err == nil {
		if err := s.db.PutRun(snap.ID, b); err != nil {
			s.log.Warn("run status not stored", "run", snap.ID, "err", err)
		}
	}
	s.log.Info("workflow run ended", "run", snap.ID, "workflow", snap.Workflow, "state", snap.State, "elapsed", snap.Elapsed, "err", snap.Error)
	// Keep the run in memory a while for status polls; the database has it
	// afterwards.
	time.AfterFunc(10*time.Minute, func() {
		s.runsMu.Lock()
		delete(s.runs, snap.ID)
		s.runsMu.Unlock()
	})
}

// closeRun ends the run on every node: channels closed, instances
// stopped. Tasks still running answer "canceled".
func (s *Server) closeRun(rs *runState) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range rs.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.nodeCall(ctx, http.MethodDelete, n, "/v1/runs/"+rs.status.ID, nil, nil); err != nil {
				s.log.Warn("run not closed on node", "run", rs.status.ID, "node", n, "err", err)
			}
		}()
	}
	wg.Wait()
}

// rootCause picks the failure the others follow from: a task's own failure
// (its instance died or its handler failed) before a broken channel, a
// broken channel before a cancellation; upstream before downstream.
func (rs *runState) rootCause() *node.TaskResult {
	rank := map[string]int{"crash": 0, "handler": 0, "start": 0, "node": 1, "channel": 2, "canceled": 3}
	var best *node.TaskResult
	bestRank := 99
	for _, t := range rs.plan.Tasks { // topological order
		res, ok := rs.results[t.ID]
		if !ok || res.Failure == "" {
			continue
		}
		r, known := rank[res.Failure]
		if !known {
			r = 1
		}
		if r < bestRank {
			best, bestRank = &res, r
		}
	}
	return best
}

// failLocked fails the run with res as its cause.
func (rs *runState) failLocked(res *node.TaskResult) {
	var stage string
	for _, t := range rs.plan.Tasks {
		if t.ID == res.Task {
			stage = t.Stage
		}
	}
	var edges []string
	for _, e := range rs.plan.Workflow.Edges {
		if e.From.Stage == stage || e.To.Stage == stage {
			edges = append(edges, e.From.String()+"→"+e.To.String())
		}
	}
	edge := strings.Join(edges, ", ")
	msg := fmt.Sprintf("stage %s (task %s on node %s) failed: %s: %s", stage, res.Task, rs.plan.Node[res.Task], failureWord(res.Failure), res.Error)
	if edge != "" {
		msg += "; edges cut: " + edge + " (no partial data was taken as complete; retry the run)"
	}
	rs.status.State, rs.status.Error = "failed", msg
	rs.status.FailedStage, rs.status.FailedEdge = stage, edge
}

func failureWord(f string) string {
	switch f {
	case "crash":
		return "its instance died"
	case "handler":
		return "its handler returned an error"
	case "channel":
		return "a channel broke"
	case "start":
		return "it could not start"
	case "node":
		return "its node agent failed"
	}
	return f
}

func (rs *runState) fail(stage, edge, msg string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.status.Done() {
		return
	}
	rs.status.State, rs.status.Error = "failed", msg
	rs.status.FailedStage, rs.status.FailedEdge = stage, edge
}

func (rs *runState) snapshot() api.Run {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.snapshotLocked()
}

// snapshotLocked is the status with per-stage and per-edge counters from
// the tasks' results (exact) or last progress (while they run).
func (rs *runState) snapshotLocked() api.Run {
	out := rs.status
	out.Stages = append([]api.RunStage(nil), rs.status.Stages...)
	out.Edges = append([]api.RunEdge(nil), rs.status.Edges...)
	out.Results = nil
	if !out.Done() {
		out.Elapsed = time.Since(out.Started)
	}
	stageIx := map[string]int{}
	for i, st := range out.Stages {
		stageIx[st.Name] = i
	}
	for _, t := range rs.plan.Tasks {
		st := &out.Stages[stageIx[t.Stage]]
		if res, ok := rs.results[t.ID]; ok {
			st.BytesIn += res.BytesIn
			st.BytesOut += res.BytesOut
			if res.Failure != "" {
				st.Failed++
			} else {
				st.Done++
			}
			if len(t.Outputs) == 0 && res.Failure == "" {
				out.Results = append(out.Results, api.RunResult{Task: t.ID, Output: res.Output})
			}
			continue
		}
		p := rs.progress[t.ID]
		st.BytesIn += p.BytesIn
		st.BytesOut += p.BytesOut
	}
	for _, ch := range rs.plan.Channels {
		res, ok := rs.results[ch.From.Task]
		if !ok {
			continue
		}
		parts := res.Ports["out:"+ch.From.Port]
		if ch.From.Part < len(parts) {
			out.Edges[ch.Edge].Bytes += parts[ch.From.Part]
		} else if held, ok := res.Held[ch.ID]; ok {
			out.Edges[ch.Edge].Bytes += held.Size
		}
	}
	return out
}

// nodeCall sends one run request to a node agent and decodes its JSON
// answer into out (when not nil).
func (s *Server) nodeCall(ctx context.Context, method, nodeID, path string, body, out any) error {
	resp, err := s.nodeRequest(ctx, method, nodeID, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errorFrom(resp)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
