package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/node"
)

// nodeState is what the control plane knows of one node agent.
type nodeState struct {
	id, addr, boot string
	up             bool
	lastSeen       time.Time
	last           node.Heartbeat
	starting       int // instances being started there
}

// handleHeartbeat registers a node agent or refreshes it. A changed boot id
// means the agent restarted and lost its instances.
func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb node.Heartbeat
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&hb); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_heartbeat", "heartbeat: "+err.Error())
		return
	}
	if hb.ID != r.PathValue("id") || hb.Addr == "" {
		httpx.WriteError(w, http.StatusBadRequest, "bad_heartbeat", "heartbeat: node id or address missing")
		return
	}
	s.mu.Lock()
	n := s.nodes[hb.ID]
	fresh := n == nil
	if fresh {
		n = &nodeState{id: hb.ID}
		s.nodes[hb.ID] = n
	}
	restarted := !fresh && n.boot != hb.Boot
	wasDown := !fresh && !n.up
	n.addr, n.boot, n.up, n.lastSeen, n.last = hb.Addr, hb.Boot, true, time.Now(), hb
	listed := make(map[string]bool, len(hb.Instances))
	for _, in := range hb.Instances {
		listed[in.ID] = true
	}
	// Instances we placed there that the node no longer runs (it restarted,
	// or an instance failed for good) leave rotation.
	var gone []*instanceRef
	var goneFn []*function
	for _, f := range s.funcs {
		for id, ref := range f.instances {
			// A heartbeat may have left the node just before an instance
			// joined it, so young instances are not judged by absence.
			young := time.Since(ref.started) < 3*time.Second
			if ref.node == hb.ID && (restarted || (!listed[id] && !young)) {
				gone = append(gone, ref)
				goneFn = append(goneFn, f)
				delete(f.instances, id)
			}
		}
	}
	s.mu.Unlock()
	switch {
	case fresh:
		s.log.Info("node agent joined", "node", hb.ID, "addr", hb.Addr)
	case restarted:
		s.log.Warn("node agent restarted; its instances are gone", "node", hb.ID)
	case wasDown:
		s.log.Info("node agent is back", "node", hb.ID)
	}
	for i, ref := range gone {
		s.unroute(goneFn[i], ref.id)
		s.log.Warn("instance lost", "instance", ref.id, "node", ref.node)
		s.poke(goneFn[i].spec.Name)
	}
	httpx.WriteJSON(w, http.StatusOK, s.directory())
}

// directory tells node agents where to pull each holder's buffers: every
// live agent's own holder name, and the holders adopted from agents that
// drained (those point at the adopter).
func (s *Server) directory() node.Directory {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := node.Directory{Peers: make(map[string]string, len(s.nodes))}
	for _, n := range s.nodes {
		if !n.up || n.last.PeerAddr == "" {
			continue
		}
		d.Peers[n.last.Holder] = n.last.PeerAddr
		for _, h := range n.last.Adopted {
			d.Peers[h] = n.last.PeerAddr
		}
	}
	for _, n := range s.nodes {
		if n.up && n.last.Leases != nil {
			d.Leases = append(d.Leases, node.LeasePeer{Node: n.id, Addr: n.addr, Capacity: *n.last.Leases})
		}
	}
	return d
}

// watchNodes declares node agents lost when their heartbeats stop, and takes
// their instances out of rotation so the scaler replaces them elsewhere.
func (s *Server) watchNodes(ctx context.Context) {
	t := time.NewTicker(s.cfg.NodeTimeout / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		var lost []string
		for id, n := range s.nodes {
			if n.up && now.Sub(n.lastSeen) > s.cfg.NodeTimeout {
				n.up = false
				lost = append(lost, id)
			}
		}
		type gone struct {
			f  *function
			id string
		}
		var gs []gone
		for _, f := range s.funcs {
			for id, ref := range f.instances {
				for _, l := range lost {
					if ref.node == l {
						gs = append(gs, gone{f, id})
						delete(f.instances, id)
					}
				}
			}
		}
		s.mu.Unlock()
		for _, l := range lost {
			s.log.Error("node agent lost: no heartbeat", "node", l, "after", s.cfg.NodeTimeout)
		}
		for _, g := range gs {
			s.unroute(g.f, g.id)
			s.poke(g.f.spec.Name)
		}
	}
}

func (s *Server) nodeAddr(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil || !n.up {
		return "", fmt.Errorf("node agent %s is not available", id)
	}
	return n.addr, nil
}

func (s *Server) nodeRequest(ctx context.Context, method, nodeID, path string, body any) (*http.Response, error) {
	addr, err := s.nodeAddr(nodeID)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, err
	}
	httpx.SetToken(req.Header, s.cfg.Token)
	return s.toNodes.RoundTrip(req)
}

// errorFrom turns a non-2xx node reply into an error carrying its message.
func errorFrom(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e httpx.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s", e.Error)
	}
	return fmt.Errorf("node answered %s: %s", resp.Status, bytes.TrimSpace(b))
}

// nodeStart starts instance id of f on a node and returns where the
// instance serves framed invocations itself (nil if nowhere).
func (s *Server) nodeStart(nodeID, id string, f *function) (*node.Direct, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := s.nodeRequest(ctx, http.MethodPut, nodeID, "/v1/instances/"+id, node.StartRequest{Function: f.spec, Binary: f.binary})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, errorFrom(resp)
	}
	var ans node.StartAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil {
		// The instance runs; only the direct path is unknown.
		s.log.Warn("start answer unreadable; invocations go through the node agent", "instance", id, "node", nodeID, "err", err)
		return nil, nil
	}
	return ans.Direct, nil
}

// parkNotify tells every live node agent that function name was
// redeployed (f set: a parked process of an older version is replaced by
// one of f) or removed (f nil: its parked process is killed). Best effort,
// in the background: a node that misses it still never activates a parked
// process of another version (it keys them on the start request).
func (s *Server) parkNotify(name string, f *function) {
	method, body := http.MethodDelete, any(nil)
	if f != nil {
		method, body = http.MethodPut, node.StartRequest{Function: f.spec, Binary: f.binary}
	}
	for _, id := range s.liveNodes() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := s.nodeRequest(ctx, method, id, "/v1/parked/"+name, body)
			if err != nil {
				s.log.Debug("park notice not delivered", "node", id, "function", name, "err", err)
				return
			}
			resp.Body.Close()
		}()
	}
}

func (s *Server) nodeStop(ctx context.Context, nodeID, id string) error {
	resp, err := s.nodeRequest(ctx, http.MethodDelete, nodeID, "/v1/instances/"+id, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		return errorFrom(resp)
	}
	return nil
}

// liveNodes lists the node agents that are up, by id.
func (s *Server) liveNodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, n := range s.nodes {
		if n.up {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// NodesUp is how many node agents currently heartbeat.
func (s *Server) NodesUp() int { return len(s.liveNodes()) }
