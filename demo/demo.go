// Package demo drives the word-count workflow of examples/wordcount on a
// running platform, once with Handoff carrying the data between functions and
// once through S3 (MinIO), and reports both side by side.
package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/xfer"
)

// Job is one run of the word count.
type Job struct {
	Client   *api.Client
	Via      string // wc.ViaHandoff or wc.ViaS3
	S3       *wc.S3 // with Via == wc.ViaS3
	ID       string // run id; S3 keys are named after it
	Size     int64  // corpus bytes
	Chunk    int    // bytes per chunk (one wc-gen invocation each)
	Parallel int    // chunks in flight
	Seed     int64
	Progress io.Writer // one line every ProgressEvery (nil: silent)
	// ProgressEvery defaults to 2s.
	ProgressEvery time.Duration
}

// Result is what one run measured.
type Result struct {
	Via    string
	Wall   time.Duration
	Corpus int64 // bytes generated
	Chunks int
	// Words is the sum of the words each wc-gen reports it generated; the
	// merged Summary must count exactly as many.
	Words   int64
	Summary wc.Summary
	// InlineBytes is what the gateway carried inline during the run (from
	// its handoff_bytes_total metric, both directions).
	InlineBytes int64
	// S3Bytes is what went through S3: every chunk written once and read once.
	S3Bytes int64
	// StreamBytes is what went through workflow streams (ViaStream).
	StreamBytes int64
}

// Throughput is corpus bytes per second of wall time.
func (r Result) Throughput() float64 { return float64(r.Corpus) / r.Wall.Seconds() }

// Run executes the job: wc-gen per chunk (which hands its chunk to wc-count),
// then wc-merge over all counts.
func (j Job) Run(ctx context.Context) (Result, error) {
	if j.Chunk <= 0 || j.Size <= 0 || j.Parallel <= 0 {
		return Result{}, errors.New("demo: Size, Chunk and Parallel must be positive")
	}
	n := int((j.Size + int64(j.Chunk) - 1) / int64(j.Chunk))
	res := Result{Via: j.Via, Chunks: n}
	before, err := InlineBytes(ctx, j.Client)
	if err != nil {
		return res, err
	}
	results := make([]wc.GenResult, n)
	var next, done atomic.Int64
	var corpus atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }

	start := time.Now()
	stopProgress := j.progress(start, n, &done, &corpus)
	var wg sync.WaitGroup
	for range j.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				size := j.Chunk
				if rest := j.Size - int64(i)*int64(j.Chunk); rest < int64(size) {
					size = int(rest)
				}
				req := wc.GenRequest{Run: j.ID, Chunk: i, Bytes: size, Seed: j.Seed, Via: j.Via, S3: j.S3}
				body, _ := json.Marshal(req)
				out, err := j.Client.Invoke(ctx, "wc-gen", body)
				if err != nil {
					fail(fmt.Errorf("chunk %d: wc-gen: %w", i, err))
					return
				}
				if err := json.Unmarshal(out, &results[i]); err != nil {
					fail(fmt.Errorf("chunk %d: wc-gen answered %q: %w", i, abbrev(out), err))
					return
				}
				corpus.Add(int64(size))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	stopProgress()
	if firstErr != nil {
		return res, firstErr
	}

	var counts []json.RawMessage
	var keys []string
	for _, r := range results {
		res.Words += r.Words
		counts = append(counts, r.Counts)
		keys = append(keys, r.CountsKey)
	}
	var final wc.MergeRequest
	if j.Via == wc.ViaS3 {
		// The state of practice: the reducer reads every chunk's counts
		// from the store.
		final = wc.MergeRequest{S3: j.S3, Keys: keys}
	} else {
		// Counts travel in the requests, so they are combined in a tree of
		// fan-in MergeFanIn until one request holds them all.
		for len(counts) > MergeFanIn {
			counts, err = j.combine(ctx, counts)
			if err != nil {
				return res, err
			}
		}
		final = wc.MergeRequest{Counts: counts}
	}
	body, _ := json.Marshal(final)
	out, err := j.Client.Invoke(ctx, "wc-merge", body)
	if err != nil {
		return res, fmt.Errorf("wc-merge: %w", err)
	}
	if err := json.Unmarshal(out, &res.Summary); err != nil {
		return res, fmt.Errorf("wc-merge answered %q: %w", abbrev(out), err)
	}
	res.Wall = time.Since(start)
	res.Corpus = corpus.Load()
	after, err := InlineBytes(ctx, j.Client)
	if err != nil {
		return res, err
	}
	res.InlineBytes = after - before
	if j.Via == wc.ViaS3 {
		res.S3Bytes = 2 * res.Corpus
	}
	if res.Summary.Words != res.Words {
		return res, fmt.Errorf("demo: the merged count has %d words but the generators wrote %d: data was lost or duplicated", res.Summary.Words, res.Words)
	}
	return res, nil
}

// MergeFanIn is how many counts one merge combines: 16 chunks' counts of the
// demo's 4,000-word vocabulary make a request of about 1 MiB.
const MergeFanIn = 16

// combine merges groups of MergeFanIn counts in parallel and returns one
// combined counts per group.
func (j Job) combine(ctx context.Context, counts []json.RawMessage) ([]json.RawMessage, error) {
	groups := (len(counts) + MergeFanIn - 1) / MergeFanIn
	out := make([]json.RawMessage, groups)
	errs := make([]error, groups)
	var wg sync.WaitGroup
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := counts[g*MergeFanIn : min((g+1)*MergeFanIn, len(counts))]
			body, _ := json.Marshal(wc.MergeRequest{Combine: true, Counts: part})
			b, err := j.Client.Invoke(ctx, "wc-merge", body)
			if err != nil {
				errs[g] = fmt.Errorf("wc-merge (combining group %d): %w", g, err)
				return
			}
			out[g] = b
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (j Job) progress(start time.Time, n int, done, corpus *atomic.Int64) (stop func()) {
	if j.Progress == nil {
		return func() {}
	}
	every := j.ProgressEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				el := time.Since(start)
				b := corpus.Load()
				fmt.Fprintf(j.Progress, "  [%-7s] %4d/%d chunks  %9s  %7.1f MiB/s  %5.1fs\n", j.Via, done.Load(), n,
					xfer.Human(b), float64(b)/(1<<20)/el.Seconds(), el.Seconds())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

func abbrev(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// InlineBytes reads the gateway's handoff_bytes_total{mode="inline"} summed
// over both directions.
func InlineBytes(ctx context.Context, c *api.Client) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "handoff_bytes_total{") || !strings.Contains(line, `mode="inline"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("gateway metric line %q: %w", line, err)
		}
		sum += v
	}
	return int64(sum), sc.Err()
}
