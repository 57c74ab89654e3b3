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
// # Lifecycle
//
// Serve and ServeHTTP block. On SIGTERM (or SIGINT) the server stops
// accepting connections, lets in-flight invocations finish for up to 30
// seconds and the process exits 0. ServeContext is the same server bound to a
// context instead of signals, for tests and for programs that manage their own
// lifecycle.
package sdk
