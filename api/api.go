// Package api holds the JSON types of the gateway's HTTP API and a Go client
// for it, shared by the CLI, the benchmark harness, the demo and tests.
package api

import (
	"time"

	"github.com/handoff-dev/handoff/spec"
)

// Function is a deployed function with its live state.
type Function struct {
	Function spec.Function `json:"function"`
	Version  int64         `json:"version"`
	Ready    int           `json:"ready"`
	Starting int           `json:"starting"`
	Draining int           `json:"draining"`
	InFlight int           `json:"inFlight"`
	Queued   int           `json:"queued"`
	Desired  int           `json:"desired"`
	Panic    bool          `json:"panic"`
	Reason   string        `json:"reason,omitempty"`
}

// Status is the platform overview behind `handoff status`.
type Status struct {
	Gateway   string         `json:"gateway"`
	Nodes     []Node         `json:"nodes"`
	Functions []Function     `json:"functions"`
	Async     map[string]int `json:"async"`
}

// Node is one node agent in Status.
type Node struct {
	ID        string     `json:"id"`
	Addr      string     `json:"addr"`
	S3        string     `json:"s3,omitempty"`         // the node's S3-compatible API
	StoreDir  string     `json:"storeMount,omitempty"` // where it mounts the store, or "off: why"
	Up        bool       `json:"up"`
	LastSeen  time.Time  `json:"lastSeen"`
	RSS       int64      `json:"rss"`
	Instances []Instance `json:"instances"`
}

// Instance is one function instance as its node agent reports it.
type Instance struct {
	ID                  string        `json:"id"`
	Function            string        `json:"function"`
	PID                 int           `json:"pid"`
	Addr                string        `json:"addr"`
	State               string        `json:"state"`
	Restarts            int           `json:"restarts"`
	StartedAt           time.Time     `json:"startedAt"`
	ColdStart           time.Duration `json:"coldStartNs"` // spawn to ready, first start
	MemoryBytes         int64         `json:"memoryBytes"`
	LastExit            string        `json:"lastExit,omitempty"`
	MemoryLimitEnforced bool          `json:"memoryLimitEnforced"`
}

// Invocation is an async invocation's status and, once finished, its result.
type Invocation struct {
	ID           string    `json:"id"`
	Function     string    `json:"function"`
	Status       string    `json:"status"`
	Attempts     int       `json:"attempts"`
	HTTPStatus   int       `json:"httpStatus,omitempty"`
	Error        string    `json:"error,omitempty"`
	Output       *string   `json:"output,omitempty"`
	OutputBase64 []byte    `json:"outputBase64,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	RequestID    string    `json:"requestId,omitempty"`
}

// Accepted is the 202 answer to an async invocation.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	URL    string `json:"url"`
}

// Error is the JSON body of every error answer.
type Error struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// LeaseRequest asks a node agent for executors of a function
// (POST /v1/leases on a node agent, with the admin token).
type LeaseRequest struct {
	Function   string `json:"function"`
	Executors  int    `json:"executors"`
	MilliCores int64  `json:"milliCores,omitempty"` // per executor; default 1000
	Memory     int64  `json:"memory,omitempty"`     // per executor, bytes; default the function's memory or 128 MiB
	Duration   string `json:"duration"`             // e.g. "30s"
	Mode       string `json:"mode,omitempty"`       // hot, warm or auto (default)
	HotPoll    string `json:"hotPoll,omitempty"`    // auto mode: busy-poll after a call, e.g. "50ms"
}

// LeaseGrant answers a granted lease. Token authenticates the holder to
// the executors; keep it secret.
type LeaseGrant struct {
	ID        string          `json:"id"`
	Token     string          `json:"token"`
	Node      string          `json:"node"`
	Function  string          `json:"function"`
	Mode      string          `json:"mode"`
	Expires   time.Time       `json:"expires"`
	Executors []LeaseExecutor `json:"executors"`
}

// LeaseExecutor is where one leased executor takes direct calls: TCP from
// anywhere in the cluster, Unix (shared-memory ring set-up) on its node.
type LeaseExecutor struct {
	Index int    `json:"index"`
	State string `json:"state"`
	TCP   string `json:"tcp,omitempty"`
	Unix  string `json:"unix,omitempty"`
	PID   int    `json:"pid,omitempty"` // its process on its node; in listings only
}

// LeaseRedirect answers a lease request this node cannot grant but a peer
// can (409, code "lease_redirect").
type LeaseRedirect struct {
	Code  string `json:"code"`
	Error string `json:"error"`
	Node  string `json:"node"`
	Addr  string `json:"addr"`
}

// LeaseInfo describes a lease for listings (`handoff leases`).
type LeaseInfo struct {
	ID          string          `json:"id"`
	Node        string          `json:"node"`
	Function    string          `json:"function"`
	State       string          `json:"state"`
	Mode        string          `json:"mode"`
	Expires     time.Time       `json:"expires"`
	Executors   []LeaseExecutor `json:"executors"`
	Allocated   time.Duration   `json:"allocatedNs"`
	Busy        time.Duration   `json:"busyNs"`
	HotPolling  time.Duration   `json:"hotPollingNs"`
	Invocations uint64          `json:"invocations"`
}
