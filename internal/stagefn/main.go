// Command stagefn is a workflow stage for end-to-end tests and benchmarks.
// Its stage param "role" chooses what a task does:
//
//	gen    writes "bytes" bytes of lines "k<n>\t<filler>\n" (deterministic per
//	       task) to output "out": plainly, or keyed by the line's first field
//	       when the port is partitioned. "crash_after" exits the process (status
//	       3) once that many bytes are out; "fail_after" returns an error there;
//	       "corrupt" frames the stream itself and flips one data bit below the
//	       framing, so the trailer disagrees.
//	pass   copies input "in" to output "out"; "slow" sleeps that long per 64 KiB
//	       read (a slow consumer); "crash_after" exits after reading that many.
//	sum    reads every part of every input in parallel and answers, as its
//	       result, JSON {"bytes": N, "lines": L, "parts": [bytes per part]}.
//	       "slow" and "crash_after" as for pass.
//
// Invoked without a workflow task (a plain HTTP call, as an "http" stage),
// it upper-cases its body as it streams.
package main

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
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/sdk"
	"github.com/handoff-dev/handoff/stream"
)

func main() {
	stage := sdk.StageHandler(run)
	sdk.ServeHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(sdk.HeaderTask) != "" {
			stage.ServeHTTP(w, r)
			return
		}
		upper(w, r.Body)
	}))
}

func upper(w http.ResponseWriter, body io.Reader) {
	buf := make([]byte, 64<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			w.Write(bytes.ToUpper(buf[:n]))
		}
		if err != nil {
			return
		}
	}
}

func run(ctx context.Context, s *sdk.Stage) error {
	switch role := s.Param("role", ""); role {
	case "gen":
		return gen(s)
	case "pass":
		return pass(s)
	case "sum":
		return sum(s)
	default:
		return fmt.Errorf("stagefn: unknown role %q; use gen, pass or sum", role)
	}
}

func size(s *sdk.Stage, name string) int64 {
	n, err := strconv.ParseInt(s.Param(name, "-1"), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// block is 1 MiB of lines for task index ix: line n is "k<n>\t" and filler.
func block(ix int) []byte {
	var b bytes.Buffer
	for n := 0; b.Len() < 1<<20-128; n++ {
		fmt.Fprintf(&b, "k%d\t%0*d\n", n%997, 40+ix%7, n)
	}
	return b.Bytes()
}

func gen(s *sdk.Stage) error {
	total := size(s, "bytes")
	crashAfter, failAfter := size(s, "crash_after"), size(s, "fail_after")
	blk := block(s.Index)
	var write func([]byte) error
	if s.IsPartitioned("out") {
		p := s.Partitioned("out")
		write = func(b []byte) error {
			for len(b) > 0 {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					i = len(b) - 1
				}
				line := b[:i+1]
				key := line
				if k := bytes.IndexByte(line, '\t'); k >= 0 {
					key = line[:k]
				}
				if err := p.WriteRecord(key, line); err != nil {
					return err
				}
				b = b[i+1:]
			}
			return nil
		}
	} else {
		out := s.Output("out")
		if s.Param("corrupt", "") == "1" {
			// Frame the stream here and flip a bit below the framing:
			// the consumer must catch it by the trailer's checksum.
			f, err := s.TakeOutputFile("out", 0)
			if err != nil {
				return err
			}
			defer f.Close()
			sw := stream.NewWriter(&flipper{w: f})
			defer sw.Close()
			out = sw
		}
		write = func(b []byte) error { _, err := out.Write(b); return err }
	}
	var sent int64
	for sent < total {
		b := blk
		if rest := total - sent; rest < int64(len(b)) {
			// Cut at a line end so records stay whole.
			cut := bytes.LastIndexByte(b[:rest], '\n') + 1
			if cut == 0 {
				cut = int(rest)
			}
			b = b[:cut]
		}
		if err := write(b); err != nil {
			return err
		}
		sent += int64(len(b))
		if crashAfter >= 0 && sent >= crashAfter {
			fmt.Fprintf(os.Stderr, "stagefn: crashing after %d bytes as asked\n", sent)
			os.Exit(3)
		}
		if failAfter >= 0 && sent >= failAfter {
			return fmt.Errorf("stagefn: failing after %d bytes as asked", sent)
		}
	}
	return nil
}

// flipper flips one bit at offset 1 KiB of a framed stream, inside the
// first frame's data: the trailer's checksum then disagrees.
type flipper struct {
	w    io.Writer
	seen int
	done bool
}

func (f *flipper) Write(p []byte) (int, error) {
	if !f.done && f.seen+len(p) > 1024 {
		q := append([]byte(nil), p...)
		q[1024-f.seen] ^= 0x01
		f.done = true
		p = q
	}
	f.seen += len(p)
	return f.w.Write(p)
}

// reader applies the slow and crash_after params to an input.
type reader struct {
	r          io.Reader
	slow       time.Duration
	crashAfter int64
	n          int64
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	if r.slow > 0 {
		time.Sleep(r.slow)
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.crashAfter >= 0 && r.n >= r.crashAfter {
		fmt.Fprintf(os.Stderr, "stagefn: crashing after reading %d bytes as asked\n", r.n)
		os.Exit(3)
	}
	return n, err
}

func wrapIn(s *sdk.Stage, r io.Reader) io.Reader {
	slow, _ := time.ParseDuration(s.Param("slow", "0s"))
	return &reader{r: r, slow: slow, crashAfter: size(s, "crash_after")}
}

func pass(s *sdk.Stage) error {
	_, err := io.CopyBuffer(s.Output("out"), wrapIn(s, s.Input("in")), make([]byte, 256<<10))
	return err
}

func sum(s *sdk.Stage) error {
	parts := s.Inputs("in")
	counts := make([]int64, len(parts))
	lines := make([]int64, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(wrapIn(s, p), 256<<10)
			buf := make([]byte, 256<<10)
			for {
				n, err := br.Read(buf)
				counts[i] += int64(n)
				lines[i] += int64(bytes.Count(buf[:n], []byte{'\n'}))
				if err == io.EOF {
					return
				}
				if err != nil {
					errs[i] = fmt.Errorf("input part %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var total, nl int64
	for i := range counts {
		total += counts[i]
		nl += lines[i]
	}
	return json.NewEncoder(s.Result).Encode(map[string]any{"bytes": total, "lines": nl, "parts": counts})
}
