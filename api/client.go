package api

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
	"strings"
	"time"

	"github.com/handoff-dev/handoff/spec"
)

// Client talks to a Handoff gateway.
type Client struct {
	Base  string // e.g. "http://127.0.0.1:7070"
	Token string // the admin token, for the management API
	HTTP  *http.Client
}

// NewClient returns a client for the gateway at base with a keep-alive
// transport sized for benchmarks as well as the CLI.
func NewClient(base string) *Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
	}
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Transport: t}}
}

// StatusError is a non-2xx answer from the gateway.
type StatusError struct {
	Status int
	Code   string
	Msg    string
}

func (e *StatusError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return fmt.Sprintf("gateway answered %d %s", e.Status, http.StatusText(e.Status))
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the gateway at %s: %w; is `handoff up` running? (set --gateway or $HANDOFF_GATEWAY)", c.Base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readError(resp)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &StatusError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
	}
	return &StatusError{Status: resp.StatusCode, Msg: strings.TrimSpace(string(b))}
}

// Deploy installs or replaces a function.
func (c *Client) Deploy(ctx context.Context, f spec.Function) (Function, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return Function{}, err
	}
	var out Function
	err = c.do(ctx, http.MethodPut, "/v1/functions/"+url.PathEscape(f.Name), bytes.NewReader(b), &out)
	return out, err
}

// Functions lists deployed functions.
func (c *Client) Functions(ctx context.Context) ([]Function, error) {
	var out []Function
	err := c.do(ctx, http.MethodGet, "/v1/functions", nil, &out)
	return out, err
}

// Function returns one deployed function.
func (c *Client) Function(ctx context.Context, name string) (Function, error) {
	var out Function
	err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Remove deletes a function and stops its instances.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, nil)
}

// Status returns the platform overview.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
	return out, err
}

// Invoke calls a function synchronously and returns its output.
func (c *Client) Invoke(ctx context.Context, name string, in []byte) ([]byte, error) {
	rc, err := c.InvokeStream(ctx, name, bytes.NewReader(in), int64(len(in)))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// InvokeStream calls a function with a streamed body (size -1 if unknown) and
// returns the streamed output, which the caller must close.
func (c *Client) InvokeStream(ctx context.Context, name string, in io.Reader, size int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/fn/"+url.PathEscape(name), in)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the gateway at %s: %w", c.Base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp.Body, nil
}

// InvokeAsync queues an invocation and returns its id.
func (c *Client) InvokeAsync(ctx context.Context, name string, in []byte) (Accepted, error) {
	var out Accepted
	err := c.do(ctx, http.MethodPost, "/fn/"+url.PathEscape(name)+"?async=1", bytes.NewReader(in), &out)
	return out, err
}

// Invocation returns an async invocation's status and result.
func (c *Client) Invocation(ctx context.Context, id string) (Invocation, error) {
	var out Invocation
	err := c.do(ctx, http.MethodGet, "/invocations/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Logs streams a function's instance logs from every node.
func (c *Client) Logs(ctx context.Context, name string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/logs/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the gateway at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readError(resp)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
