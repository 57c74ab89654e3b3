// Package wcfn holds the handlers of the three wordcount functions, so that
// their main packages stay one line long and a test can run the whole
// pipeline in one process:
//
//	wc-gen   GenHandler    generate chunk i, hand it to wc-count, report
//	wc-count CountHandler  count the words of a chunk (inline or in S3)
//	wc-merge MergeHandler  merge counts, report total, distinct and top 10
//
// The JSON formats are the types of package wc (GenRequest, GenResult,
// CountRequest, CountResult, MergeRequest, Summary).
package wcfn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/examples/wordcount/wcs3"
	"github.com/handoff-dev/handoff/sdk"
)

// Function names, as in the specs.
const (
	GenFunction   = "wc-gen"
	CountFunction = "wc-count"
	MergeFunction = "wc-merge"
)

// badInput makes a 400 that says what the function wanted.
func badInput(fn string, err error, want string) error {
	return sdk.Errorf(http.StatusBadRequest, "%s: bad input: %v; want %s", fn, err, want)
}

// GenHandler is wc-gen: it generates chunk req.Chunk of the corpus and hands
// it to wc-count, in the body (via "handoff") or through S3 (via "s3").
func GenHandler(ctx context.Context, in []byte) ([]byte, error) {
	var req wc.GenRequest
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, badInput(GenFunction, err, `{"run","chunk","bytes","seed","via":"handoff"|"s3","s3":{...}}`)
	}
	if err := req.Validate(); err != nil {
		return nil, sdk.Errorf(http.StatusBadRequest, "%s: %v", GenFunction, err)
	}
	chunk, words := wc.GenerateChunk(req.Seed, req.Chunk, req.Bytes)
	res := wc.GenResult{Chunk: req.Chunk, Words: words, Bytes: req.Bytes, Via: req.Via}
	switch req.Via {
	case wc.ViaHandoff:
		out, err := sdk.Invoke(ctx, CountFunction, chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: chunk %d: %w", GenFunction, req.Chunk, err)
		}
		res.Counts = out
	case wc.ViaS3:
		if err := wcs3.EnsureBucket(ctx, *req.S3); err != nil {
			return nil, fmt.Errorf("%s: %w", GenFunction, err)
		}
		key := wc.ChunkKey(req.Run, req.Chunk)
		if err := wcs3.Put(ctx, *req.S3, key, chunk, "text/plain"); err != nil {
			return nil, fmt.Errorf("%s: %w", GenFunction, err)
		}
		ptr, _ := json.Marshal(wc.CountRequest{S3: req.S3, Key: key, CountsKey: wc.CountsKey(req.Run, req.Chunk)})
		out, err := sdk.Invoke(ctx, CountFunction, ptr)
		if err != nil {
			return nil, fmt.Errorf("%s: chunk %d: %w", GenFunction, req.Chunk, err)
		}
		var cr wc.CountResult
		if err := json.Unmarshal(out, &cr); err != nil || cr.CountsKey == "" {
			return nil, fmt.Errorf("%s: chunk %d: %s answered %.100q, want a CountResult with countsKey", GenFunction, req.Chunk, CountFunction, out)
		}
		res.CountsKey = cr.CountsKey
	}
	return json.Marshal(res)
}

// CountHandler is wc-count. Its input is either text, whose word counts it
// returns (an encoded wc.Counts), or, when the first byte is '{', a
// wc.CountRequest pointing at the text in S3; then it stores the counts in
// S3 and returns a wc.CountResult.
func CountHandler(ctx context.Context, in []byte) ([]byte, error) {
	if !wc.IsCountRequest(in) {
		var c wc.Counter
		c.Add(in)
		return c.Counts().Encode(), nil
	}
	var req wc.CountRequest
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, badInput(CountFunction, err, `text, or {"s3":{...},"key":"...","countsKey":"..."} (input starting with '{' is read as JSON; prefix text with a space)`)
	}
	if err := req.S3.Validate(); err != nil {
		return nil, sdk.Errorf(http.StatusBadRequest, "%s: %v", CountFunction, err)
	}
	if req.Key == "" {
		return nil, sdk.Errorf(http.StatusBadRequest, `%s: "key" is empty: give the S3 key of the text to count`, CountFunction)
	}
	if req.CountsKey == "" {
		req.CountsKey = defaultCountsKey(req.Key)
	}
	text, err := wcs3.Get(ctx, *req.S3, req.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CountFunction, err)
	}
	var c wc.Counter
	c.Add(text)
	counts := c.Counts()
	if err := wcs3.Put(ctx, *req.S3, req.CountsKey, counts.Encode(), "application/json"); err != nil {
		return nil, fmt.Errorf("%s: %w", CountFunction, err)
	}
	return json.Marshal(wc.CountResult{CountsKey: req.CountsKey, Words: c.Words(), Distinct: len(counts)})
}

// defaultCountsKey is key with its last "/chunks/" replaced by "/counts/",
// or key + ".counts".
func defaultCountsKey(key string) string {
	if i := strings.LastIndex(key, "/chunks/"); i >= 0 {
		return key[:i] + "/counts/" + key[i+len("/chunks/"):]
	}
	return key + ".counts"
}

// MergeHandler is wc-merge: it merges the counts given inline ("counts") and
// those stored in S3 ("s3" and "keys") and returns a wc.Summary.
func MergeHandler(ctx context.Context, in []byte) ([]byte, error) {
	const want = `{"counts":[{"word":count,...},...]} or {"s3":{...},"keys":["run/counts/0",...]}, with "combine":true for merged counts instead of a summary`
	var req wc.MergeRequest
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, badInput(MergeFunction, err, want)
	}
	if len(req.Counts) == 0 && len(req.Keys) == 0 {
		return nil, badInput(MergeFunction, errors.New("no counts and no keys"), want)
	}
	total := wc.Counts{}
	for i, raw := range req.Counts {
		c, err := wc.DecodeCounts(raw)
		if err != nil {
			return nil, badInput(MergeFunction, fmt.Errorf("counts[%d]: %w", i, err), want)
		}
		total.Merge(c)
	}
	if len(req.Keys) > 0 {
		if err := req.S3.Validate(); err != nil {
			return nil, sdk.Errorf(http.StatusBadRequest, "%s: %v", MergeFunction, err)
		}
		for _, key := range req.Keys {
			b, err := wcs3.Get(ctx, *req.S3, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", MergeFunction, err)
			}
			c, err := wc.DecodeCounts(b)
			if err != nil {
				return nil, fmt.Errorf("%s: s3://%s/%s: %w", MergeFunction, req.S3.Bucket, key, err)
			}
			total.Merge(c)
		}
	}
	if req.Combine {
		return total.Encode(), nil
	}
	return json.Marshal(wc.Summarize(total, wc.TopN))
}
