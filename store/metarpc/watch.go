package metarpc

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLease is how long a node may serve cached metadata after a ping
// the service answered: the longest a write waits for a node that stopped
// answering (plus leaseMargin).
const DefaultLease = 2 * time.Second

// leaseMargin covers clocks that run at slightly different rates on the
// service's and the node's machines.
const leaseMargin = 100 * time.Millisecond

// ackWait is how long a write waits for a watcher's ack before it gives
// up on the watcher: stops renewing its lease, closes its stream, and
// waits its lease out.
const ackWait = time.Second

// hub is the service's side of the watch streams: the node caches it
// must tell about every change before the change is reported done.
type hub struct {
	lease time.Duration
	ids   atomic.Uint64

	// mu guards watchers.
	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

// watcher is one node's watch stream.
type watcher struct {
	conn net.Conn
	h    *hub

	// wmu serialises writes to conn.
	wmu sync.Mutex
	bw  *bufio.Writer

	// mu guards all following fields.
	mu       sync.Mutex
	dead     bool                     // no more renewals; the stream is closed
	lastPong time.Time                // when the latest renewal was sent
	waiting  map[uint64]chan struct{} // inval id → closed on its ack
	gone     chan struct{}            // closed by the first kill
}

// serveWatch upgrades the request's connection to a watch stream and
// serves it until it breaks.
func (h *Handler) serveWatch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != WatchProtocol {
		http.Error(w, "metarpc: the watch op needs Upgrade: "+WatchProtocol, http.StatusBadRequest)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "metarpc: this server cannot hand over connections for watch streams", http.StatusInternalServerError)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	conn.SetDeadline(time.Time{}) // the stream lives as long as both ends
	hb := h.theHub()
	wt := &watcher{conn: conn, h: hb, bw: brw.Writer, waiting: make(map[uint64]chan struct{}), gone: make(chan struct{})}
	wt.wmu.Lock()
	brw.Writer.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + WatchProtocol + "\r\n\r\n")
	err = brw.Writer.Flush()
	wt.wmu.Unlock()
	if err != nil {
		conn.Close()
		return
	}
	hb.mu.Lock()
	hb.watchers[wt] = struct{}{}
	hb.mu.Unlock()
	defer wt.kill()
	for {
		f, err := readFrame(brw.Reader)
		if err != nil {
			return
		}
		switch f.typ {
		case framePing:
			if h.DB != nil && h.DB.Closed() {
				// The service stopped (a control plane closed in its
				// process): a new one will not tell this node of its
				// changes, so its lease must end.
				return
			}
			wt.mu.Lock()
			dead := wt.dead
			if !dead {
				wt.lastPong = time.Now()
			}
			wt.mu.Unlock()
			if dead || wt.send(frame{typ: framePong, n: f.n}) != nil {
				return
			}
		case frameAck:
			wt.mu.Lock()
			if ch := wt.waiting[f.n]; ch != nil {
				close(ch)
				delete(wt.waiting, f.n)
			}
			wt.mu.Unlock()
		default:
			return // a node sends pings and acks only
		}
	}
}

func (h *Handler) theHub() *hub {
	h.once.Do(func() {
		lease := h.Lease
		if lease <= 0 {
			lease = DefaultLease
		}
		h.hub = &hub{lease: lease, watchers: make(map[*watcher]struct{})}
	})
	return h.hub
}

// send writes one frame, bounded so that a stuck node cannot hold a
// write up for long.
func (wt *watcher) send(f frame) error {
	wt.wmu.Lock()
	defer wt.wmu.Unlock()
	wt.conn.SetWriteDeadline(time.Now().Add(ackWait))
	wt.bw.Write(appendFrame(nil, f))
	return wt.bw.Flush()
}

// kill ends the watcher's renewals and stream, and returns when its
// lease has run out for sure.
func (wt *watcher) kill() (leaseEnds time.Time) {
	wt.mu.Lock()
	if !wt.dead {
		close(wt.gone)
	}
	wt.dead = true
	leaseEnds = wt.lastPong.Add(wt.h.lease + leaseMargin)
	wt.mu.Unlock()
	wt.conn.Close()
	wt.h.mu.Lock()
	delete(wt.h.watchers, wt)
	wt.h.mu.Unlock()
	return leaseEnds
}

// invalidate tells every watching node to drop what a change made stale
// and returns once each has acknowledged it or can no longer serve
// from its cache (its lease ran out).
func (hb *hub) invalidate(kind byte, bucket, key string) {
	id := hb.ids.Add(1)
	hb.mu.Lock()
	ws := make([]*watcher, 0, len(hb.watchers))
	for wt := range hb.watchers {
		ws = append(ws, wt)
	}
	hb.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	chs := make([]chan struct{}, len(ws))
	for i, wt := range ws {
		ch := make(chan struct{})
		wt.mu.Lock()
		if !wt.dead {
			wt.waiting[id] = ch
		}
		wt.mu.Unlock()
		chs[i] = ch
		if err := wt.send(frame{typ: frameInval, n: id, kind: kind, bucket: bucket, key: key}); err != nil {
			wt.kill()
		}
	}
	deadline := time.NewTimer(ackWait)
	defer deadline.Stop()
	expired := false
	var leaseEnds time.Time
	for i, wt := range ws {
		select {
		case <-chs[i]:
			continue
		default:
		}
		if !expired {
			select {
			case <-chs[i]:
				continue
			case <-wt.gone:
			case <-deadline.C:
				expired = true
			}
		}
		if end := wt.kill(); end.After(leaseEnds) {
			leaseEnds = end
		}
	}
	if d := time.Until(leaseEnds); d > 0 {
		time.Sleep(d)
	}
}
