package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/workflow"
	"github.com/handoff-dev/handoff/xfer"
)

// ViaStream names the word count run as a workflow over streams
// (examples/wordcount/stream).
const ViaStream = "stream"

// StreamJob is the word count as a MapReduce workflow: generators stream
// the corpus into mappers, whose counts are shuffled to reducers.
type StreamJob struct {
	Client *api.Client
	// Spec is examples/wordcount/stream/wordcount.yaml; Size replaces its
	// gen stage's "bytes: 1Gi" param.
	Spec     []byte
	Size     int64
	Progress io.Writer // one line every ProgressEvery (nil: silent)
	// ProgressEvery defaults to 2s.
	ProgressEvery time.Duration
}

// Run runs the workflow to its end. Result.ModeBytes says what each
// transfer mode carried; Words is the summary's own count, which the caller
// compares with another run's.
func (j StreamJob) Run(ctx context.Context) (Result, error) {
	res := Result{Via: ViaStream}
	const sizeParam = "bytes: 1Gi"
	if !strings.Contains(string(j.Spec), sizeParam) {
		return res, fmt.Errorf("demo: the word count workflow has no %q param to set the corpus size in", sizeParam)
	}
	spec := []byte(strings.Replace(string(j.Spec), sizeParam, fmt.Sprintf("bytes: %q", fmt.Sprint(j.Size)), 1))
	wf, err := workflow.Parse(spec)
	if err != nil {
		return res, err
	}
	if err := j.Client.PutWorkflow(ctx, wf.Name, spec); err != nil {
		return res, err
	}
	start := time.Now()
	run, err := j.Client.StartRun(ctx, wf.Name, nil)
	if err != nil {
		return res, err
	}
	every := j.ProgressEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	lastPrint := time.Now()
	for !run.Done() {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = j.Client.CancelRun(cctx, wf.Name, run.ID)
			cancel()
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if run, err = j.Client.Run(ctx, wf.Name, run.ID); err != nil {
			return res, err
		}
		if j.Progress != nil && time.Since(lastPrint) >= every && !run.Done() {
			lastPrint = time.Now()
			var parts []string
			for _, st := range run.Stages {
				parts = append(parts, fmt.Sprintf("%s %d/%d %s", st.Name, st.Done, st.Tasks, xfer.Human(st.BytesOut)))
			}
			el := time.Since(start)
			gen := run.Stages[0].BytesOut
			fmt.Fprintf(j.Progress, "  [%-7s] %s  %7.1f MiB/s  %5.1fs\n", ViaStream, strings.Join(parts, ", "),
				float64(gen)/(1<<20)/el.Seconds(), el.Seconds())
		}
	}
	res.Wall = time.Since(start)
	if run.State != "succeeded" {
		return res, fmt.Errorf("run %s %s: %s", run.ID, run.State, run.Error)
	}
	if len(run.Results) != 1 {
		return res, fmt.Errorf("run %s gave %d results, want one summary", run.ID, len(run.Results))
	}
	if err := json.Unmarshal(run.Results[0].Output, &res.Summary); err != nil {
		return res, fmt.Errorf("the word count's summary %q: %w", abbrev(run.Results[0].Output), err)
	}
	res.Corpus = run.Stages[0].BytesOut
	res.Words = res.Summary.Words
	res.StreamBytes = 0
	for _, e := range run.Edges {
		if e.Mode == string(xfer.Stream) {
			res.StreamBytes += e.Bytes
		}
	}
	return res, nil
}
