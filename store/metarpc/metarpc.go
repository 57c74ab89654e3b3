// Package metarpc serves the store's metadata (a meta.DB in the control
// plane) to node agents over HTTP, and is the node agents' client of it:
// a local.Meta that every node agent's store shares, so that an object
// written through one node is found through any other.
//
// # Protocol
//
// Each operation is POST {base}/{op} with a JSON Request, answered by 200
// and a JSON Answer, or by an error status and {"code", "error"}: code is
// the store sentinel's wire name (store.Code), error its message. Callers
// authenticate as the rest of the node API does (the cluster token header;
// the control plane checks it before the Handler). The ops are the
// methods of local.Meta, named as they are ("createBucket", "putObject",
// ...), plus "members": the node agents that hold blocks now.
//
// A call that does not reach the service, or gets no answer, fails with
// store.ErrUnavailable: the change may or may not have been made, and
// nothing is reported as done that was not.
//
// # Caching on the nodes
//
// The op "watch" upgrades its connection to a stream of frames (see
// frame.go) over which the service pushes every change of a bucket or an
// object to every watching node, and answers the nodes' lease renewals.
// A change is answered only after every watcher acknowledged it, or
// after the lease of one that did not has run out. Cache, the node
// agents' client, serves what it has seen from memory within its lease,
// so a read of known metadata costs no round trip and a change made
// through any node is seen by every other as soon as it returns.
package metarpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/meta"
)

// Request is the body of every operation; each uses the fields it needs.
type Request struct {
	Bucket   string                  `json:"bucket,omitempty"` // a bucket, or the name of one to make or drop
	Key      string                  `json:"key,omitempty"`
	Upload   string                  `json:"upload,omitempty"`
	Object   *meta.Object            `json:"object,omitempty"`
	Part     *meta.Part              `json:"part,omitempty"`
	Opts     *store.PutOptions       `json:"opts,omitempty"`
	List     *store.ListOptions      `json:"list,omitempty"`
	Parts    *store.ListPartsOptions `json:"parts,omitempty"`
	Complete []store.CompletePart    `json:"complete,omitempty"`
	MinPart  int64                   `json:"minPart,omitempty"`
	Max      int                     `json:"max,omitempty"`
}

// Answer is the body of every success; each op fills what it returns.
type Answer struct {
	Bucket  *store.BucketInfo      `json:"bucket,omitempty"`
	Buckets []store.BucketInfo     `json:"buckets,omitempty"`
	Object  *meta.Object           `json:"object,omitempty"`
	Blocks  []meta.Block           `json:"blocks,omitempty"`
	N       int                    `json:"n,omitempty"`
	List    *store.ListResult      `json:"list,omitempty"`
	Upload  *meta.Upload           `json:"upload,omitempty"`
	Parts   *store.ListPartsResult `json:"parts,omitempty"`
	Members map[string]string      `json:"members,omitempty"`
}

type errorAnswer struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// maxBody bounds a request or answer (a List of 1000 objects with their
// metadata, or a block list of a 5 GiB part, fit well within it).
const maxBody = 32 << 20

// Handler serves a metadata database. Mount it under a prefix with the
// op as the last path element, behind the cluster token check.
type Handler struct {
	DB *meta.DB
	// Members lists the node agents holding blocks (holder name → peer
	// address); nil answers none.
	Members func() map[string]string
	// Lease is how long a watching node may serve its cache after a
	// renewal (default DefaultLease): the longest a change waits for a
	// node that stopped answering.
	Lease time.Duration

	once sync.Once
	hub  *hub
}

// ServeHTTP answers one operation, named by the request path's last
// element (r.PathValue("op") when mounted with a {op} pattern).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if op == "watch" {
		h.serveWatch(w, r)
		return
	}
	var q Request
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&q); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%w: metadata request: %v", store.ErrInvalidArgument, err))
		return
	}
	a, err := h.do(op, q)
	if err != nil {
		status := http.StatusBadRequest
		switch store.Code(err) {
		case "internal":
			status = http.StatusInternalServerError
		case "closed", "unavailable":
			status = http.StatusServiceUnavailable
		}
		writeErr(w, status, err)
		return
	}
	// The change is reported only once every node cache has dropped
	// what it made stale, or can no longer serve it.
	switch op {
	case "createBucket", "deleteBucket":
		h.theHub().invalidate(InvalBucket, q.Bucket, "")
	case "putObject":
		h.theHub().invalidate(InvalKey, q.Object.Bucket, q.Object.Key)
	case "deleteObject", "completeUpload":
		h.theHub().invalidate(InvalKey, q.Bucket, q.Key)
	case "readObject":
		if a.Object.Counted && a.Object.Reads == 0 { // its last read: gone for everyone else
			h.theHub().invalidate(InvalKey, q.Bucket, q.Key)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorAnswer{Code: store.Code(err), Error: err.Error()})
}

// need fails when a pointer field an op needs is missing.
func need(op string, ok bool) error {
	if !ok {
		return fmt.Errorf("%w: metadata op %s is missing an argument", store.ErrInvalidArgument, op)
	}
	return nil
}

func (h *Handler) do(op string, q Request) (Answer, error) {
	db := h.DB
	var a Answer
	var err error
	switch op {
	case "createBucket":
		err = db.CreateBucket(q.Bucket)
	case "deleteBucket":
		err = db.DeleteBucket(q.Bucket)
	case "bucket":
		var b store.BucketInfo
		b, err = db.Bucket(q.Bucket)
		a.Bucket = &b
	case "buckets":
		a.Buckets, err = db.Buckets()
	case "putObject":
		if err = need(op, q.Object != nil); err == nil {
			var o meta.Object
			o, a.Blocks, err = db.PutObject(*q.Object)
			a.Object = &o
		}
	case "object":
		var o meta.Object
		o, err = db.Object(q.Bucket, q.Key)
		a.Object = &o
	case "readObject":
		var o meta.Object
		o, err = db.ReadObject(q.Bucket, q.Key)
		a.Object = &o
	case "readDone":
		if err = need(op, q.Object != nil); err == nil {
			a.Blocks, err = db.ReadDone(*q.Object)
		}
	case "deleteObject":
		a.Blocks, err = db.DeleteObject(q.Bucket, q.Key)
	case "deleteExpired":
		a.Blocks, a.N, err = db.DeleteExpired(q.Max)
	case "list":
		if err = need(op, q.List != nil); err == nil {
			var l store.ListResult
			l, err = db.List(q.Bucket, *q.List)
			a.List = &l
		}
	case "createUpload":
		if err = need(op, q.Opts != nil); err == nil {
			var u meta.Upload
			u, err = db.CreateUpload(q.Bucket, q.Key, *q.Opts)
			a.Upload = &u
		}
	case "upload":
		var u meta.Upload
		u, err = db.Upload(q.Bucket, q.Key, q.Upload)
		a.Upload = &u
	case "putPart":
		if err = need(op, q.Part != nil); err == nil {
			a.Blocks, err = db.PutPart(q.Bucket, q.Key, q.Upload, *q.Part)
		}
	case "parts":
		if err = need(op, q.Parts != nil); err == nil {
			var p store.ListPartsResult
			p, err = db.Parts(q.Bucket, q.Key, q.Upload, *q.Parts)
			a.Parts = &p
		}
	case "completeUpload":
		var o meta.Object
		o, a.Blocks, err = db.CompleteUpload(q.Bucket, q.Key, q.Upload, q.Complete, q.MinPart)
		a.Object = &o
	case "abortUpload":
		a.Blocks, err = db.AbortUpload(q.Bucket, q.Key, q.Upload)
	case "members":
		if h.Members != nil {
			a.Members = h.Members()
		}
	default:
		err = fmt.Errorf("%w: unknown metadata op %q", store.ErrInvalidArgument, op)
	}
	return a, err
}

// Client is a local.Meta served by a Handler at BaseURL. It is safe for
// concurrent use and keeps its connections open between calls.
type Client struct {
	// BaseURL is where the ops live, e.g. "http://ctl:7070/v1/store/meta".
	BaseURL string
	// Header is added to every request (the cluster token).
	Header http.Header
	// HTTP makes the requests; nil: a client of its own with idle
	// connections kept.
	HTTP *http.Client
	// Timeout bounds one call (default 10s).
	Timeout time.Duration
}

var _ local.Meta = (*Client)(nil)

var defaultHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}}

// call runs op and decodes its answer. It fails with store.ErrUnavailable
// when the service cannot be reached or does not answer, and with the
// service's own error otherwise.
func (c *Client) call(ctx context.Context, op string, q Request) (Answer, error) {
	var a Answer
	body, err := json.Marshal(q)
	if err != nil {
		return a, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/"+op, bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return a, fmt.Errorf("%w: metadata service at %s: %v", store.ErrUnavailable, c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return a, fmt.Errorf("%w: metadata service at %s: answer cut short: %v", store.ErrUnavailable, c.BaseURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorAnswer
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			code := "unavailable"
			if resp.StatusCode/100 == 4 {
				code = "internal"
			}
			return a, store.FromCode(code, fmt.Sprintf("store: metadata service at %s answered %s: %s", c.BaseURL, resp.Status, bytes.TrimSpace(b)))
		}
		return a, store.FromCode(e.Code, e.Error)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("store: metadata service at %s: bad answer to %s: %v", c.BaseURL, op, err)
	}
	return a, nil
}

func (c *Client) do(op string, q Request) (Answer, error) { return c.call(context.Background(), op, q) }

func (c *Client) CreateBucket(name string) error {
	_, err := c.do("createBucket", Request{Bucket: name})
	return err
}

func (c *Client) DeleteBucket(name string) error {
	_, err := c.do("deleteBucket", Request{Bucket: name})
	return err
}

func (c *Client) Bucket(name string) (store.BucketInfo, error) {
	a, err := c.do("bucket", Request{Bucket: name})
	if err != nil || a.Bucket == nil {
		return store.BucketInfo{}, orMissing(err, "bucket")
	}
	return *a.Bucket, nil
}

func (c *Client) Buckets() ([]store.BucketInfo, error) {
	a, err := c.do("buckets", Request{})
	return a.Buckets, err
}

func (c *Client) PutObject(obj meta.Object) (meta.Object, []meta.Block, error) {
	a, err := c.do("putObject", Request{Object: &obj})
	if err != nil || a.Object == nil {
		return meta.Object{}, nil, orMissing(err, "object")
	}
	return *a.Object, a.Blocks, nil
}

func (c *Client) Object(bucket, key string) (meta.Object, error) {
	a, err := c.do("object", Request{Bucket: bucket, Key: key})
	if err != nil || a.Object == nil {
		return meta.Object{}, orMissing(err, "object")
	}
	return *a.Object, nil
}

func (c *Client) ReadObject(bucket, key string) (meta.Object, error) {
	a, err := c.do("readObject", Request{Bucket: bucket, Key: key})
	if err != nil || a.Object == nil {
		return meta.Object{}, orMissing(err, "object")
	}
	return *a.Object, nil
}

func (c *Client) ReadDone(o meta.Object) ([]meta.Block, error) {
	if !o.Counted {
		return nil, nil
	}
	a, err := c.do("readDone", Request{Object: &o})
	return a.Blocks, err
}

func (c *Client) DeleteObject(bucket, key string) ([]meta.Block, error) {
	a, err := c.do("deleteObject", Request{Bucket: bucket, Key: key})
	return a.Blocks, err
}

func (c *Client) DeleteExpired(max int) ([]meta.Block, int, error) {
	a, err := c.do("deleteExpired", Request{Max: max})
	return a.Blocks, a.N, err
}

func (c *Client) List(bucket string, opts store.ListOptions) (store.ListResult, error) {
	a, err := c.do("list", Request{Bucket: bucket, List: &opts})
	if err != nil || a.List == nil {
		return store.ListResult{}, orMissing(err, "list")
	}
	return *a.List, nil
}

func (c *Client) CreateUpload(bucket, key string, opts store.PutOptions) (meta.Upload, error) {
	a, err := c.do("createUpload", Request{Bucket: bucket, Key: key, Opts: &opts})
	if err != nil || a.Upload == nil {
		return meta.Upload{}, orMissing(err, "upload")
	}
	return *a.Upload, nil
}

func (c *Client) Upload(bucket, key, id string) (meta.Upload, error) {
	a, err := c.do("upload", Request{Bucket: bucket, Key: key, Upload: id})
	if err != nil || a.Upload == nil {
		return meta.Upload{}, orMissing(err, "upload")
	}
	return *a.Upload, nil
}

func (c *Client) PutPart(bucket, key, id string, p meta.Part) ([]meta.Block, error) {
	a, err := c.do("putPart", Request{Bucket: bucket, Key: key, Upload: id, Part: &p})
	return a.Blocks, err
}

func (c *Client) Parts(bucket, key, id string, opts store.ListPartsOptions) (store.ListPartsResult, error) {
	a, err := c.do("parts", Request{Bucket: bucket, Key: key, Upload: id, Parts: &opts})
	if err != nil || a.Parts == nil {
		return store.ListPartsResult{}, orMissing(err, "parts")
	}
	return *a.Parts, nil
}

func (c *Client) CompleteUpload(bucket, key, id string, list []store.CompletePart, minPart int64) (meta.Object, []meta.Block, error) {
	a, err := c.do("completeUpload", Request{Bucket: bucket, Key: key, Upload: id, Complete: list, MinPart: minPart})
	if err != nil || a.Object == nil {
		return meta.Object{}, nil, orMissing(err, "object")
	}
	return *a.Object, a.Blocks, nil
}

func (c *Client) AbortUpload(bucket, key, id string) ([]meta.Block, error) {
	a, err := c.do("abortUpload", Request{Bucket: bucket, Key: key, Upload: id})
	return a.Blocks, err
}

// Members lists the node agents that hold blocks now (holder name → peer
// address), for spread.Config.Members.
func (c *Client) Members(ctx context.Context) (map[string]string, error) {
	a, err := c.call(ctx, "members", Request{})
	return a.Members, err
}

// Close closes idle connections of the client's own HTTP client.
func (c *Client) Close() error {
	if c.HTTP == nil {
		return nil
	}
	c.HTTP.CloseIdleConnections()
	return nil
}

// orMissing is err, or an error for an answer that lacks what the op
// returns.
func orMissing(err error, what string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("store: metadata service answered without the %s", what)
}
