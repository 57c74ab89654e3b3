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
