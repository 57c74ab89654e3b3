// Package wcstage holds the stages of the streaming word count, a
// MapReduce over workflow streams:
//
//	wcs-gen    generate this task's share of the corpus into output "out"
//	wcs-map    count the words of its input, then emit "word\tcount" lines
//	           to the reducers, partitioned by word (a shuffle edge)
//	wcs-reduce merge the counts from every mapper; emit its partition's
//	           summary (words, distinct, top 10) as one JSON line
//	wcs-top    merge the reducers' summaries into the run's result
//
// The corpus is package wc's, so the result equals the request/response
// word count's on the same size and seed.
package wcstage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/sdk"
	"github.com/handoff-dev/handoff/spec"
)

// chunk is how much of the corpus Gen makes at a time.
const chunk = 4 << 20

// Gen writes its share of a corpus of params "bytes" (total, all tasks)
// with params "seed", in chunks numbered across tasks.
func Gen(ctx context.Context, s *sdk.Stage) error {
	total, err := spec.ParseBytes(s.Param("bytes", "64Mi"))
	if err != nil {
		return fmt.Errorf("wcs-gen: param bytes: %w", err)
	}
	seed, err := strconv.ParseInt(s.Param("seed", "1"), 10, 64)
	if err != nil {
		return fmt.Errorf("wcs-gen: param seed: %w", err)
	}
	chunks := int((int64(total) + chunk - 1) / chunk)
	out := s.Output("out")
	buf := make([]byte, chunk)
	for i := s.Index; i < chunks; i += s.Count {
		n := chunk
		if rest := int64(total) - int64(i)*chunk; rest < chunk {
			n = int(rest)
		}
		wc.Generate(buf[:n], seed, i)
		if _, err := out.Write(buf[:n]); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Map counts the words of its input and sends each word's count to the
// reducer its hash picks.
func Map(ctx context.Context, s *sdk.Stage) error {
	var c wc.Counter
	in := s.Input("in")
	buf := make([]byte, 1<<20)
	carry := 0 // bytes of a word cut at the end of the last read
	for {
		n, err := in.Read(buf[carry:])
		n += carry
		// Count up to the last separator; keep the cut word for the next read.
		cut := lastSpace(buf[:n]) + 1
		if err == io.EOF {
			cut = n
		}
		c.Add(buf[:cut])
		carry = copy(buf, buf[cut:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if carry == len(buf) {
			return errors.New("wcs-map: a word longer than 1 MiB; is the input text?")
		}
	}
	p := s.Partitioned("out")
	var line []byte
	for w, n := range c.Counts() {
		line = append(line[:0], w...)
		line = append(line, '\t')
		line = strconv.AppendInt(line, n, 10)
		line = append(line, '\n')
		if err := p.WriteRecord(line[:len(w)], line); err != nil {
			return err
		}
	}
	return nil
}

func lastSpace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case ' ', '\n', '\t', '\r', '\v', '\f':
			return i
		}
	}
	return -1
}

// Reduce merges "word\tcount" lines from every mapper (read in parallel)
// and writes its partition's summary.
func Reduce(ctx context.Context, s *sdk.Stage) error {
	parts := s.Inputs("in")
	counts := make([]wc.Counts, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, r := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = readCounts(r)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	all := counts[0]
	for _, c := range counts[1:] {
		all.Merge(c)
	}
	b, err := json.Marshal(wc.Summarize(all, 10))
	if err != nil {
		return err
	}
	_, err = s.Output("out").Write(append(b, '\n'))
	return err
}

func readCounts(r io.Reader) (wc.Counts, error) {
	c := wc.Counts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		w, n, ok := bytes.Cut(sc.Bytes(), []byte{'\t'})
		k, err := strconv.ParseInt(string(n), 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("wcs-reduce: bad line %q: want word<TAB>count", sc.Bytes())
		}
		c[string(w)] += k
	}
	return c, sc.Err()
}

// Top merges the reducers' summaries (disjoint sets of words) into one.
func Top(ctx context.Context, s *sdk.Stage) error {
	var sum wc.Summary
	var top []wc.WordCount
	sc := bufio.NewScanner(s.Input("in"))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var part wc.Summary
		if err := json.Unmarshal(sc.Bytes(), &part); err != nil {
			return fmt.Errorf("wcs-top: a reducer's summary: %w", err)
		}
		sum.Words += part.Words
		sum.Distinct += part.Distinct
		top = append(top, part.Top...)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	merged := wc.Counts{}
	for _, t := range top {
		merged[t.Word] = t.Count
	}
	sum.Top = wc.Summarize(merged, 10).Top
	return json.NewEncoder(s.Result).Encode(sum)
}
