package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/fdpass"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/xfer"
)

// A workflow run reaches a node agent in four calls from the control
// plane's runner:
//
//	PUT    /v1/runs/{run}                   prepare: start an instance per task, open every channel
//	POST   /v1/runs/{run}/tasks/{task}      run one task to its end; the answer is a TaskResult
//	PUT    /v1/runs/{run}/channels/{ch}     feed a ref or inline channel the producer filled
//	GET    /v1/runs/{run}                   progress of the node's tasks
//	DELETE /v1/runs/{run}                   end the run: close channels, stop instances
//
// Prepare returns only when every channel with an end on this node is open
// (same-node pipes made, cross-node streams connected), so that no
// producer writes before its consumer can read.

// RunPrepare is the body of PUT /v1/runs/{run}.
type RunPrepare struct {
	// Secret is the run's shared secret: a node taking a cross-node stream
	// checks it, so only the run's producers can feed its channels.
	Secret string    `json:"secret"`
	Tasks  []RunTask `json:"tasks"`
}

// RunTask is one task of a run hosted by this node.
type RunTask struct {
	ID        string            `json:"id"` // e.g. "gen-0"
	Stage     string            `json:"stage"`
	Index     int               `json:"index"`
	Count     int               `json:"count"`
	Params    map[string]string `json:"params,omitempty"`
	Interface string            `json:"interface"` // "stream" (SDK stage) or "http"
	Start     StartRequest      `json:"start"`
	Input     []byte            `json:"input,omitempty"` // a source's request body
	Inputs    []RunPort         `json:"inputs,omitempty"`
	Outputs   []RunPort         `json:"outputs,omitempty"`
}

// RunPort is one named input or output of a task.
type RunPort struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`       // the edge's pattern
	Key     string `json:"key,omitempty"` // partition and shuffle: hash or roundrobin
	// Channels has one channel per part, in part order.
	Channels []RunChannel `json:"channels"`
}

// RunChannel is one channel as one of its ends sees it.
type RunChannel struct {
	ID     string    `json:"id"`
	Mode   xfer.Mode `json:"mode"`
	Buffer int64     `json:"buffer"` // bytes of buffering (stream mode)
	// Peer is the peer address of the other end's node when it is not
	// this one; PeerNode names it in errors.
	Peer     string `json:"peer,omitempty"`
	PeerNode string `json:"peerNode,omitempty"`
	// Reader is the consuming function (ref mode: the reference's reader).
	Reader string `json:"reader,omitempty"`
}

// TaskResult answers POST /v1/runs/{run}/tasks/{task}.
type TaskResult struct {
	Task string `json:"task"`
	// Failure is empty on success, else what failed: "start", "crash"
	// (the instance died), "handler" (it answered an error), "channel"
	// (a channel broke under it) or "canceled".
	Failure string `json:"failure,omitempty"`
	Error   string `json:"error,omitempty"`
	// Output is a sink's response body: part of the run's result.
	Output []byte `json:"output,omitempty"`
	// BytesIn and BytesOut count data bytes over the task's channels.
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	// Ports are data bytes per part of each port, as the task counted
	// them ("in:name" and "out:name" keys).
	Ports map[string][]int64 `json:"ports,omitempty"`
	// Held are the ref and inline output channels this node filled:
	// channel id → what to feed the consumer's node with.
	Held    map[string]ChannelFeed `json:"held,omitempty"`
	Elapsed time.Duration          `json:"elapsedNs"`
}

// ChannelFeed is the body of PUT /v1/runs/{run}/channels/{ch}: the data of
// an inline channel or the reference of a ref channel.
type ChannelFeed struct {
	Data   []byte `json:"data,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Object string `json:"object,omitempty"` // mode store: the key in RunBucket
	Size   int64  `json:"size"`
}

// RunProgress answers GET /v1/runs/{run}.
type RunProgress struct {
	Tasks map[string]TaskProgress `json:"tasks"`
}

// TaskProgress is what a task has moved so far, read from its process's
// I/O counters (or the node's relays for http tasks).
type TaskProgress struct {
	State    string `json:"state"` // "starting", "ready", "running", "done", "failed"
	BytesIn  int64  `json:"bytesIn"`
	BytesOut int64  `json:"bytesOut"`
}

// HeaderTask carries the ticket with which a stage instance asks its node
// agent for its ports (over the descriptor socket, op "task").
const HeaderTask = "X-Handoff-Task"

// HeaderPorts carries, on a stage's answer, the data bytes it moved per
// port part as JSON (TaskResult.Ports).
const HeaderPorts = "X-Handoff-Ports"

// runs are the workflow runs with tasks on this node.
type runs struct {
	a *Agent

	mu      sync.Mutex // guards all following fields
	byID    map[string]*run
	tickets map[string]*task // stage ticket → task
}

func newRuns(a *Agent) *runs {
	return &runs{a: a, byID: map[string]*run{}, tickets: map[string]*task{}}
}

// run is one run's share of this node.
type run struct {
	id, secret string
	ctx        context.Context
	cancel     context.CancelFunc
	tasks      map[string]*task
	feeds      map[string]*feedEnd // ref and inline inputs, by channel id
	inbound    map[string]*inbound // cross-node streams awaited, by channel id
	closers    []io.Closer         // relays' ends, closed when the run ends
	mu         sync.Mutex          // guards closers, feeds, inbound and objects
	touched    atomic.Int64        // unix nanos of the runner's last call
	objects    []string            // store edges' objects written here; guarded by mu
}

func (r *run) keep(c io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, c)
}

// task is one hosted task.
type task struct {
	run    *run
	spec   RunTask
	ticket string
	instID string
	inst   *supervisor.Instance

	mu    sync.Mutex          // guards all following fields
	ends  map[string]*os.File // port ends not yet handed to the instance ("in/port/part")
	state string
	held  map[string]ChannelFeed
	// collectors finish the ref and inline outputs after the instance is
	// done; their errors fail the task.
	collectors []chan collected
	relayIn    int64 // http tasks: bytes the node relayed in and out
	relayOut   int64
	// died is how the instance ended when it died on its own (not
	// stopped by the run's end), "" while it has not.
	died string
}

type collected struct {
	ch   string
	feed ChannelFeed
	err  error
}

func endKey(dir, port string, part int) string { return fmt.Sprintf("%s/%s/%d", dir, port, part) }

func (t *task) setEnd(key string, f *os.File) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ends[key] = f
}

// takeEnd hands a port end over (to the instance, or to the node's own
// relay for http tasks); nil when it was taken already or never made.
func (t *task) takeEnd(key string) *os.File {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.ends[key]
	delete(t.ends, key)
	return f
}

// closeEnds closes the ends nobody took, so that the channels' other ends
// see the task gone instead of waiting for ever.
func (t *task) closeEnds() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, f := range t.ends {
		f.Close()
		delete(t.ends, k)
	}
}

func (t *task) setState(s string) {
	t.mu.Lock()
	t.state = s
	t.mu.Unlock()
}

// routes adds the run API to the node API (behind the cluster token).
func (rs *runs) routes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/runs/{run}", rs.handlePrepare)
	mux.HandleFunc("POST /v1/runs/{run}/tasks/{task}", rs.handleTask)
	mux.HandleFunc("PUT /v1/runs/{run}/channels/{ch}", rs.handleFeed)
	mux.HandleFunc("GET /v1/runs/{run}", rs.handleProgress)
	mux.HandleFunc("DELETE /v1/runs/{run}", rs.handleEnd)
}

func randomSecret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// get finds a run; every call from the runner keeps it alive (see sweep).
func (rs *runs) get(id string) *run {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	ru := rs.byID[id]
	if ru != nil {
		ru.touched.Store(time.Now().UnixNano())
	}
	return ru
}

// abandoned is how long a run may go without a call from its runner
// (which polls progress twice a second) before the node ends it: its
// control plane died or forgot it, and its instances would run for ever.
const abandoned = 3 * time.Minute

// sweep ends abandoned runs every few seconds until ctx is done.
func (rs *runs) sweep(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var old []*run
		rs.mu.Lock()
		for _, ru := range rs.byID {
			if time.Since(time.Unix(0, ru.touched.Load())) > abandoned {
				old = append(old, ru)
			}
		}
		rs.mu.Unlock()
		for _, ru := range old {
			rs.a.log.Warn("ending a workflow run its control plane abandoned", "run", ru.id)
			rs.end(ru)
		}
	}
}

func (rs *runs) handlePrepare(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run")
	var req RunPrepare
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "run prepare: "+err.Error())
		return
	}
	if !validID(id) || req.Secret == "" {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "run prepare: a valid run id and a secret are required")
		return
	}
	ctx, cancel := context.WithCancel(rs.a.ctx)
	ru := &run{id: id, secret: req.Secret, ctx: ctx, cancel: cancel, tasks: map[string]*task{},
		feeds: map[string]*feedEnd{}, inbound: map[string]*inbound{}}
	ru.touched.Store(time.Now().UnixNano())
	rs.mu.Lock()
	if rs.byID[id] != nil {
		rs.mu.Unlock()
		cancel()
		httpx.WriteError(w, http.StatusConflict, "run_exists", "run "+id+" is already prepared on node "+rs.a.cfg.ID)
		return
	}
	rs.byID[id] = ru
	for _, ts := range req.Tasks {
		t := &task{run: ru, spec: ts, ticket: randomSecret(), instID: instanceID(id, ts.ID), ends: map[string]*os.File{}, state: "starting", held: map[string]ChannelFeed{}}
		ru.tasks[ts.ID] = t
		rs.tickets[t.ticket] = t
	}
	rs.mu.Unlock()
	if err := rs.prepare(r.Context(), ru); err != nil {
		rs.end(ru)
		httpx.WriteError(w, http.StatusUnprocessableEntity, "prepare_failed", fmt.Sprintf("node %s could not prepare run %s: %v", rs.a.cfg.ID, id, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// instanceID names a task's instance: unique per run and task, and a
// valid instance id (the run id is cut to keep it short).
func instanceID(run, task string) string {
	if len(run) > 12 {
		run = run[:12]
	}
	return "w" + run + "-" + task
}

// prepare starts the instances and opens the channels, in parallel; the
// first error stops it.
func (rs *runs) prepare(ctx context.Context, ru *run) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := rs.openChannels(ctx, ru); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ru.tasks)+1)
	for _, t := range ru.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rs.startTask(ctx, t); err != nil {
				errs <- fmt.Errorf("task %s: %w", t.spec.ID, err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := rs.awaitInbound(ctx, ru); err != nil {
			errs <- err
			cancel()
		}
	}()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// startTask starts the task's own instance. A task instance is not
// restarted when it dies: its channels broke with it, so the task fails.
func (rs *runs) startTask(ctx context.Context, t *task) error {
	env := []string{"HANDOFF_RUN=" + t.run.id, "HANDOFF_TASK=" + t.spec.ID}
	inst, err := rs.a.startInstance(ctx, t.instID, t.spec.Start, env, func(s supervisor.State) {
		if s == supervisor.Restarting {
			t.mu.Lock()
			if t.inst != nil {
				t.died = t.inst.Info().LastExit
			}
			if t.died == "" {
				t.died = "exited"
			}
			t.mu.Unlock()
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if in := rs.a.instance(t.instID); in != nil {
					_ = in.Stop(sctx)
				}
			}()
		}
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.inst = inst
	t.state = "ready"
	t.mu.Unlock()
	return nil
}

func (rs *runs) handleEnd(w http.ResponseWriter, r *http.Request) {
	ru := rs.get(r.PathValue("run"))
	if ru == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rs.end(ru)
	w.WriteHeader(http.StatusNoContent)
}

// end cancels what still runs, closes every channel end the node holds
// and stops the run's instances.
func (rs *runs) end(ru *run) {
	rs.mu.Lock()
	if rs.byID[ru.id] == ru {
		delete(rs.byID, ru.id)
	}
	for _, t := range ru.tasks {
		delete(rs.tickets, t.ticket)
	}
	rs.mu.Unlock()
	ru.cancel()
	for _, t := range ru.tasks {
		t.closeEnds()
	}
	ru.mu.Lock()
	for _, c := range ru.closers {
		c.Close()
	}
	ru.closers = nil
	objects := ru.objects
	ru.objects = nil
	ru.mu.Unlock()
	// The run's store objects go with it: their consumers have read them.
	for _, key := range objects {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := rs.a.store.Delete(dctx, RunBucket, key); err != nil && !errors.Is(err, store.ErrNoSuchKey) {
			rs.a.log.Warn("a run's store object was not deleted; it expires within the hour", "run", ru.id, "key", key, "err", err)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range ru.tasks {
		if in := rs.a.instance(t.instID); in != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = in.Stop(ctx) }()
		}
	}
	wg.Wait()
}

func (rs *runs) handleProgress(w http.ResponseWriter, r *http.Request) {
	ru := rs.get(r.PathValue("run"))
	if ru == nil {
		httpx.WriteError(w, http.StatusNotFound, "no_such_run", "run "+r.PathValue("run")+" has no tasks on node "+rs.a.cfg.ID)
		return
	}
	out := RunProgress{Tasks: map[string]TaskProgress{}}
	for id, t := range ru.tasks {
		t.mu.Lock()
		p := TaskProgress{State: t.state, BytesIn: t.relayIn, BytesOut: t.relayOut}
		inst := t.inst
		t.mu.Unlock()
		if inst != nil && t.spec.Interface != "http" {
			p.BytesIn, p.BytesOut = procIO(inst.Info().PID)
		}
		out.Tasks[id] = p
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// procIO reads a process's bytes read and written through system calls
// (rchar, wchar): for a stage, its channels. 0, 0 when unknown.
func procIO(pid int) (in, out int64) {
	if pid <= 0 {
		return 0, 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		var n int64
		fmt.Sscan(v, &n)
		switch k {
		case "rchar":
			in = n
		case "wchar":
			out = n
		}
	}
	return in, out
}

// stageTicket finds the task a ticket names. Tickets are 128-bit random
// strings handed only to the task's own instance.
func (rs *runs) stageTicket(ticket string) *task {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.tickets[ticket]
}

// StageInfo is what a stage instance learns about its task (descriptor
// socket op "task"); its ports' ends follow one by one (op "port").
type StageInfo struct {
	Run     string            `json:"run"`
	Task    string            `json:"task"`
	Stage   string            `json:"stage"`
	Index   int               `json:"index"`
	Count   int               `json:"count"`
	Params  map[string]string `json:"params,omitempty"`
	Inputs  []StagePort       `json:"inputs,omitempty"`
	Outputs []StagePort       `json:"outputs,omitempty"`
}

// StagePort describes one port to the stage.
type StagePort struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
	Key     string `json:"key,omitempty"`
	Parts   int    `json:"parts"`
}

func (t *task) info() StageInfo {
	in := StageInfo{Run: t.run.id, Task: t.spec.ID, Stage: t.spec.Stage, Index: t.spec.Index, Count: t.spec.Count, Params: t.spec.Params}
	for _, p := range t.spec.Inputs {
		in.Inputs = append(in.Inputs, StagePort{Name: p.Name, Pattern: p.Pattern, Key: p.Key, Parts: len(p.Channels)})
	}
	for _, p := range t.spec.Outputs {
		in.Outputs = append(in.Outputs, StagePort{Name: p.Name, Pattern: p.Pattern, Key: p.Key, Parts: len(p.Channels)})
	}
	return in
}

// fdRequest answers a stage instance's "task" and "port" requests on its
// descriptor socket. A ticket works only from the task's own instance,
// and each port end is handed over once.
func (rs *runs) fdRequest(req fdpass.Request, instance string) (fdpass.Response, *os.File) {
	t := rs.stageTicket(req.Ticket)
	if t == nil || t.instID != instance {
		return fdpass.Response{Code: "bad_ticket", Error: "this instance holds no workflow task with that ticket; stages are started by workflow runs (handoff run)"}, nil
	}
	switch req.Op {
	case "task":
		b, err := json.Marshal(t.info())
		if err != nil {
			return fdpass.Response{Code: "internal", Error: err.Error()}, nil
		}
		return fdpass.Response{Info: b}, nil
	default:
		if req.Dir != "in" && req.Dir != "out" {
			return fdpass.Response{Code: "bad_request", Error: `a port request names dir "in" or "out"`}, nil
		}
		f := t.takeEnd(endKey(req.Dir, req.Port, req.Part))
		if f == nil {
			return fdpass.Response{Code: "bad_port", Error: fmt.Sprintf("task %s has no %s port %q part %d, or it was taken already", t.spec.ID, req.Dir, req.Port, req.Part)}, nil
		}
		return fdpass.Response{}, f
	}
}
