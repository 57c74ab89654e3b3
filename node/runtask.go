package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/stream"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/xfer"
)

func (rs *runs) handleTask(w http.ResponseWriter, r *http.Request) {
	ru := rs.get(r.PathValue("run"))
	var t *task
	if ru != nil {
		t = ru.tasks[r.PathValue("task")]
	}
	if t == nil {
		httpx.WriteError(w, http.StatusNotFound, "no_such_task", "task "+r.PathValue("task")+" of run "+r.PathValue("run")+" is not prepared on node "+rs.a.cfg.ID)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rs.runTask(r.Context(), t))
}

// runTask invokes the task's instance once and waits for its outputs to be
// delivered or kept. Every failure is named: the instance died, its
// handler failed, or a channel broke under it.
func (rs *runs) runTask(ctx context.Context, t *task) TaskResult {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.run.ctx, cancel)
	defer stop()
	t.setState("running")
	res := TaskResult{Task: t.spec.ID, Held: map[string]ChannelFeed{}}
	t.mu.Lock()
	inst := t.inst
	t.mu.Unlock()
	if inst == nil || !inst.Begin() {
		res.Failure, res.Error = "crash", "the instance is gone before the task started"
		if inst != nil {
			if exit := inst.Info().LastExit; exit != "" {
				res.Error += ": " + exit
			}
		}
	} else {
		if t.spec.Interface == "http" {
			rs.invokeHTTP(ctx, t, inst, &res)
		} else {
			rs.invokeStage(ctx, t, inst, &res)
		}
		// End first: the run's end may be stopping the instance, which
		// waits for this invocation to let go.
		inst.End()
		if res.Failure == "broken" {
			rs.failed(ctx, t, inst, &res)
		}
	}
	// Ends the instance never took would keep the other ends waiting.
	t.closeEnds()
	t.mu.Lock()
	collectors := t.collectors
	t.mu.Unlock()
	for _, c := range collectors {
		select {
		case got := <-c:
			if got.err != nil && res.Failure == "" {
				res.Failure, res.Error = "channel", fmt.Sprintf("output channel %s: %v", got.ch, got.err)
			}
			if got.err == nil {
				res.Held[got.ch] = got.feed
			}
		case <-ctx.Done():
			if res.Failure == "" {
				res.Failure, res.Error = "canceled", "the run ended before the task's outputs were kept"
			}
		}
	}
	if res.Failure == "" && t.run.ctx.Err() != nil {
		res.Failure, res.Error = "canceled", "the run was canceled"
	}
	res.Elapsed = time.Since(start)
	if res.Failure != "" {
		t.setState("failed")
	} else {
		t.setState("done")
	}
	return res
}

// invokeStage calls an SDK stage: it fetches its ports' ends itself with
// the ticket, and reports the bytes it moved per port.
func (rs *runs) invokeStage(ctx context.Context, t *task, inst *supervisor.Instance, res *TaskResult) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.Addr()+"/", bytes.NewReader(t.spec.Input))
	if err != nil {
		res.Failure, res.Error = "start", err.Error()
		return
	}
	req.ContentLength = int64(len(t.spec.Input))
	req.Header.Set(HeaderTask, t.ticket)
	req.Header.Set(httpx.HeaderFunction, t.spec.Start.Function.Name)
	resp, err := rs.a.toInst.RoundTrip(req)
	if err != nil {
		broken(res, err)
		return
	}
	defer resp.Body.Close()
	max := rs.inlineMax()
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		broken(res, err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		code, msg := httpx.ParseError(body, resp.Status)
		res.Failure, res.Error = "handler", msg
		if code == "channel_failed" {
			res.Failure = "channel"
		}
		return
	}
	if int64(len(body)) > max {
		res.Failure, res.Error = "handler", fmt.Sprintf("its result is larger than the inline limit %s; a sink should write large results to a stage output or the store", xfer.Human(max))
		return
	}
	res.Output = body
	if h := resp.Header.Get(HeaderPorts); h != "" {
		if err := json.Unmarshal([]byte(h), &res.Ports); err == nil {
			for k, parts := range res.Ports {
				for _, n := range parts {
					if strings.HasPrefix(k, "in:") {
						res.BytesIn += n
					} else {
						res.BytesOut += n
					}
				}
			}
		}
	}
}

// failed classifies an invocation that broke: the instance died, the run
// was canceled, or the connection failed.
// broken marks an invocation whose connection to the instance broke; the
// cause is found once the invocation is over (failed).
func broken(res *TaskResult, err error) {
	res.Failure, res.Error = "broken", err.Error()
}

func (rs *runs) failed(ctx context.Context, t *task, inst *supervisor.Instance, res *TaskResult) {
	// A death of its own is the cause even when the run's end came first
	// (the other tasks' failures follow from it), so wait for the process
	// to be reaped and read how it ended. Stopped by the run's end (SIGTERM,
	// or SIGKILL after the grace), the task was canceled.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st := inst.State(); st != supervisor.Ready && st != supervisor.Draining {
			break
		}
		if ctx.Err() == nil && time.Until(deadline) < 1750*time.Millisecond {
			break // alive and not canceled: the connection itself failed
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.mu.Lock()
	died := t.died
	t.mu.Unlock()
	exit := inst.Info().LastExit
	if died == "" && exit != "" && exit != "exit status 0" && exit != "signal: terminated" && exit != "signal: killed" {
		died = exit
	}
	switch {
	case died != "":
		res.Failure, res.Error = "crash", fmt.Sprintf("the instance exited: %s (see `handoff logs %s`)", died, t.spec.Start.Function.Name)
	case ctx.Err() != nil:
		res.Failure, res.Error = "canceled", "the run was canceled"
	default:
		res.Failure, res.Error = "crash", "the instance failed: "+res.Error
	}
}

func (rs *runs) inlineMax() int64 {
	if rs.a.policy.InlineMax > 0 {
		return rs.a.policy.InlineMax
	}
	return xfer.DefaultInlineMax
}

// invokeHTTP runs a plain HTTP function as a stage: the node reads its
// input channels (in part order) as the request body and writes the
// response body to its output channels. A partitioned output is split
// into lines, keyed by the text before the first tab or space.
func (rs *runs) invokeHTTP(ctx context.Context, t *task, inst *supervisor.Instance, res *TaskResult) {
	var body io.Reader = bytes.NewReader(t.spec.Input)
	var inFiles []*os.File
	var in atomic.Int64
	if len(t.spec.Inputs) == 1 {
		p := t.spec.Inputs[0]
		var readers []io.Reader
		for part := range p.Channels {
			f := t.takeEnd(endKey("in", p.Name, part))
			if f == nil {
				continue
			}
			inFiles = append(inFiles, f)
			readers = append(readers, stream.NewReader(f))
		}
		body = &countReader{r: io.MultiReader(readers...), n: &in, t: t}
	}
	defer func() {
		for _, f := range inFiles {
			f.Close()
		}
	}()
	var outs []*stream.Writer
	var outFiles []*os.File
	var port RunPort
	if len(t.spec.Outputs) == 1 {
		port = t.spec.Outputs[0]
		for part := range port.Channels {
			f := t.takeEnd(endKey("out", port.Name, part))
			if f == nil {
				continue
			}
			outFiles = append(outFiles, f)
			outs = append(outs, stream.NewWriter(f))
		}
	}
	defer func() {
		for _, f := range outFiles {
			f.Close()
		}
	}()
	abort := func(msg string) {
		for _, w := range outs {
			_ = w.Abort(msg)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inst.Addr()+"/", body)
	if err != nil {
		res.Failure, res.Error = "start", err.Error()
		return
	}
	req.Header.Set(httpx.HeaderFunction, t.spec.Start.Function.Name)
	resp, err := rs.a.toInst.RoundTrip(req)
	if err != nil {
		// A broken input fails the request body: name the channel.
		if isStreamErr(err) {
			res.Failure, res.Error = "channel", "input: "+err.Error()
			abort(res.Error)
			return
		}
		broken(res, err)
		abort("stage " + t.spec.Stage + " failed: " + res.Error)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_, msg := httpx.ParseError(b, resp.Status)
		res.Failure, res.Error = "handler", msg
		abort("stage " + t.spec.Stage + " failed: " + res.Error)
		return
	}
	var out int64
	if len(outs) == 0 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, rs.inlineMax()+1))
		if err != nil {
			broken(res, err)
			return
		}
		res.Output = b
	} else {
		out, err = writeOutput(resp.Body, port, outs, t)
		if err != nil {
			res.Failure, res.Error = "channel", "output: "+err.Error()
			if !isStreamErr(err) {
				broken(res, err)
			}
			abort("stage " + t.spec.Stage + " failed: " + res.Error)
			return
		}
		for _, w := range outs {
			if err := w.Close(); err != nil {
				res.Failure, res.Error = "channel", "output: "+err.Error()
				return
			}
		}
	}
	res.BytesIn, res.BytesOut = in.Load(), out
}

func isStreamErr(err error) bool {
	return errors.Is(err, stream.ErrTruncated) || errors.Is(err, stream.ErrMismatch) ||
		errors.Is(err, stream.ErrAborted) || errors.Is(err, stream.ErrMalformed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// writeOutput copies a response body to an http stage's output parts by
// the port's pattern.
func writeOutput(body io.Reader, port RunPort, outs []*stream.Writer, t *task) (int64, error) {
	cw := func(w io.Writer) io.Writer { return &countWriter{w: w, t: t} }
	switch port.Pattern {
	case "partition", "shuffle":
		ws := make([]io.Writer, len(outs))
		for i, w := range outs {
			ws[i] = cw(w)
		}
		by, err := stream.ParsePartition(port.Key)
		if err != nil {
			by = stream.Hash
		}
		p := stream.NewPartitioner(ws, by)
		br := bufio.NewReaderSize(body, 64<<10)
		var n int64
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				rec := append([]byte(nil), line...)
				if err := p.WriteRecord(lineKey(rec), rec); err != nil {
					return n, err
				}
				n += int64(len(rec))
			}
			if err == io.EOF {
				return n, nil
			}
			if err != nil && err != bufio.ErrBufferFull {
				return n, err
			}
		}
	default:
		ws := make([]io.Writer, len(outs))
		for i, w := range outs {
			ws[i] = w
		}
		return io.Copy(cw(io.MultiWriter(ws...)), body)
	}
}

// lineKey is a line's key: the text before its first tab or space.
func lineKey(line []byte) []byte {
	for i, c := range line {
		if c == '\t' || c == ' ' || c == '\n' {
			return line[:i]
		}
	}
	return line
}

// countReader counts an http stage's input for its result and progress.
type countReader struct {
	r io.Reader
	n *atomic.Int64
	t *task
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.t.mu.Lock()
	c.t.relayIn += int64(n)
	c.t.mu.Unlock()
	return n, err
}

// countWriter counts an http stage's output for its progress.
type countWriter struct {
	w io.Writer
	t *task
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.mu.Lock()
	c.t.relayOut += int64(n)
	c.t.mu.Unlock()
	return n, err
}
