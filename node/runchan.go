package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/stream"
	"github.com/handoff-dev/handoff/xfer"
)

// Channels by mode, as this node makes them:
//
//	stream, both ends here:   one pipe; the producer instance gets its write end, the consumer its read end
//	stream, across nodes:     the producer's node dials the consumer's (peerlink, mutual TLS, the run's
//	                          secret); in the clear each instance then gets the TCP socket itself, so
//	                          the bytes go from process to process; inside TLS each side gets a pipe
//	                          that its agent relays
//	ref/inline, producer here: a pipe the node reads to its end into a buffer (ref) or memory (inline)
//	ref/inline, consumer here: a pipe the node fills when the runner feeds it the reference or the data
//
// Pipes have the channel's buffer as capacity (sockets their kernel
// buffers), so a slow consumer blocks its producer's writes (backpressure)
// and streams never touch disk.

// inbound is a cross-node stream this node waits for.
type inbound struct {
	end      *chanEnds
	from     string // the producer's node, for errors
	accepted chan struct{}
	taken    bool // guarded by run.mu
}

// feedEnd is a ref or inline input waiting for its data.
type feedEnd struct {
	w      *os.File
	reader string // the consuming function
	fed    bool   // guarded by run.mu
}

// chanEnds is one channel's ends hosted here.
type chanEnds struct {
	ch         RunChannel
	prod, cons *task
	out, in    string // the ends' keys in their tasks
}

func (rs *runs) openChannels(ctx context.Context, ru *run) error {
	chans := map[string]*chanEnds{}
	get := func(ch RunChannel) *chanEnds {
		e := chans[ch.ID]
		if e == nil {
			e = &chanEnds{ch: ch}
			chans[ch.ID] = e
		}
		return e
	}
	for _, t := range ru.tasks {
		for _, p := range t.spec.Outputs {
			for part, ch := range p.Channels {
				e := get(ch)
				e.prod, e.out = t, endKey("out", p.Name, part)
			}
		}
		for _, p := range t.spec.Inputs {
			for part, ch := range p.Channels {
				e := get(ch)
				e.cons, e.in = t, endKey("in", p.Name, part)
				e.ch.Reader = ch.Reader
			}
		}
	}
	ids := make([]string, 0, len(chans))
	for id := range chans {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Every incoming stream is registered before any outgoing one is
	// dialed: two nodes dialing each other's channels must never wait on
	// each other.
	var dials []func() error
	for _, id := range ids {
		dial, err := rs.openChannel(ru, chans[id])
		if err != nil {
			return fmt.Errorf("channel %s: %w", id, err)
		}
		if dial != nil {
			dials = append(dials, func() error { return dial(ctx) })
		}
	}
	errs := make(chan error, len(dials))
	for _, d := range dials {
		go func() { errs <- d() }()
	}
	var all []error
	for range dials {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// openChannel makes the channel's ends on this node; dial, when not nil,
// connects its outgoing cross-node stream.
func (rs *runs) openChannel(ru *run, e *chanEnds) (dial func(context.Context) error, err error) {
	if e.ch.Mode == xfer.Stream && e.prod != nil && e.cons == nil {
		return func(ctx context.Context) error {
			if err := rs.dialStream(ctx, ru, e); err != nil {
				return fmt.Errorf("channel %s: %w", e.ch.ID, err)
			}
			return nil
		}, nil
	}
	if e.ch.Mode == xfer.Stream && e.prod == nil {
		ru.mu.Lock()
		ru.inbound[e.ch.ID] = &inbound{end: e, from: e.ch.PeerNode, accepted: make(chan struct{})}
		ru.mu.Unlock()
		return nil, nil
	}
	r, w, _, err := stream.Pipe(int(e.ch.Buffer))
	if err != nil {
		return nil, err
	}
	switch e.ch.Mode {
	case xfer.Stream: // both ends here
		e.prod.setEnd(e.out, w)
		e.cons.setEnd(e.in, r)
	case xfer.Ref, xfer.Inline, xfer.Store:
		if e.prod != nil && e.cons != nil {
			// Both ends here: the producer's pipe is collected, the
			// consumer's is fed, each with a pipe of its own.
			r2, w2, _, err := stream.Pipe(int(e.ch.Buffer))
			if err != nil {
				r.Close()
				w.Close()
				return nil, err
			}
			rs.collectOutput(ru, e.prod, e.out, e.ch, r2, w2)
			rs.awaitFeed(ru, e.cons, e.in, e.ch, r, w)
			return nil, nil
		}
		if e.prod != nil {
			rs.collectOutput(ru, e.prod, e.out, e.ch, r, w)
		} else {
			rs.awaitFeed(ru, e.cons, e.in, e.ch, r, w)
		}
	default:
		r.Close()
		w.Close()
		return nil, fmt.Errorf("mode %q is not run by node agents yet; pin stream, ref or inline", e.ch.Mode)
	}
	return nil, nil
}

// collectOutput gives the producer the write end and reads the read end to
// its trailer into a buffer (ref) or memory (inline).
func (rs *runs) collectOutput(ru *run, t *task, key string, ch RunChannel, r, w *os.File) {
	t.setEnd(key, w)
	done := make(chan collected, 1)
	t.mu.Lock()
	t.collectors = append(t.collectors, done)
	t.mu.Unlock()
	ru.keep(r)
	go func() {
		defer r.Close()
		sr := stream.NewReader(r)
		c := collected{ch: ch.ID}
		switch ch.Mode {
		case xfer.Inline:
			max := rs.a.policy.InlineMax
			if max <= 0 {
				max = xfer.DefaultInlineMax
			}
			b, err := io.ReadAll(io.LimitReader(sr, max+1))
			switch {
			case err != nil:
				c.err = err
			case int64(len(b)) > max:
				c.err = fmt.Errorf("channel %s carries more than the inline limit %s; pin mode ref or stream for its edge", ch.ID, xfer.Human(max))
			default:
				c.feed = ChannelFeed{Data: b, Size: int64(len(b))}
			}
		case xfer.Ref:
			tok, info, err := rs.a.refs.Put(ru.ctx, sr, -1, refpass.Options{
				Issuer: t.spec.Start.Function.Name, Readers: []string{ch.Reader}, Reads: 1, TTL: time.Hour,
			})
			c.err = err
			c.feed = ChannelFeed{Ref: tok, Size: info.Size}
		case xfer.Store:
			key := ru.id + "/" + ch.ID
			info, err := rs.putRunObject(ru, key, sr)
			c.err = err
			c.feed = ChannelFeed{Object: key, Size: info.Size}
		}
		done <- c
	}()
}

// awaitFeed gives the consumer the read end and keeps the write end until
// the runner feeds the channel.
func (rs *runs) awaitFeed(ru *run, t *task, key string, ch RunChannel, r, w *os.File) {
	t.setEnd(key, r)
	ru.keep(w)
	ru.mu.Lock()
	ru.feeds[ch.ID] = &feedEnd{w: w, reader: ch.Reader}
	ru.mu.Unlock()
}

func (rs *runs) handleFeed(w http.ResponseWriter, r *http.Request) {
	ru := rs.get(r.PathValue("run"))
	id := r.PathValue("ch")
	if ru == nil {
		httpx.WriteError(w, http.StatusNotFound, "no_such_run", "run "+r.PathValue("run")+" has no tasks on node "+rs.a.cfg.ID)
		return
	}
	var feed ChannelFeed
	if err := json.NewDecoder(io.LimitReader(r.Body, 2*xfer.DefaultInlineMax+1<<20)).Decode(&feed); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "bad_request", "channel feed: "+err.Error())
		return
	}
	ru.mu.Lock()
	f := ru.feeds[id]
	ok := f != nil && !f.fed
	if ok {
		f.fed = true
	}
	ru.mu.Unlock()
	if !ok {
		httpx.WriteError(w, http.StatusConflict, "bad_channel", "channel "+id+" of run "+ru.id+" takes no feed on node "+rs.a.cfg.ID+" (unknown, or fed already)")
		return
	}
	// The consumer reads at its own pace: write in the background, and
	// tell the consumer (abort frame) if the data cannot be had.
	go func() {
		defer f.w.Close()
		sw := stream.NewWriter(f.w)
		var err error
		switch {
		case feed.Ref != "":
			var p *refpass.Payload
			p, err = rs.a.refs.Open(ru.ctx, feed.Ref, f.reader)
			if err == nil {
				_, err = io.Copy(sw, p)
				p.Close()
			}
		case feed.Object != "":
			var o *store.Object
			o, err = rs.a.store.Get(ru.ctx, RunBucket, feed.Object, nil)
			if err == nil {
				_, err = io.Copy(sw, o.Body)
				o.Body.Close()
			}
		default:
			_, err = sw.Write(feed.Data)
		}
		if err != nil {
			_ = sw.Abort(fmt.Sprintf("node %s could not deliver channel %s: %v", rs.a.cfg.ID, id, err))
			return
		}
		_ = sw.Close()
	}()
	w.WriteHeader(http.StatusNoContent)
}

// RunBucket holds the outputs of workflow edges in mode store, as
// "<run>/<channel>" objects deleted once their consumer has read them, or
// when their run ends (and expiring an hour after they are written if the
// run's end never comes).
const RunBucket = "handoff-runs"

// putRunObject writes a store edge's output into the cluster store and
// remembers it for the run's clean-up.
func (rs *runs) putRunObject(ru *run, key string, r io.Reader) (store.ObjectInfo, error) {
	ctx := ru.ctx
	if err := rs.a.store.CreateBucket(ctx, RunBucket); err != nil && !errors.Is(err, store.ErrBucketExists) {
		return store.ObjectInfo{}, err
	}
	ru.mu.Lock()
	ru.objects = append(ru.objects, key)
	ru.mu.Unlock()
	// One consumer reads a channel: its read frees the object at once,
	// not at the run's end.
	return rs.a.store.Put(ctx, RunBucket, key, r, -1, store.PutOptions{TTL: time.Hour, Reads: 1})
}

// dialStream connects a producer here to its consumer's node. In the
// clear, the producer instance gets the socket itself: its bytes go
// straight from its process to the consumer's, as on a raw connection,
// and the node agents only set the channel up. Inside TLS (--peer-encrypt)
// the producer gets a pipe that the agent relays into the connection.
func (rs *runs) dialStream(ctx context.Context, ru *run, e *chanEnds) error {
	ch := e.ch
	if rs.a.link == nil {
		return fmt.Errorf("node %s has no cluster identity, so it cannot stream to node %s; start it with --tls-cert (handoff up does)", rs.a.cfg.ID, ch.PeerNode)
	}
	sc, err := rs.a.link.Stream(ctx, ch.Peer, peerlink.Request{Channel: ru.id + "/" + ch.ID, Secret: ru.secret})
	if err != nil {
		return fmt.Errorf("connecting to node %s: %w", ch.PeerNode, err)
	}
	if tc, ok := sc.Conn.(*net.TCPConn); ok {
		f, err := socketEnd(tc, ch.Buffer, true)
		sc.Close()
		if err != nil {
			return err
		}
		e.prod.setEnd(e.out, f)
		return nil
	}
	r, w, _, err := stream.Pipe(int(ch.Buffer))
	if err != nil {
		sc.Close()
		return err
	}
	e.prod.setEnd(e.out, w)
	ru.keep(r)
	ru.keep(sc)
	go func() {
		defer r.Close()
		n, err := stream.Relay(sc.Conn, r)
		rs.a.metrics.bytes.WithLabelValues("stream", "out").Add(float64(n))
		if err != nil {
			sc.Close()
			return
		}
		_ = sc.CloseWrite()
		// Keep the socket until the consumer's node has read the end, so
		// the last bytes are not lost to a reset; the run's end closes it.
	}()
	return nil
}

// socketEnd duplicates a stream's socket for an instance, its kernel
// buffer on this side sized to the channel's buffers (the other side sizes
// its own): the channel's memory stays bounded and backpressure is TCP's.
func socketEnd(c *net.TCPConn, buffer int64, send bool) (*os.File, error) {
	if buffer > 0 {
		if send {
			_ = c.SetWriteBuffer(int(buffer))
		} else {
			_ = c.SetReadBuffer(int(buffer))
		}
	}
	// Nagle stays on: a stream writes whole frames, and coalescing the
	// tails of writes into full segments measured faster end to end
	// (workflow runs of 3 MB across nodes: 175-228 ms against 217-267 ms
	// with TCP_NODELAY); the trailer waits for no reply, so nothing
	// stalls on a delayed ACK.
	_ = c.SetNoDelay(false)
	return c.File()
}

// Accept takes a cross-node stream for a channel of a prepared run
// (peerlink.StreamHandler). The channel may not be registered yet when the
// producer's node dials: it waits a little.
func (rs *runs) Accept(ctx context.Context, req peerlink.Request) (func(net.Conn) error, error) {
	runID, chID, _ := strings.Cut(req.Channel, "/")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ru := rs.get(runID)
		if ru != nil {
			if subtle.ConstantTimeCompare([]byte(ru.secret), []byte(req.Secret)) != 1 {
				return nil, errors.New("stream refused: wrong run secret")
			}
			ru.mu.Lock()
			in := ru.inbound[chID]
			ok := in != nil && !in.taken
			if ok {
				in.taken = true
			}
			ru.mu.Unlock()
			if in != nil && !ok {
				return nil, fmt.Errorf("stream refused: channel %s of run %s is connected already", chID, runID)
			}
			if ok {
				return func(c net.Conn) error { return rs.takeStream(ru, in, c) }, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("stream refused: node %s expects no channel %s of run %s", rs.a.cfg.ID, chID, runID)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// takeStream gives the consumer here its end of an accepted stream: the
// socket itself in the clear, else a pipe the agent fills from the TLS
// connection.
func (rs *runs) takeStream(ru *run, in *inbound, c net.Conn) error {
	e := in.end
	if tc, ok := c.(*net.TCPConn); ok {
		f, err := socketEnd(tc, e.ch.Buffer, false)
		if err != nil {
			return err
		}
		e.cons.setEnd(e.in, f)
		close(in.accepted)
		return nil
	}
	r, w, _, err := stream.Pipe(int(e.ch.Buffer))
	if err != nil {
		return err
	}
	e.cons.setEnd(e.in, r)
	ru.keep(w)
	close(in.accepted)
	defer w.Close()
	n, err := stream.Relay(w, c)
	rs.a.metrics.bytes.WithLabelValues("stream", "in").Add(float64(n))
	return err
}

// awaitInbound waits until every cross-node stream into this node is
// connected.
func (rs *runs) awaitInbound(ctx context.Context, ru *run) error {
	ru.mu.Lock()
	var waits []*inbound
	var ids []string
	for id, in := range ru.inbound {
		waits = append(waits, in)
		ids = append(ids, id)
	}
	ru.mu.Unlock()
	for i, in := range waits {
		select {
		case <-in.accepted:
		case <-ctx.Done():
			return fmt.Errorf("channel %s: the stream from node %s never connected: %w", ids[i], in.from, ctx.Err())
		}
	}
	return nil
}
