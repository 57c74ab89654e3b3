package api

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"time"
)

// Run is the status of a workflow run (GET /workflows/{name}/runs/{id}).
type Run struct {
	ID       string `json:"id"`
	Workflow string `json:"workflow"`
	// State is "preparing", "running", "succeeded", "failed" or "canceled".
	State string `json:"state"`
	// Error says why a run failed: the stage, task, edge and cause.
	Error string `json:"error,omitempty"`
	// FailedStage and FailedEdge name where a failure started ("" when
	// the run did not fail, or the failure is not tied to one).
	FailedStage string        `json:"failedStage,omitempty"`
	FailedEdge  string        `json:"failedEdge,omitempty"`
	Started     time.Time     `json:"started"`
	Ended       time.Time     `json:"ended,omitzero"`
	Elapsed     time.Duration `json:"elapsedNs"`
	// Prepare is how long placing tasks, starting instances and opening
	// every channel took, before the first byte was produced.
	Prepare time.Duration `json:"prepareNs"`
	Stages  []RunStage    `json:"stages"`
	Edges   []RunEdge     `json:"edges"`
	// Results are the outputs of the tasks without outputs, by task.
	Results []RunResult `json:"results,omitempty"`
}

// Done reports whether the run has ended, one way or another.
func (r Run) Done() bool {
	return r.State == "succeeded" || r.State == "failed" || r.State == "canceled"
}

// RunStage is one stage's progress.
type RunStage struct {
	Name     string   `json:"name"`
	Function string   `json:"function"`
	Tasks    int      `json:"tasks"`
	Done     int      `json:"done"`
	Failed   int      `json:"failed"`
	Nodes    []string `json:"nodes"`
	// BytesIn and BytesOut are what the stage's tasks read and wrote so
	// far (exact once they finish).
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
}

// RunEdge is one edge and how its data moved.
type RunEdge struct {
	From    string `json:"from"` // "stage.port"
	To      string `json:"to"`
	Pattern string `json:"pattern"`
	Mode    string `json:"mode"`
	Reason  string `json:"reason"`
	// Channels is how many channels the edge expanded to, CrossNode how
	// many of them join two nodes.
	Channels  int `json:"channels"`
	CrossNode int `json:"crossNode"`
	// Bytes is what the producers wrote into the edge.
	Bytes int64 `json:"bytes"`
}

// RunResult is the output of a final task.
type RunResult struct {
	Task   string `json:"task"`
	Output []byte `json:"output"`
}

// PutWorkflow stores a workflow spec (YAML) under its name.
func (c *Client) PutWorkflow(ctx context.Context, name string, yaml []byte) error {
	return c.do(ctx, http.MethodPut, "/v1/workflows/"+url.PathEscape(name), bytes.NewReader(yaml), nil)
}

// StartRun starts a run of a stored workflow; input is the request body of
// its first stages.
func (c *Client) StartRun(ctx context.Context, workflow string, input []byte) (Run, error) {
	var r Run
	err := c.do(ctx, http.MethodPost, "/workflows/"+url.PathEscape(workflow)+"/runs", bytes.NewReader(input), &r)
	return r, err
}

// Run fetches a run's status.
func (c *Client) Run(ctx context.Context, workflow, id string) (Run, error) {
	var r Run
	err := c.do(ctx, http.MethodGet, "/workflows/"+url.PathEscape(workflow)+"/runs/"+url.PathEscape(id), nil, &r)
	return r, err
}

// CancelRun cancels a run that has not ended.
func (c *Client) CancelRun(ctx context.Context, workflow, id string) error {
	return c.do(ctx, http.MethodDelete, "/workflows/"+url.PathEscape(workflow)+"/runs/"+url.PathEscape(id), nil, nil)
}

// RetryRun starts a new run of a workflow with the input of an earlier,
// ended run.
func (c *Client) RetryRun(ctx context.Context, workflow, id string) (Run, error) {
	var r Run
	err := c.do(ctx, http.MethodPost, "/workflows/"+url.PathEscape(workflow)+"/runs/"+url.PathEscape(id)+"/retry", nil, &r)
	return r, err
}
