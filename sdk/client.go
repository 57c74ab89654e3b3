package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrNoAPI is returned by Invoke and InvokeStream when $HANDOFF_API is not
// set, that is when the program does not run under a node agent.
var ErrNoAPI = errors.New("sdk: HANDOFF_API is not set: this program is not running under a Handoff node agent; start it with `handoff deploy`")

// Error is the failure of an invoked function: the local API answered with a
// non-2xx status. Code and Message come from the JSON body {"code","error"}
// when there is one, else Message is the body's text.
type Error struct {
	// Function is the name of the function that was invoked.
	Function string
	// Status is the HTTP status of the answer.
	Status int
	// Code is a stable machine-readable code ("function_error", "not_found"),
	// or "" if the body was not the platform's JSON error.
	Code string
	// Message says what went wrong.
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sdk: function %q failed", e.Function)
	writeFailure(&b, e.Status, e.Code, e.Message)
	return b.String()
}

// writeFailure ends an error's text the same way for Error and RefError:
// " with status 404 (Not Found) [code]: message", each part when known.
func writeFailure(b *strings.Builder, status int, code, msg string) {
	if status != 0 {
		fmt.Fprintf(b, " with status %d", status)
		if st := http.StatusText(status); st != "" {
			fmt.Fprintf(b, " (%s)", st)
		}
	}
	if code != "" {
		fmt.Fprintf(b, " [%s]", code)
	}
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
}

// maxErrorBody bounds how much of a failed answer is read into Error.Message.
const maxErrorBody = 64 << 10

// api is the lazily created client of the local API. It is keyed on the
// socket path so that a change of $HANDOFF_API (in tests) is honored.
var api struct {
	mu     sync.Mutex // guards all following fields
	path   string
	client *http.Client
}

// apiClient returns the pooled client for the local API socket.
func apiClient() (*http.Client, error) {
	path := os.Getenv("HANDOFF_API")
	if path == "" {
		return nil, ErrNoAPI
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.client != nil && api.path == path {
		return api.client, nil
	}
	if api.client != nil {
		api.client.CloseIdleConnections()
	}
	tr := &http.Transport{
		// Every request goes to the one socket, whatever the URL's host.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// A function may fan out to many concurrent calls: keep that many
		// connections alive instead of the default 2.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// Large bodies: bigger buffers than the 4 KiB default mean fewer
		// syscalls per MiB.
		WriteBufferSize: 64 << 10,
		ReadBufferSize:  64 << 10,
	}
	// No client timeout: the context bounds a call, and outputs may stream.
	api.path, api.client = path, &http.Client{Transport: tr}
	return api.client, nil
}

// Invoke calls function through the node agent's local API with in as input
// and returns its output. The request id of ctx (RequestID) is propagated. A
// non-2xx answer is returned as an *Error.
func Invoke(ctx context.Context, function string, in []byte) ([]byte, error) {
	resp, err := do(ctx, function, bytes.NewReader(in), int64(len(in)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := readBody(resp.Body, resp.ContentLength)
	if err != nil {
		return nil, fmt.Errorf("sdk: reading the output of function %q: %w", function, err)
	}
	return out, nil
}

// InvokeStream calls function with the input read from in and returns the
// output as a stream, which the caller must close. Input and output flow at
// the same time. Canceling ctx aborts both. A non-2xx answer is returned as an
// *Error before any output is read.
func InvokeStream(ctx context.Context, function string, in io.Reader) (io.ReadCloser, error) {
	size := int64(-1)
	switch r := in.(type) {
	case nil:
		size = 0
	case *bytes.Reader:
		size = int64(r.Len())
	case *bytes.Buffer:
		size = int64(r.Len())
	case *strings.Reader:
		size = int64(r.Len())
	}
	resp, err := do(ctx, function, in, size)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// do sends POST /fn/{function} and returns a 2xx response, or an error.
func do(ctx context.Context, function string, body io.Reader, size int64) (*http.Response, error) {
	if function == "" {
		return nil, errors.New("sdk: Invoke needs a function name")
	}
	c, err := apiClient()
	if err != nil {
		return nil, err
	}
	if size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://handoff/fn/"+url.PathEscape(function), body)
	if err != nil {
		return nil, fmt.Errorf("sdk: invoking function %q: %w", function, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	if id := RequestID(ctx); id != "" {
		req.Header.Set(HeaderRequestID, id)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: invoking function %q through the node agent at %s: %w", function, os.Getenv("HANDOFF_API"), err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, errorFromResponse(function, resp)
}

// errorFromResponse builds the *Error of a failed answer.
func errorFromResponse(function string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so the connection can be reused.
	io.CopyN(io.Discard, resp.Body, maxErrorBody)
	e := &Error{Function: function, Status: resp.StatusCode}
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && (eb.Code != "" || eb.Error != "") {
		e.Code, e.Message = eb.Code, eb.Error
		return e
	}
	msg := strings.TrimSpace(string(b))
	if !utf8.ValidString(msg) {
		msg = fmt.Sprintf("%d bytes of non-text body", len(b))
	}
	e.Message = msg
	return e
}
