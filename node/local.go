package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/spec"
)

// localHandler serves the local API that instances reach over $HANDOFF_API.
// A function-to-function call goes to the gateway, whose router picks the
// receiving instance as for any call; the node agent is the sender's trusted
// component on that path (where reference passing will hook in).
//
// Every instance gets a socket of its own, so the agent knows which function
// calls without trusting anything the caller says; caller is that function
// ("" on the node-wide socket, which anonymous local tools may use).
func (a *Agent) localHandler(caller, instance string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /fn/{name}", func(w http.ResponseWriter, r *http.Request) { a.handleLocalInvoke(w, r, caller) })
	mux.HandleFunc("POST /v1/refs", func(w http.ResponseWriter, r *http.Request) { a.handlePutRef(w, r, caller) })
	mux.HandleFunc("GET /v1/refs/{token}", func(w http.ResponseWriter, r *http.Request) { a.handleGetRef(w, r, caller) })
	if instance != "" { // leased executors report through their own socket
		mux.HandleFunc("POST /v1/direct", func(w http.ResponseWriter, r *http.Request) { a.leases.handleDirect(w, r, instance) })
		mux.HandleFunc("POST /v1/leases/check", func(w http.ResponseWriter, r *http.Request) { a.leases.handleCheck(w, r, instance) })
		mux.HandleFunc("POST /v1/leases/stats", func(w http.ResponseWriter, r *http.Request) { a.leases.handleStats(w, r, instance) })
	}
	return mux
}

func (a *Agent) handleLocalInvoke(w http.ResponseWriter, r *http.Request, caller string) {
	name := r.PathValue("name")
	if err := spec.CheckName(name); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_name", err.Error())
		return
	}
	start := time.Now()
	// A large body stays here, in a node-owned buffer; the receiver's
	// node agent pulls it straight from this one.
	r, err := a.refRequest(r, caller, name)
	if err != nil {
		writeRefError(w, err)
		return
	}
	status, in, out, err := httpx.ForwardVia(w, r, a.toCtl, a.cfg.ControlURL+"/fn/"+name, func(h http.Header) {
		httpx.SetToken(h, a.cfg.Token)
		h.Set(httpx.HeaderCaller, caller)
	}, func(resp *http.Response) error { return a.derefAnswer(r.Context(), resp, caller) })
	switch {
	case errors.Is(err, httpx.ErrUpstream) && isRefError(errors.Unwrap(err)):
		status, _ = refpass.Status(errors.Unwrap(err))
		writeRefError(w, errors.Unwrap(err))
	case errors.Is(err, httpx.ErrUpstream):
		status = http.StatusBadGateway
		httpx.WriteError(w, status, "gateway_unreachable", fmt.Sprintf("node %s could not reach the gateway to call %s: %v", a.cfg.ID, name, errors.Unwrap(err)))
	}
	a.metrics.observeLocal(name, status, time.Since(start), in, out)
}

// instanceAPI serves the local API on sockets of the instance's own, until
// the returned stop is called: HTTP on path, descriptor passing on fdPath.
func (a *Agent) instanceAPI(fn, instance string) (path, fdPath string, stop func(), err error) {
	a.mu.Lock()
	a.sockets++
	n := a.sockets
	a.mu.Unlock()
	// Short names: a Unix socket path must fit in 108 bytes.
	path = filepath.Join(a.cfg.Dir, "api", strconv.FormatUint(n, 10)+".sock")
	fdPath = filepath.Join(a.cfg.Dir, "api", strconv.FormatUint(n, 10)+".fd")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", nil, err
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return "", "", nil, fmt.Errorf("local API socket for %s: %w", fn, err)
	}
	stopFD, err := a.fdSocket(fdPath, fn, instance)
	if err != nil {
		ln.Close()
		return "", "", nil, err
	}
	srv := &http.Server{Handler: a.localHandler(fn, instance), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return path, fdPath, func() {
		srv.Close()
		stopFD()
		os.Remove(path)
	}, nil
}

// heartbeats registers the agent and reports its instances until ctx is done.
func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	client := &http.Client{Transport: a.toCtl, Timeout: 5 * time.Second}
	failing := false
	for {
		err := a.beat(ctx, client)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("heartbeat to control plane failed; retrying", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("heartbeat to control plane restored")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) beat(ctx context.Context, client *http.Client) error {
	hb := Heartbeat{ID: a.cfg.ID, Addr: a.Addr(), WireAddr: a.wireLn.Addr().String(), S3Addr: a.s3Ln.Addr().String(), StoreMount: a.StoreMount(), Boot: a.boot, Instances: a.infos(), RSS: selfRSS(),
		Holder: a.holder, Adopted: a.refs.Adopted()}
	if a.cfg.AdminToken != "" {
		c := a.leases.capacity()
		hb.Leases = &c
	}
	if a.peerLn != nil {
		hb.PeerAddr = a.peerLn.Addr().String()
	}
	body, _ := json.Marshal(hb)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.ControlURL+"/v1/nodes/"+a.cfg.ID+"/heartbeat", bytes.NewReader(body))
	if err != nil {
		return err
	}
	httpx.SetToken(req.Header, a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("control plane answered %s", resp.Status)
	}
	var d Directory
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d) == nil {
		a.setPeers(d)
		a.leases.setPeers(d.Leases)
	}
	return nil
}

// selfRSS reads this process's resident set size from /proc (0 if unknown).
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
