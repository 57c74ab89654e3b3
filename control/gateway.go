package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/state"
	"github.com/handoff-dev/handoff/wire"
	"github.com/handoff-dev/handoff/xfer"
)

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fn/{name}", s.handleInvoke)
	mux.HandleFunc("GET /invocations/{id}", s.handleInvocation)
	mux.HandleFunc("GET /invocations/{id}/output", s.handleInvocationOutput)
	// The management API runs programs on the nodes: it needs the admin token.
	mux.HandleFunc("PUT /v1/functions/{name}", s.adminOnly(s.handleDeploy))
	mux.HandleFunc("GET /v1/functions", s.adminOnly(s.handleListFunctions))
	mux.HandleFunc("GET /v1/functions/{name}", s.adminOnly(s.handleGetFunction))
	mux.HandleFunc("DELETE /v1/functions/{name}", s.adminOnly(s.handleRemove))
	mux.HandleFunc("GET /v1/status", s.adminOnly(s.handleStatus))
	mux.HandleFunc("GET /v1/logs/{name}", s.adminOnly(s.handleLogs))
	// Workflows run code on the nodes too: the admin token again.
	mux.HandleFunc("PUT /v1/workflows/{name}", s.adminOnly(s.handlePutWorkflow))
	mux.HandleFunc("POST /workflows/{name}/runs", s.adminOnly(s.handleStartRun))
	mux.HandleFunc("GET /workflows/{name}/runs/{id}", s.adminOnly(s.handleGetRun))
	mux.HandleFunc("DELETE /workflows/{name}/runs/{id}", s.adminOnly(s.handleCancelRun))
	mux.HandleFunc("POST /workflows/{name}/runs/{id}/retry", s.adminOnly(s.handleRetryRun))
	mux.HandleFunc("POST /v1/nodes/{id}/heartbeat", s.nodeOnly(s.handleHeartbeat))
	mux.HandleFunc("GET /v1/nodes/functions/{name}", s.nodeOnly(s.handleStartRequest))
	mux.HandleFunc("POST /v1/store/meta/{op}", s.storeMetaHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("GET /metrics", s.metrics.handler())
	return mux
}

// handleStartRequest tells a node agent how to start an instance of a
// function on its own (a leased executor): the spec and the built binary.
func (s *Server) handleStartRequest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f := s.function(name)
	if f == nil {
		notDeployed(w, name)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, node.StartRequest{Function: f.spec, Binary: f.binary})
}

// nodeOnly admits requests that carry the cluster token.
func (s *Server) nodeOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !httpx.HasToken(r.Header, s.cfg.Token) {
			httpx.WriteError(w, http.StatusUnauthorized, "unauthenticated", "only node agents of this cluster may call this endpoint")
			return
		}
		h(w, r)
	}
}

// adminOnly admits requests that carry the admin token as a bearer token.
func (s *Server) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + s.cfg.AdminToken)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			httpx.WriteError(w, http.StatusUnauthorized, "unauthenticated", "the management API needs the admin token: the CLI reads it from the state directory of `handoff up` (admin.token), or give --token / $HANDOFF_TOKEN")
			return
		}
		h(w, r)
	}
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func notDeployed(w http.ResponseWriter, name string) {
	httpx.WriteError(w, http.StatusNotFound, "not_deployed", fmt.Sprintf("function %q is not deployed; deploy it with `handoff deploy -f SPEC.yaml` (see `handoff ls`)", name))
}

// handleInvoke is the gateway's invocation path: pick an instance (waiting if
// all are busy or the function is scaled to zero), then stream the body to it
// through its node agent and the answer back.
func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f := s.function(name)
	if f == nil {
		notDeployed(w, name)
		return
	}
	// Only a node agent (holding the cluster token) may say which function
	// calls; anyone else is a client.
	caller := ""
	if httpx.HasToken(r.Header, s.cfg.Token) {
		caller = r.Header.Get(httpx.HeaderCaller)
	} else {
		// References in place of bodies are for node agents; a client
		// sends the bytes (or a reference inside its body, as data).
		r.Header.Del(refpass.HeaderRef)
	}
	mode := xfer.Inline
	if r.ContentLength > 0 {
		m, _, err := s.policy.Choose(xfer.Edge{From: caller, To: name, Size: r.ContentLength})
		if err != nil {
			s.metrics.invocations.WithLabelValues(name, "413").Inc()
			httpx.WriteError(w, http.StatusRequestEntityTooLarge, "payload_too_large", err.Error())
			return
		}
		mode = m
	}
	rid := r.Header.Get(httpx.HeaderRequestID)
	if rid == "" {
		rid = newRequestID()
	}
	w.Header().Set(httpx.HeaderRequestID, rid)
	if r.URL.Query().Get("async") == "1" {
		s.enqueueAsync(w, r, f, rid)
		return
	}
	if mode == xfer.Inline {
		r.Body = http.MaxBytesReader(w, r.Body, s.policy.InlineMax)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), f.spec.Timeout.Std())
	defer cancel()
	b, err := f.route.acquire(ctx)
	if err != nil {
		s.routeError(w, name, f, err)
		return
	}
	defer f.route.release(b)
	set := func(h http.Header) {
		httpx.SetToken(h, s.cfg.Token)
		if caller != "" {
			h.Set(httpx.HeaderCaller, caller)
		} else {
			h.Del(httpx.HeaderCaller)
		}
		h.Set(httpx.HeaderRequestID, rid)
		h.Set(httpx.HeaderFunction, name)
	}
	var status int
	var in, out, viaRef int64
	if mode == xfer.Ref {
		// The upload goes into a buffer on the receiver's node, and the
		// invocation carries a reference to it: the instance gets it from
		// its own node's memory.
		n, err := s.putRef(ctx, w, r, b, name)
		if err != nil {
			s.metrics.observe(name, http.StatusBadGateway, time.Since(start), n, 0)
			return
		}
		viaRef = n
	}
	small := r.ContentLength >= 0 && r.ContentLength <= wire.MaxBody
	direct := mode == xfer.Inline && caller == "" && r.Header.Get(refpass.HeaderRef) == ""
	if small && direct && b.directOn(time.Now()) {
		// A client's small invocation of an SDK instance goes straight to
		// it; calls between functions keep the node agent, which turns
		// large answers into references.
		status, in, out, err = s.forwardDirect(ctx, w, r, b, set)
	} else if b.wireAddr != "" && small {
		// Small bodies take the framed path: one goroutine per side.
		body, rerr := io.ReadAll(r.Body)
		if rerr != nil {
			status, in, out, err = 0, int64(len(body)), 0, httpx.Upstream(rerr)
		} else {
			status, in, out, err = s.forwardWire(ctx, w, r, b, body, set)
		}
	} else {
		status, in, out, err = httpx.Forward(w, r.WithContext(ctx), s.toNodes, b.nodeURL+"/v1/invoke/"+b.id, set)
	}
	in += viaRef
	if errors.Is(err, httpx.ErrUpstream) {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			status = http.StatusRequestEntityTooLarge
			httpx.WriteError(w, status, "payload_too_large", fmt.Sprintf("the body for %s exceeds the inline limit %s; raise --inline-max or send it by reference", name, xfer.Human(s.policy.InlineMax)))
		case ctx.Err() == context.DeadlineExceeded:
			status = http.StatusGatewayTimeout
			httpx.WriteError(w, status, "timeout", fmt.Sprintf("function %s did not answer within its timeout %s; raise `timeout` in its spec", name, f.spec.Timeout.Std()))
		case errors.As(err, new(directError)):
			status = http.StatusBadGateway
			httpx.WriteError(w, status, "instance_failed", fmt.Sprintf("function %s instance %s on node %s failed during the call: %v; it may have crashed (see `handoff logs %s`); a call that may have run is not retried", name, b.id, b.node, errors.Unwrap(errors.Unwrap(err)), name))
		default:
			status = http.StatusBadGateway
			httpx.WriteError(w, status, "node_unreachable", fmt.Sprintf("function %s: node agent %s failed: %v", name, b.node, errors.Unwrap(err)))
		}
	}
	s.metrics.observe(name, status, time.Since(start), in, out)
}

// putRef stores r's body in a buffer on b's node agent and replaces the
// body with a reference to it that only function name may read, once. On
// error it has answered the client.
func (s *Server) putRef(ctx context.Context, w http.ResponseWriter, r *http.Request, b *backend, name string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.nodeURL+"/v1/refs?reads=1&readers="+url.QueryEscape(name), r.Body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = r.ContentLength
	httpx.SetToken(req.Header, s.cfg.Token)
	resp, err := s.toNodes.RoundTrip(req)
	if err != nil {
		httpx.WriteError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("function %s: node agent %s could not take the upload: %v", name, b.node, err))
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		// The node's error ({"code","error"}) says what to do; pass it on.
		httpx.CopyHeaders(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 64<<10))
		return 0, fmt.Errorf("node %s refused the upload: %s", b.node, resp.Status)
	}
	var put node.PutResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&put); err != nil || put.Ref == "" {
		httpx.WriteError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("function %s: node agent %s answered the upload with no reference", name, b.node))
		return 0, fmt.Errorf("no reference in the answer: %v", err)
	}
	r.Body, r.ContentLength = http.NoBody, 0
	r.Header.Del("Content-Length")
	r.Header.Set(refpass.HeaderRef, put.Ref)
	return put.Size, nil
}

// forwardWire sends a small invocation to b's node agent over the framed
// protocol. Errors before the answer began satisfy errors.Is(err,
// httpx.ErrUpstream), as Forward's do.
func (s *Server) forwardWire(ctx context.Context, w http.ResponseWriter, r *http.Request, b *backend, body []byte, set func(http.Header)) (int, int64, int64, error) {
	h := http.Header{}
	httpx.CopyHeaders(h, r.Header)
	set(h)
	status, out, err := s.wire.forward(ctx, w, b.wireAddr, &wire.Request{Target: b.id, Header: h, Body: body})
	if err != nil {
		return 0, int64(len(body)), 0, httpx.Upstream(err)
	}
	return status, int64(len(body)), out, nil
}

// directError is a framed call straight to an instance that failed after
// the request was sent: the instance may have run it.
type directError struct{ err error }

func (e directError) Error() string { return e.err.Error() }
func (e directError) Unwrap() error { return e.err }

// forwardDirect sends a client's small invocation straight to b, an SDK
// instance serving the framed protocol, with the instance's own secret and
// without the cluster token. If the instance cannot be reached (not an SDK
// program, restarting, gone) the call goes through its node agent, which
// answers as it always has; the direct path rests for a second.
func (s *Server) forwardDirect(ctx context.Context, w http.ResponseWriter, r *http.Request, b *backend, set func(http.Header)) (int, int64, int64, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return 0, int64(len(body)), 0, httpx.Upstream(err)
	}
	h := http.Header{}
	httpx.CopyHeaders(h, r.Header)
	set(h)
	h.Del(httpx.HeaderToken) // never to an instance
	h.Del(httpx.HeaderCaller)
	h.Del(node.HeaderDeadline)
	status, out, err := s.direct.forward(ctx, w, b.direct, &wire.Request{Target: b.id, Header: h, Body: body})
	if err == nil {
		return status, int64(len(body)), out, nil
	}
	if errors.As(err, new(dialError)) && ctx.Err() == nil {
		b.directRest(time.Now())
		if b.wireAddr != "" {
			return s.forwardWire(ctx, w, r, b, body, set)
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		return httpx.Forward(w, r.WithContext(ctx), s.toNodes, b.nodeURL+"/v1/invoke/"+b.id, set)
	}
	if ctx.Err() != nil {
		return 0, int64(len(body)), 0, httpx.Upstream(ctx.Err())
	}
	return 0, int64(len(body)), 0, httpx.Upstream(directError{err})
}

func (s *Server) routeError(w http.ResponseWriter, name string, f *function, err error) {
	status, code, msg := http.StatusServiceUnavailable, "unavailable", err.Error()
	switch {
	case errors.Is(err, ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		code = "queue_full"
		msg = fmt.Sprintf("function %s is at its limit: every instance is busy and %d requests already wait; retry later or raise scale.max or concurrency", name, s.cfg.MaxQueue)
	case errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusGatewayTimeout, "timeout"
		msg = fmt.Sprintf("function %s had no free instance within its timeout %s; raise scale.max or timeout", name, f.spec.Timeout.Std())
	case errors.Is(err, ErrStartFailed):
		code = "start_failed"
		msg = fmt.Sprintf("function %s could not start: %v (see `handoff logs %s`)", name, errors.Unwrap(err), name)
		if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 1 {
			msg = fmt.Sprintf("function %s could not start: %v (see `handoff logs %s`)", name, j.Unwrap()[1], name)
		}
	case errors.Is(err, context.Canceled):
		status, code, msg = 499, "canceled", "the client went away"
	}
	s.metrics.invocations.WithLabelValues(name, strconv.Itoa(status)).Inc()
	httpx.WriteError(w, status, code, msg)
}

func (s *Server) enqueueAsync(w http.ResponseWriter, r *http.Request, f *function, rid string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.policy.InlineMax))
	if err != nil {
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("the async body for %s exceeds the inline limit %s; raise --inline-max", f.spec.Name, xfer.Human(s.policy.InlineMax)))
		return
	}
	inv, err := s.db.Enqueue(f.spec.Name, body, s.cfg.AsyncAttempts, rid)
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state_error", "could not queue the invocation: "+err.Error())
		return
	}
	s.wakeAsync()
	w.Header().Set("Location", "/invocations/"+inv.ID)
	httpx.WriteJSON(w, http.StatusAccepted, api.Accepted{ID: inv.ID, Status: string(inv.Status), URL: "/invocations/" + inv.ID})
}

func (s *Server) handleInvocation(w http.ResponseWriter, r *http.Request) {
	inv, err := s.db.Invocation(r.PathValue("id"))
	if errors.Is(err, state.ErrNotFound) {
		httpx.WriteError(w, http.StatusNotFound, "no_invocation", "no invocation "+r.PathValue("id")+"; results are kept for 24 hours")
		return
	} else if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state_error", err.Error())
		return
	}
	v := api.Invocation{ID: inv.ID, Function: inv.Function, Status: string(inv.Status), Attempts: inv.Attempts,
		HTTPStatus: inv.HTTPStatus, Error: inv.Error, Created: inv.Created, Updated: inv.Updated, RequestID: inv.RequestID}
	if inv.Status == state.StatusSucceeded || inv.Status == state.StatusFailed {
		if utf8.Valid(inv.Output) {
			out := string(inv.Output)
			v.Output = &out
		} else {
			v.OutputBase64 = inv.Output
		}
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) handleInvocationOutput(w http.ResponseWriter, r *http.Request) {
	inv, err := s.db.Invocation(r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, http.StatusNotFound, "no_invocation", "no invocation "+r.PathValue("id"))
		return
	}
	if inv.Status != state.StatusSucceeded && inv.Status != state.StatusFailed {
		httpx.WriteError(w, http.StatusConflict, "not_finished", "invocation "+inv.ID+" is "+string(inv.Status)+"; poll /invocations/"+inv.ID)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(inv.Output)
}

func (s *Server) handleDeploy(w http.ResponseWriter, r *http.Request) {
	var f spec.Function
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_spec", "function spec: "+err.Error())
		return
	}
	if f.Name != r.PathValue("name") {
		httpx.WriteError(w, http.StatusBadRequest, "bad_spec", fmt.Sprintf("the spec names %q but the URL names %q", f.Name, r.PathValue("name")))
		return
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_spec", err.Error())
		return
	}
	if f.Run.Go != "" {
		// Build before storing, so a spec that cannot build is never live.
		if _, err := s.build(f, 0); err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "build_failed", err.Error())
			return
		}
	}
	version, err := s.db.PutFunction(f)
	if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state_error", err.Error())
		return
	}
	fn, err := s.install(f, version)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "install_failed", err.Error())
		return
	}
	s.parkNotify(f.Name, fn)
	s.log.Info("deployed", "function", f.Name, "version", version)
	httpx.WriteJSON(w, http.StatusOK, api.Function{Function: f, Version: version})
}

func (s *Server) view(f *function) api.Function {
	st := f.route.stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	return api.Function{Function: f.spec, Version: f.version, Ready: st.Ready, Starting: f.starting, Draining: st.Draining,
		InFlight: st.InFlight, Queued: st.Queued, Desired: f.decision.Desired, Panic: f.decision.Panic, Reason: f.decision.Reason}
}

func (s *Server) handleListFunctions(w http.ResponseWriter, r *http.Request) {
	views := []api.Function{}
	for _, name := range s.functionNames() {
		if f := s.function(name); f != nil {
			views = append(views, s.view(f))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, views)
}

func (s *Server) handleGetFunction(w http.ResponseWriter, r *http.Request) {
	f := s.function(r.PathValue("name"))
	if f == nil {
		notDeployed(w, r.PathValue("name"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s.view(f))
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.db.DeleteFunction(name); errors.Is(err, state.ErrNotFound) {
		notDeployed(w, name)
		return
	} else if err != nil {
		httpx.WriteError(w, http.StatusInternalServerError, "state_error", err.Error())
		return
	}
	s.mu.Lock()
	f := s.funcs[name]
	delete(s.funcs, name)
	s.mu.Unlock()
	if f != nil {
		s.retire(f, "removed")
	}
	s.parkNotify(name, nil)
	s.log.Info("removed", "function", name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := api.Status{Gateway: s.URL(), Nodes: []api.Node{}, Functions: []api.Function{}, Async: map[string]int{}}
	s.mu.Lock()
	for _, n := range s.nodes {
		st.Nodes = append(st.Nodes, api.Node{ID: n.id, Addr: n.addr, S3: n.last.S3Addr, StoreDir: n.last.StoreMount, Up: n.up, LastSeen: n.lastSeen, RSS: n.last.RSS, Instances: n.last.Instances})
	}
	s.mu.Unlock()
	sortNodes(st.Nodes)
	for _, name := range s.functionNames() {
		if f := s.function(name); f != nil {
			st.Functions = append(st.Functions, s.view(f))
		}
	}
	if counts, err := s.db.Counts(); err == nil {
		for k, v := range counts {
			st.Async[string(k)] = v
		}
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

func sortNodes(ns []api.Node) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].ID < ns[j].ID })
}

// handleLogs gathers a function's instance logs from every live node.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := spec.CheckName(name); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_name", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, id := range s.liveNodes() {
		resp, err := s.nodeRequest(r.Context(), http.MethodGet, id, "/v1/logs/"+name, nil)
		if err != nil {
			fmt.Fprintf(w, "==> node %s: logs unavailable: %v <==\n", id, err)
			continue
		}
		_, _ = httpx.Copy(w, resp.Body)
		resp.Body.Close()
	}
}
