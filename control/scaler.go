package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// scaleLoop feeds every function's load to its autoscaler once per tick, and
// at once when a request finds a function scaled to zero.
func (s *Server) scaleLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-s.pokes:
			if f := s.function(name); f != nil {
				st := f.route.stats()
				now := s.cfg.Clock.Now()
				f.scaler.Record(now, float64(st.InFlight+st.Queued))
				s.reconcile(f, now)
			}
		case <-t.C:
			now := s.cfg.Clock.Now()
			for _, name := range s.functionNames() {
				f := s.function(name)
				if f == nil {
					continue
				}
				avg, _ := f.route.sample(time.Now())
				f.scaler.Record(now, avg)
				s.reconcile(f, now)
			}
			// Pruning is a write transaction (an fsync): once a minute.
			if time.Since(lastPrune) > time.Minute {
				lastPrune = time.Now()
				if _, err := s.db.Prune(24 * time.Hour); err != nil {
					s.log.Warn("pruning finished async invocations", "err", err)
				}
			}
		}
	}
}

// reconcile asks the autoscaler for the desired scale of f and starts or
// drains instances to reach it.
func (s *Server) reconcile(f *function, now time.Time) {
	st := f.route.stats()
	s.mu.Lock()
	if f.removed {
		s.mu.Unlock()
		return
	}
	have := st.Ready + f.starting
	d := f.scaler.Scale(now, have)
	f.decision = d
	var toStart []string
	for have < d.Desired {
		node := s.placeLocked(f.parkedOn)
		if node == "" {
			break
		}
		f.starting++
		have++
		toStart = append(toStart, node)
	}
	startingNow := f.starting
	s.mu.Unlock()
	if len(toStart) == 0 && st.Ready+startingNow == 0 && st.Queued > 0 && d.Desired > 0 {
		f.route.startFailed(fmt.Errorf("no node agent is available to run %s; check `handoff status`", f.spec.Name))
	}
	for _, node := range toStart {
		go s.startInstance(f, node)
	}
	for excess := st.Ready - d.Desired; excess > 0 && len(toStart) == 0; excess-- {
		b := f.route.drainOne()
		if b == nil {
			break
		}
		s.log.Info("scaling down", "function", f.spec.Name, "instance", b.id, "reason", d.Reason)
		s.mu.Lock()
		ref := f.instances[b.id]
		s.mu.Unlock()
		if ref != nil {
			go s.stopInstance(f, ref)
		}
	}
}

// parkSlack is how many instances more than the least-loaded node the
// node holding a function's parked process may run and still get its next
// instance.
const parkSlack = 1

// placeLocked picks the live node with the fewest instances, or prefer (the
// node holding the function's parked process) if it runs at most parkSlack
// more.
func (s *Server) placeLocked(prefer string) string {
	best, bestN := "", int(^uint(0)>>1)
	counts := make(map[string]int)
	for _, f := range s.funcs {
		for _, ref := range f.instances {
			counts[ref.node]++
		}
	}
	for id, n := range s.nodes {
		if !n.up {
			continue
		}
		c := counts[id] + n.starting
		if c < bestN || (c == bestN && id < best) {
			best, bestN = id, c
		}
	}
	// A start from a parked process saves a Go process start (tens of
	// ms); worth one instance more than the least-loaded node.
	if n := s.nodes[prefer]; n != nil && n.up && prefer != best && counts[prefer]+n.starting <= bestN+parkSlack {
		best = prefer
	}
	if best != "" {
		s.nodes[best].starting++
	}
	return best
}

func newInstanceID(fn string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fn + "-" + hex.EncodeToString(b[:])
}

// startInstance starts one instance of f on node and puts it in rotation.
func (s *Server) startInstance(f *function, node string) {
	id := newInstanceID(f.spec.Name)
	start := time.Now()
	direct, err := s.nodeStart(node, id, f)
	s.mu.Lock()
	f.starting--
	if n := s.nodes[node]; n != nil {
		n.starting--
	}
	removed := f.removed
	if err == nil && !removed {
		f.instances[id] = &instanceRef{id: id, node: node, started: time.Now()}
		f.parkedOn = node
	}
	nodeURL, wireAddr := "", ""
	if n := s.nodes[node]; n != nil {
		nodeURL, wireAddr = "http://"+n.addr, n.last.WireAddr
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Error("instance failed to start", "function", f.spec.Name, "node", node, "err", err)
		s.metrics.startFailures.WithLabelValues(f.spec.Name).Inc()
		f.route.startFailed(err)
		return
	}
	if removed {
		go s.stopInstance(f, &instanceRef{id: id, node: node})
		return
	}
	s.metrics.coldStarts.WithLabelValues(f.spec.Name).Inc()
	s.metrics.coldStart.Observe(time.Since(start).Seconds())
	s.log.Info("instance ready", "function", f.spec.Name, "instance", id, "node", node, "took", time.Since(start).Round(time.Microsecond))
	b := &backend{id: id, node: node, nodeURL: nodeURL, wireAddr: wireAddr, limit: f.spec.Concurrency}
	if direct != nil && direct.Addr != "" && direct.Secret != "" && !strings.Contains(direct.Addr, " ") {
		b.direct = direct.Addr + " " + direct.Secret
	}
	f.route.add(b)
}

// stopInstance drains and stops an instance, then forgets it.
func (s *Server) stopInstance(f *function, ref *instanceRef) {
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.Timeout.Std()+10*time.Second)
	defer cancel()
	// Invocations sent straight to the instance bypass its node agent's
	// count: wait for the router's own before the node stops it.
	if err := f.route.waitIdle(ctx, ref.id); err != nil {
		s.log.Warn("drain before stop cut short", "instance", ref.id, "err", err)
	}
	if err := s.nodeStop(ctx, ref.node, ref.id); err != nil {
		s.log.Warn("stop instance", "instance", ref.id, "node", ref.node, "err", err)
	}
	s.unroute(f, ref.id)
	s.mu.Lock()
	delete(f.instances, ref.id)
	s.mu.Unlock()
}

// unroute takes an instance out of f's rotation and closes the gateway's
// idle framed connections to it.
func (s *Server) unroute(f *function, id string) {
	if b := f.route.remove(id); b != nil && b.direct != "" {
		s.direct.Drop(b.direct)
	}
}

// stopAllInstances stops every instance on every node (platform shutdown).
func (s *Server) stopAllInstances(ctx context.Context) {
	s.mu.Lock()
	type job struct {
		f   *function
		ref *instanceRef
	}
	var jobs []job
	for _, f := range s.funcs {
		f.removed = true
		for _, ref := range f.instances {
			jobs = append(jobs, job{f, ref})
		}
	}
	s.mu.Unlock()
	done := make(chan struct{}, len(jobs))
	for _, j := range jobs {
		go func() { _ = s.nodeStop(ctx, j.ref.node, j.ref.id); done <- struct{}{} }()
	}
	for range jobs {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}
