package direct

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Handler runs one call. payload is the handler's to keep. An error is
// returned to the caller as a function error (ErrFunction) with its text;
// so is a panic.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// DefaultMaxInFlight is the executor's limit of calls in flight per
// connection when ServerConfig leaves it zero.
const DefaultMaxInFlight = 256

// ServerConfig configures Serve.
type ServerConfig struct {
	// Check validates the hello's lease token for this executor; an error
	// refuses the client with the error's text. A nil Check accepts every
	// token: only for executors no untrusted client can reach.
	Check func(token string, executor int) error
	// MaxInFlight is how many calls run at once on the connection (0:
	// DefaultMaxInFlight). The client learns it from the welcome and
	// never sends more.
	MaxInFlight int
	// HandOff bounds how long a call runs on the goroutine that read it
	// before reading passes to a new goroutine (0: DefaultHandOff;
	// negative: every call hands reading over at once). Calls shorter
	// than that cost no goroutine switch; a call that arrives behind a
	// longer one waits one to two HandOffs. See the package doc.
	HandOff time.Duration
	// Deref reads the input of a FlagRef call: the payload of reference
	// ref, and a release to call once the result went out. Nil refuses
	// such calls (StatusPlatform).
	Deref func(ctx context.Context, ref string) (input []byte, release func(), err error)
}

// DefaultHandOff is ServerConfig.HandOff's default.
const DefaultHandOff = 10 * time.Millisecond

// watchIdle is how many HandOffs without a call the watchdog ticks before
// it parks until the next call.
const watchIdle = 100

// Serve runs the executor's end of one connection: it reads the hello,
// refuses a bad lease token with a welcome that says why (and returns an
// error wrapping ErrRefused), then runs the calls, several at a time when
// they come faster than they run (up to MaxInFlight; see the package doc),
// and sends each result as its handler returns. Serve owns c and closes it
// before it returns.
//
// Serve returns nil after the client's goodbye, once every call in flight
// has answered; ctx's error when ctx ends (calls in flight see ctx end, and
// their results go out before the executor's goodbye); or the error that
// broke the connection. It returns only once every handler has returned.
func Serve(ctx context.Context, c Conn, cfg ServerConfig, h Handler) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	msg, err := c.Recv()
	if !stop() {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("direct: waiting for the hello: %w", err)
	}
	limit := cfg.MaxInFlight
	if limit <= 0 {
		limit = DefaultMaxInFlight
	}
	if err := welcome(c, msg, cfg, limit); err != nil {
		return err
	}

	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{conn: c, h: h, ctx: hctx, cancel: cancel, sem: make(chan struct{}, limit), endc: make(chan struct{}), handOff: cfg.HandOff, deref: cfg.Deref}
	if s.handOff == 0 {
		s.handOff = DefaultHandOff
	}
	stop = context.AfterFunc(ctx, func() { s.end(ctx.Err(), true) })
	defer stop()

	if s.handOff > 0 {
		s.parked.Store(true)
		s.unpark = make(chan struct{}, 1)
		go s.watch()
	}
	go s.read()
	<-s.endc

	s.mu.Lock()
	err, graceful := s.err, s.graceful
	s.mu.Unlock()
	s.handlers.Wait()
	if graceful {
		s.sendMu.Lock()
		if buf, err := AppendFrame(s.sendBuf[:0], &Frame{Kind: KindGoodbye, Text: "executor done"}); err == nil {
			sendFlush(c, buf)
		}
		s.sendMu.Unlock()
	}
	return err
}

// welcome answers the hello in msg: a refusal returns an error.
func welcome(c Conn, msg []byte, cfg ServerConfig, limit int) error {
	w := Frame{Kind: KindWelcome, MaxInFlight: uint32(limit)}
	var refusal error
	hello, err := Decode(msg)
	switch {
	case err == nil && hello.Kind != KindHello:
		err = fmt.Errorf("%w: got a %q frame, want a hello", ErrMalformed, hello.Kind)
		fallthrough
	case err != nil:
		w.Code, w.Text = CodeMalformed, clipText(err.Error())
		refusal = fmt.Errorf("%w: %w", ErrRefused, err)
	case hello.Version != Version:
		w.Code = CodeVersion
		w.Text = fmt.Sprintf("protocol version %d is not spoken here; this executor speaks %d", hello.Version, Version)
		refusal = fmt.Errorf("%w: %s", ErrRefused, w.Text)
	case cfg.Check != nil:
		if err := cfg.Check(hello.Token, int(hello.Executor)); err != nil {
			w.Code, w.Text = CodeRefused, clipText(err.Error())
			refusal = fmt.Errorf("%w: lease token for executor %d: %w", ErrRefused, hello.Executor, err)
		}
	}
	buf, err := AppendFrame(nil, &w)
	if err != nil {
		return err
	}
	if err := sendFlush(c, buf); err != nil && refusal == nil {
		return fmt.Errorf("direct: sending the welcome: %w", err)
	}
	return refusal
}

type server struct {
	conn    Conn
	h       Handler
	deref   func(ctx context.Context, ref string) ([]byte, func(), error)
	ctx     context.Context // the handlers'; cancelled when Serve returns
	cancel  context.CancelFunc
	sem     chan struct{} // one slot per call in flight
	handOff time.Duration

	// inline is the number of the call running on the reading
	// goroutine, 0 if none: the watchdog (watch) swaps it to 0 to take
	// reading away, the reader to keep it. parked and unpark put the
	// watchdog to sleep while no call runs.
	inline   atomic.Uint64
	seq      atomic.Uint64 // numbers calls; only readers add to it
	parked   atomic.Bool
	unpark   chan struct{}
	handlers sync.WaitGroup

	sendMu  sync.Mutex // guards sendBuf and conn's Send side
	sendBuf []byte

	endc chan struct{} // closed when the session ends

	mu       sync.Mutex // guards the following
	ended    bool       // no handler starts once set
	err      error
	graceful bool // results in flight still go out, then a goodbye
}

// end ends the session once: err is what Serve returns; graceful lets the
// calls in flight answer first.
func (s *server) end(err error, graceful bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !graceful {
		// Results can no longer go out: stop the handlers, and unblock
		// the reader and any sender. (If calls were draining after a
		// goodbye, the connection broke under them.)
		s.cancel()
		s.conn.Close()
	}
	if s.ended {
		return
	}
	s.ended, s.err, s.graceful = true, err, graceful
	close(s.endc)
}

// read reads and runs calls until the session ends, or until the
// watchdog finds a call running too long and has a new goroutine read:
// then read returns once its call is answered.
func (s *server) read() {
	for {
		msg, err := s.conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: the client closed the connection without a goodbye", io.EOF)
			}
			s.end(err, false)
			return
		}
		fr, err := Decode(msg)
		if err != nil {
			s.end(err, false)
			return
		}
		switch fr.Kind {
		case KindCall:
			payload := append(make([]byte, 0, len(fr.Payload)), fr.Payload...)
			select {
			case s.sem <- struct{}{}:
			case <-s.endc:
				return
			}
			s.mu.Lock()
			if s.ended {
				// Draining: the call is dropped, and the client fails
				// it when it reads the goodbye.
				s.mu.Unlock()
				<-s.sem
				continue
			}
			s.handlers.Add(1)
			s.mu.Unlock()
			if s.handOff < 0 {
				go s.read()
				s.run(fr.ID, fr.Flags, payload, 0)
				return
			}
			seq := s.seq.Add(1)
			s.inline.Store(seq)
			if s.parked.Load() && s.parked.CompareAndSwap(true, false) {
				s.unpark <- struct{}{}
			}
			if !s.run(fr.ID, fr.Flags, payload, seq) {
				return // the watchdog handed reading over
			}
		case KindGoodbye:
			s.end(nil, true)
			// Wait for the close; the client sends nothing more.
			continue
		default:
			s.end(fmt.Errorf("%w: unexpected %q frame from the client", ErrMalformed, fr.Kind), false)
			return
		}
	}
}

// run calls the handler and sends its result. seq is the call's number
// if it runs on the reading goroutine (0 if not); run reports whether
// that goroutine still reads: then, if it has another call read ahead
// already, the result waits in the transport's buffer to go out with the
// next ones (batcher), so pipelined results share a write.
func (s *server) run(id uint64, flags uint8, payload []byte, seq uint64) (reading bool) {
	var res []byte
	var err, derr error
	if flags&FlagRef != 0 {
		var release func()
		if payload, release, derr = s.input(string(payload)); derr == nil {
			defer release() // after the result went out: it may alias the input
		}
	}
	if derr == nil {
		res, err = s.call(payload)
	}
	reading = seq != 0 && s.inline.CompareAndSwap(seq, 0)
	status := StatusOK
	switch {
	case derr != nil:
		status, res = StatusPlatform, []byte(clipText(derr.Error()))
	case err != nil:
		status, res = StatusFunction, []byte(clipText(err.Error()))
	case len(res) > MaxPayload:
		status, res = StatusPlatform, fmt.Appendf(nil, "result of %d bytes exceeds the limit of %d; return a reference instead", len(res), MaxPayload)
	}
	s.sendMu.Lock()
	s.sendBuf = appendResult(s.sendBuf[:0], id, status, res)
	if b, ok := s.conn.(batcher); ok && reading && b.readAhead() {
		err = b.queue(s.sendBuf)
	} else {
		err = sendFlush(s.conn, s.sendBuf)
	}
	if cap(s.sendBuf) > 1<<20 {
		s.sendBuf = nil
	}
	s.sendMu.Unlock()
	<-s.sem
	s.handlers.Done()
	if err != nil {
		s.end(fmt.Errorf("direct: sending a result: %w", err), false)
	}
	return reading
}

// batcher is a transport that can queue a message without writing it,
// and knows whether it has read a whole message ahead.
type batcher interface {
	// queue adds msg to what the next write sends.
	queue(msg []byte) error
	// readAhead reports whether the next Recv returns without reading;
	// only the goroutine that calls Recv may ask.
	readAhead() bool
}

// input reads the input of a FlagRef call.
func (s *server) input(ref string) ([]byte, func(), error) {
	if s.deref == nil {
		return nil, nil, errors.New("this executor takes no input by reference (no ServerConfig.Deref); send the payload inline")
	}
	b, release, err := s.deref(s.ctx, ref)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the call's input by reference: %w", err)
	}
	return b, release, nil
}

func (s *server) call(payload []byte) (res []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.h(s.ctx, payload)
}

// watch is the watchdog: every handOff it looks at the call running on
// the reading goroutine, and if the same call ran at the previous look it
// takes reading away and gives it to a new goroutine. A per-call timer
// would bound the wait more tightly but costs every call a timer reset,
// which wakes the netpoller's thread (~12 µs a call over TCP, measured);
// the watchdog costs one wake-up per handOff while calls come, none while
// idle: after watchIdle empty looks it parks until the next call.
func (s *server) watch() {
	select {
	case <-s.endc:
		return
	case <-s.unpark: // parked from the start
	}
	t := time.NewTimer(s.handOff)
	defer t.Stop()
	var last, lastSeq uint64
	idle := 0
	for {
		select {
		case <-s.endc:
			return
		case <-t.C:
		}
		cur, seq := s.inline.Load(), s.seq.Load()
		if cur != 0 && cur == last && s.inline.CompareAndSwap(cur, 0) {
			go s.read()
			cur = 0
		}
		if seq != lastSeq {
			idle = 0
		} else if idle++; idle >= watchIdle && cur == 0 {
			idle = 0
			s.parked.Store(true)
			if s.inline.Load() == 0 {
				select {
				case <-s.endc:
					return
				case <-s.unpark:
				}
			} else if !s.parked.CompareAndSwap(true, false) {
				<-s.unpark // a reader unparked us meanwhile
			}
		}
		last, lastSeq = cur, seq
		t.Reset(s.handOff)
	}
}
