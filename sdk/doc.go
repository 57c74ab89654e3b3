// Package sdk is the Go SDK for Handoff functions.
//
// A function is a program that the node agent starts with the environment
// described in docs/architecture.md ("Instance contract"): it serves HTTP/1.1
// on 127.0.0.1:$PORT, every invocation arrives as POST / with the input as
// body, and the response body is the output.
//
// # Usage
//
// The smallest function returns its input:
//
//	func main() {
//		sdk.Serve(func(ctx context.Context, in []byte) ([]byte, error) {
//			return in, nil
//		})
//	}
//
// A handler that needs headers or wants to stream its output uses ServeHTTP
// with a plain http.Handler instead.
//
// A handler chooses the HTTP status of a failure with Errorf; any other error
// becomes a 500 whose body is the error text.
//
// # Calling other functions
//
// Invoke and InvokeStream call another function through the node agent's
// local API (the Unix socket $HANDOFF_API). They propagate the request id of
// the current invocation (RequestID) so that a chain of calls can be traced.
// A non-2xx answer is returned as an *Error saying which function failed and
// why.
//
// # Passing payloads by reference
//
// The node agent passes large bodies between functions by reference on its
// own. A function can also do it explicitly: Put hands a payload to the node
// agent and returns a reference, a short signed string to send along (in an
// input, an output, a queue message); Get, Open or Map in the receiving
// function reads the payload. RefOptions say which functions may read it
// (required; AnyReader for any), how many times (1 by default) and for how
// long (10 minutes by default):
//
//	ref, err := sdk.Put(ctx, frame, sdk.RefOptions{Readers: []string{"detect"}})
//	out, err := sdk.Invoke(ctx, "detect", []byte(ref))
//
//	// in detect:
//	frame, err := sdk.Get(ctx, string(in))
//
// The payload belongs to the node agent, not to the sender: it stays
// readable after the sender's instance has stopped, until its reads are
// taken or its TTL passes. A receiver on another node gets it pulled from
// the holder, its checksum verified on the way.
//
// Between two functions on the same node nothing needs to be copied. A
// Buffer is shared memory: fill Bytes, Share it, and the receiver's Map
// gives it a read-only mapping of the very same pages, sealed so that
// nobody can change them any more. The node agent computes the checksum
// only if the payload leaves the node.
//
//	buf, err := sdk.NewBuffer(size)
//	render(buf.Bytes())
//	ref, err := buf.Share(ctx, sdk.RefOptions{Readers: []string{"encode"}})
//
//	// in encode:
//	m, err := sdk.Map(ctx, ref)
//	defer m.Close()
//	encode(m.Bytes())
//
// Put, Get, Buffer.Share and Map pass descriptors over the node agent's
// socket $HANDOFF_FD, up to 8 exchanges at once over pooled connections.
// Where it is missing, Put, Get and Share fall back to the local API over
// HTTP, as PutReader and Open (which stream) always do; Map fails with
// ErrNoFD.
//
// A reference the node agent refuses (wrong reader, expired, read too
// often, no room) is a *RefError whose Code says why ("ref_wrong_reader",
// "ref_expired", "ref_gone", "buffers_full", ...) and whose Message says
// what to do. A reference is a capability: whoever holds it and is named
// among its readers can read the payload, so do not log it.
//
// # Lifecycle
//
// Serve and ServeHTTP block. On SIGTERM (or SIGINT) the server stops
// accepting connections, lets in-flight invocations finish for up to 30
// seconds and the process exits 0. ServeContext is the same server bound to a
// context instead of signals, for tests and for programs that manage their own
// lifecycle.
//
// # Parked processes
//
// To take the start-up of the Go runtime and of the program's packages off
// the cold start, a node agent may start a function's program before an
// instance needs it (a "parked" process): with the function's own
// environment (the spec's env, HANDOFF_FUNCTION, HANDOFF_NODE, the store's
// variables) but none of the instance's. Serve, ServeHTTP and ServeContext
// then wait, before they read anything else, until the agent activates the
// process as an instance: they set the instance's variables (PORT,
// HANDOFF_INSTANCE, HANDOFF_API, HANDOFF_FD, HANDOFF_WIRE, ...) with
// os.Setenv and carry on as usual. A parked process never serves a
// request, and one that is not needed is killed.
//
// The rule this makes: code that runs before Serve (package variables,
// init functions, main up to Serve) may read the function's environment but
// must not read a per-instance variable such as $PORT, $HANDOFF_INSTANCE or
// $HANDOFF_API, which is unset there in a parked process; read them in the
// handler, or after Serve has started (Invoke, Put and the other calls read
// them when they are made). A program that needs an instance variable
// before Serve can opt out by not using the SDK's Serve (it then starts
// afresh every time, as any HTTP program), or the node agent can be run
// with --park 0.
package sdk
