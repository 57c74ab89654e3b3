package direct

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxWindow caps the calls in flight a client allows itself, whatever the
// executor advertises.
const maxWindow = 1 << 16

// Client calls one leased executor over one Conn. It is safe for
// concurrent use.
type Client struct {
	conn    Conn
	intr    Interrupter // conn, if it is one
	flusher Flusher     // conn, if it is one

	// tok is the right to read conn: the goroutine that took its one
	// value reads and dispatches results until its own call is done.
	tok chan struct{}
	// sem has one slot per call in flight, at most the executor's
	// advertised limit, so the executor's reader never blocks on it.
	sem chan struct{}

	sendMu  sync.Mutex // guards sendBuf and conn's Send side
	sendBuf []byte

	mu      sync.Mutex // guards the following
	pending map[uint64]*Future
	nextID  uint64
	err     error // once set, every call fails with it
	closed  bool
}

// Future is a call in flight.
type Future struct {
	c    *Client
	done atomic.Bool   // set once res and err are
	wake chan struct{} // made by a waiter that is not reading, closed when done; guarded by c.mu
	res  []byte
	err  error
}

// futures recycles the futures of Call, which never escape it.
var futures = sync.Pool{New: func() any { return new(Future) }}

// completeLocked sets f's outcome; c.mu must be held. Once done is set,
// Call may recycle f: f is not touched after.
func (f *Future) completeLocked(res []byte, err error) {
	wake := f.wake
	f.res, f.err = res, err
	f.done.Store(true)
	if wake != nil {
		close(wake)
	}
}

// Handshake sends the hello for executor with the lease token on c and
// reads the answer. It blocks until the executor answers; close c to give
// up. A refusal returns an error wrapping ErrRefused. On failure Handshake
// closes c; on success the Client owns it.
func Handshake(c Conn, token string, executor int) (*Client, error) {
	if executor < 0 || int64(executor) > 1<<32-1 {
		c.Close()
		return nil, fmt.Errorf("direct: executor index %d out of range", executor)
	}
	buf, err := AppendFrame(nil, &Frame{Kind: KindHello, Version: Version, Executor: uint32(executor), Token: token})
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := sendFlush(c, buf); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: sending hello: %w", ErrExecutorLost, err)
	}
	msg, err := c.Recv()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: waiting for the welcome: %w", ErrExecutorLost, err)
	}
	w, err := Decode(msg)
	if err == nil && w.Kind != KindWelcome {
		err = fmt.Errorf("%w: got a %q frame, want a welcome", ErrMalformed, w.Kind)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("direct: handshake: %w", err)
	}
	if w.Code != CodeOK {
		c.Close()
		return nil, fmt.Errorf("%w: %s (code %d)", ErrRefused, w.Text, w.Code)
	}
	window := int(min(max(w.MaxInFlight, 1), maxWindow))
	cl := &Client{
		conn:    c,
		tok:     make(chan struct{}, 1),
		sem:     make(chan struct{}, window),
		pending: make(map[uint64]*Future),
	}
	cl.intr, _ = c.(Interrupter)
	cl.flusher, _ = c.(Flusher)
	cl.tok <- struct{}{}
	return cl, nil
}

func sendFlush(c Conn, msg []byte) error {
	if err := c.Send(msg); err != nil {
		return err
	}
	if f, ok := c.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

// Call calls the executor with payload and waits for the result. A
// function's error wraps ErrFunction; a broken connection ErrExecutorLost.
func (c *Client) Call(ctx context.Context, payload []byte) ([]byte, error) {
	return c.call(ctx, 0, payload)
}

func (c *Client) call(ctx context.Context, flags uint8, payload []byte) ([]byte, error) {
	f := c.send(flags, payload)
	res, err := f.Wait(ctx)
	if f.c != nil && f.done.Load() {
		// Done: no longer pending, nobody else holds it.
		*f = Future{}
		futures.Put(f)
	}
	return res, err
}

// Go sends a call and returns at once, unless the executor's limit of
// calls in flight is reached: then Go reads results until a call ends.
// Send any number of calls and Wait for them in any order.
func (c *Client) Go(payload []byte) *Future {
	return c.send(0, payload)
}

// GoRef is Go for a call whose input is the payload of reference ref
// (FlagRef): the executor reads it through its node. Inputs over
// MaxPayload go so; leaseclient puts them in a node buffer first.
func (c *Client) GoRef(ref string) *Future {
	return c.send(FlagRef, []byte(ref))
}

// CallRef is Call for a call whose input is the payload of reference ref.
func (c *Client) CallRef(ctx context.Context, ref string) ([]byte, error) {
	return c.call(ctx, FlagRef, []byte(ref))
}

func (c *Client) send(flags uint8, payload []byte) *Future {
	if err := checkCall(flags, len(payload)); err != nil {
		return failed(err)
	}
	if err := c.acquire(); err != nil {
		return failed(err)
	}
	f := futures.Get().(*Future)
	f.c = c
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		<-c.sem
		return failed(err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = f
	c.mu.Unlock()

	c.sendMu.Lock()
	c.sendBuf = appendCall(c.sendBuf[:0], id, flags, payload)
	err := c.conn.Send(c.sendBuf)
	if cap(c.sendBuf) > 1<<20 {
		c.sendBuf = nil
	}
	c.sendMu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: sending a call: %w", ErrExecutorLost, err))
	}
	return f
}

func failed(err error) *Future {
	f := &Future{err: err}
	f.done.Store(true)
	return f
}

// acquire takes a slot in the window. While the window is full it reads
// results itself, as nobody else may be.
func (c *Client) acquire() error {
	for {
		select {
		case c.sem <- struct{}{}:
			return nil
		default:
		}
		select {
		case c.sem <- struct{}{}:
			return nil
		case <-c.tok:
			err := c.readOne()
			c.tok <- struct{}{}
			if err != nil {
				return err
			}
		}
	}
}

// readOne reads and dispatches one message; it returns the client's error
// once it has failed.
func (c *Client) readOne() error {
	if err := c.failure(); err != nil {
		return err
	}
	for {
		msg, err := c.recv()
		if errors.Is(err, ErrInterrupted) {
			continue
		}
		if err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrExecutorLost, err))
		} else {
			c.dispatch(msg)
		}
		return c.failure()
	}
}

func (c *Client) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Flush sends calls that the transport keeps in its buffer (a Flusher
// in batch mode); Wait does not need it, as such a transport flushes
// before it waits for the executor.
func (c *Client) Flush() error {
	if c.flusher == nil {
		return nil
	}
	c.sendMu.Lock()
	err := c.flusher.Flush()
	c.sendMu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: sending calls: %w", ErrExecutorLost, err))
		return c.failure()
	}
	return nil
}

// Wait waits for the call's result. If ctx ends first, Wait returns its
// error and the call goes on: Wait may be called again. On a transport
// that is not an Interrupter, a Wait that is reading notices ctx only when
// the next message arrives.
func (f *Future) Wait(ctx context.Context) ([]byte, error) {
	c := f.c
	for {
		if f.done.Load() {
			return f.res, f.err
		}
		// Read, if nobody does.
		select {
		case <-c.tok:
			err := c.readFor(ctx, f)
			c.tok <- struct{}{}
			if f.done.Load() {
				return f.res, f.err
			}
			if err != nil {
				return nil, err
			}
			continue
		default:
		}
		// Someone reads: wait until f is done, or reading is free.
		c.mu.Lock()
		if f.done.Load() {
			c.mu.Unlock()
			return f.res, f.err
		}
		if f.wake == nil {
			f.wake = make(chan struct{})
		}
		wake := f.wake
		c.mu.Unlock()
		select {
		case <-wake:
			return f.res, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.tok:
			err := c.readFor(ctx, f)
			c.tok <- struct{}{}
			if f.done.Load() {
				return f.res, f.err
			}
			if err != nil {
				return nil, err
			}
		}
	}
}

// readFor reads and dispatches messages until f is done or ctx ends.
func (c *Client) readFor(ctx context.Context, f *Future) error {
	if ctx.Done() != nil && c.intr != nil {
		stop := context.AfterFunc(ctx, c.intr.Interrupt)
		defer stop()
	}
	for !f.done.Load() {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := c.recv()
		if errors.Is(err, ErrInterrupted) {
			continue
		}
		if err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrExecutorLost, err))
			return nil
		}
		c.dispatch(msg)
	}
	return nil
}

// dispatch hands a result to its future; anything else ends the client.
func (c *Client) dispatch(msg []byte) {
	fr, err := Decode(msg)
	if err != nil {
		c.fail(fmt.Errorf("%w: %w", ErrExecutorLost, err))
		return
	}
	switch fr.Kind {
	case KindResult:
		var res []byte
		var err error
		switch fr.Status {
		case StatusOK:
			res = append(make([]byte, 0, len(fr.Payload)), fr.Payload...)
		case StatusFunction:
			err = fmt.Errorf("%w: %s", ErrFunction, fr.Payload)
		default:
			err = fmt.Errorf("%w: %s", ErrPlatform, fr.Payload)
		}
		c.mu.Lock()
		f := c.pending[fr.ID]
		delete(c.pending, fr.ID)
		if f != nil {
			f.completeLocked(res, err)
		}
		c.mu.Unlock()
		if f == nil {
			c.fail(fmt.Errorf("%w: %w: result for call %d, which is not in flight", ErrExecutorLost, ErrMalformed, fr.ID))
			return
		}
		<-c.sem
	case KindGoodbye:
		c.fail(fmt.Errorf("%w: the executor said goodbye: %s", ErrExecutorLost, fr.Text))
	default:
		c.fail(fmt.Errorf("%w: %w: unexpected %q frame", ErrExecutorLost, ErrMalformed, fr.Kind))
	}
}

// fail ends the client with err (the first error sticks) and fails every
// pending call with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	pending := c.pending
	c.pending = make(map[uint64]*Future)
	for _, f := range pending {
		f.completeLocked(nil, err)
	}
	c.mu.Unlock()
	for range pending {
		<-c.sem
	}
}

// Close says goodbye, closes the connection and fails pending calls with
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return nil
	}
	// A goodbye only if no Send is blocked; closing unblocks it anyway.
	if c.sendMu.TryLock() {
		if buf, err := AppendFrame(c.sendBuf[:0], &Frame{Kind: KindGoodbye, Text: "client closed"}); err == nil {
			sendFlush(c.conn, buf)
		}
		c.sendMu.Unlock()
	}
	c.fail(fmt.Errorf("%w: client closed", ErrClosed))
	return c.conn.Close()
}

// All calls every client with payload concurrently and waits for all the
// results, in the order of clients. The error joins the failures, each
// naming its client's index; results of failed calls are nil.
func All(ctx context.Context, clients []*Client, payload []byte) ([][]byte, error) {
	return all(ctx, clients, 0, payload)
}

// AllRef is All for an input by reference (FlagRef): ref must allow a
// read for each client.
func AllRef(ctx context.Context, clients []*Client, ref string) ([][]byte, error) {
	return all(ctx, clients, FlagRef, []byte(ref))
}

func all(ctx context.Context, clients []*Client, flags uint8, payload []byte) ([][]byte, error) {
	fs := make([]*Future, len(clients))
	for i, c := range clients {
		fs[i] = c.send(flags, payload)
	}
	out := make([][]byte, len(clients))
	var errs []error
	for i, f := range fs {
		res, err := f.Wait(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("executor %d: %w", i, err))
			continue
		}
		out[i] = res
	}
	return out, errors.Join(errs...)
}

// spinner is a transport that can busy-poll for a message (TCPConn with
// TCPOptions.Spin).
type spinner interface{ pauseSpin(bool) }

// recv reads the next message. A transport that spins does so only for a
// lone call: with more in flight results come in batches, and a spinning
// client takes the core the executor needs to produce them.
func (c *Client) recv() ([]byte, error) {
	if s, ok := c.conn.(spinner); ok {
		s.pauseSpin(len(c.sem) > 1)
	}
	return c.conn.Recv()
}
