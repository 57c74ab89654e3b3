// Package direct lets a client call function instances ("executors") it has
// leased straight over a persistent connection, bypassing the gateway, as in
// rFaaS: on the same node over a shared-memory ring (package direct/shm),
// across nodes over TCP (NewTCPConn). A hot executor busy-polls its ring and
// answers a small call in a few microseconds; a warm one sleeps until woken.
//
// The protocol is the same on every transport. A transport only carries
// whole messages in order, both ways (Conn); each message is one frame of
// the format below. Client and Serve are the two ends.
//
// # Usage
//
//	// executor
//	err := direct.Serve(ctx, conn, direct.ServerConfig{Check: leases.Check}, handler)
//
//	// client
//	c, err := direct.Handshake(conn, token, executor)
//	out, err := c.Call(ctx, payload)          // one call
//	f := c.Go(payload); out, err = f.Wait(ctx) // pipelined
//
// # Wire format
//
// All integers are big-endian. The transport delimits messages, so a frame
// carries no overall length; every frame starts with a kind byte:
//
//	hello:   'H' "HDIR" u16 version | u32 executor | u16 len, lease token
//	welcome: 'W' u8 code | u32 max in flight | u16 len, text
//	call:    'C' u64 id | u8 flags | u32 len, payload
//	result:  'R' u64 id | u8 status | u32 len, payload or error text
//	goodbye: 'G' u16 len, text
//
// The client opens with a hello; the executor answers with a welcome whose
// code is 0 (accepted; the text is empty) or a refusal (1 lease refused,
// 2 version not supported, 3 malformed hello) with a reason, and closes
// after a refusal. Then the client sends calls and the executor results, any
// number at a time: a result names its call by id and results come in the
// order calls complete, not the order they were sent. The executor takes at
// most "max in flight" calls at once; the client never sends more (more are
// not refused, only read later). Version 1 defines one call flag, FlagRef
// (bit 0): the payload is a reference to the call's input, which the
// executor reads through its node (ServerConfig.Deref); receivers refuse
// any other bit. A result's status is 0 (ok,
// payload follows), 1 (the function failed) or 2 (the platform failed: the
// executor could not run the call); for 1 and 2 the bytes are an error text.
//
// Either side may end with a goodbye. A client's goodbye means it sends no
// more calls: the executor finishes the calls in flight, sends their
// results and its own goodbye, and closes. An executor's goodbye means it is
// going away: results it has not sent will never come.
//
// Limits: a payload is at most MaxPayload (16 MiB), a lease token
// MaxToken (1 KiB), a text MaxText (4 KiB). A larger input goes by
// reference (Client.CallRef; leaseclient does it for Call on its own):
// the node's buffer store keeps it, readable by the lease's function only,
// and the executor reads it through its node, mapped without a copy on
// the same node (docs/architecture.md, "Reference passing"). A larger
// result must be a reference the function returns itself.
//
// # Transports
//
// A Conn carries messages. NewTCPConn frames them on a byte stream with a
// u32 big-endian length each; direct/shm puts them in two single-producer,
// single-consumer rings in a shared memfd. A transport that can cut a
// blocked Recv short without closing (Interrupter) lets Wait honour its
// context while it reads; one that buffers (Flusher) flushes before it
// waits to read. See docs/direct-protocol.md.
//
// # Concurrency
//
// Waking another goroutine costs more than a whole call over shared
// memory (Go's scheduler wakes a thread to run it: measured here, handing
// every call to a new goroutine made a TCP call 2.5x slower), so neither
// end hands a small call from goroutine to goroutine.
//
// A Client is safe for concurrent use. It has no reader goroutine: a
// goroutine that waits for a result reads the connection itself and hands
// other callers' results to their futures, so a lone synchronous caller
// never waits for a goroutine switch.
//
// Serve reads with one goroutine at a time, and that goroutine runs each
// call it reads itself. A watchdog looks every ServerConfig.HandOff
// (default 10 ms) at the call running on the reading goroutine; if the
// same call was running at its previous look, it starts a new goroutine
// to read, so a call that arrives behind a long one waits one to two
// HandOffs, and calls then run concurrently, up to the executor's limit.
// The watchdog parks when no call comes. A shorter HandOff bounds that
// wait more tightly and costs every call a little (1 ms: +5 µs p50 over
// TCP on a 2-core VM); a negative one hands every call over at once.
package direct

import "errors"

// Sentinel errors. Errors from this package wrap one of them.
var (
	// ErrRefused means the executor refused the hello: the lease token is
	// not valid for this executor, or the version is not spoken. Get a new
	// lease.
	ErrRefused = errors.New("direct: refused by the executor")

	// ErrExecutorLost means the connection to the executor broke, or the
	// executor said goodbye, before the call's result came back. The call
	// may or may not have run. Every call pending on the connection fails
	// with it at once; lease another executor and retry if the function
	// is idempotent.
	ErrExecutorLost = errors.New("direct: executor lost")

	// ErrFunction means the function ran and returned an error; the error
	// carries its text.
	ErrFunction = errors.New("direct: function error")

	// ErrPlatform means the executor could not run the call or return its
	// result (for example a result over MaxPayload); the error carries why.
	ErrPlatform = errors.New("direct: platform error")

	// ErrTooLarge means a payload or message exceeds its limit (MaxPayload
	// for payloads). Pass large data by reference.
	ErrTooLarge = errors.New("direct: too large")

	// ErrMalformed means the peer sent bytes that are not this protocol.
	ErrMalformed = errors.New("direct: malformed frame")

	// ErrClosed means the connection or client was closed on this side.
	ErrClosed = errors.New("direct: closed")

	// ErrInterrupted is what Recv returns after Interrupt (Interrupter);
	// the connection stays usable.
	ErrInterrupted = errors.New("direct: receive interrupted")
)

// Conn carries whole messages (frames) in order, both ways. One goroutine
// at a time may Send and one at a time may Recv, concurrently with each
// other; Close may be called at any time by anyone, and makes a blocked
// Send or Recv return.
type Conn interface {
	// Send sends msg, blocking while the peer is not reading (backpressure).
	// msg may be reused after Send returns.
	Send(msg []byte) error
	// Recv returns the next message, valid until the next Recv. Once the
	// peer has closed and every message it sent has been read, Recv returns
	// io.EOF.
	Recv() ([]byte, error)
	// Close closes the connection; the peer's Recv returns an error after
	// the messages already sent.
	Close() error
}

// An Interrupter is a Conn whose blocked Recv (or, if none is blocked, the
// next one) can be made to return ErrInterrupted without harming the
// connection: no message is lost or split. Client uses it to honour a
// waiter's context.
type Interrupter interface {
	Interrupt()
}

// A Flusher is a Conn whose Send may keep messages in a buffer until Flush,
// or until its Recv is about to wait for the peer: a Flusher flushes
// itself then, so that neither side waits for what the other holds back.
type Flusher interface {
	Flush() error
}
