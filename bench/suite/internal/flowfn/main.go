// Command flowfn is the workflow stage of `handoff bench pipeline`. Its stage
// param "role" chooses what a task does, with the loops of package
// bench/flow:
//
//	gen      writes param "bytes" bytes to output "out" as fast as it can
//	pass     copies input "in" to output "out"
//	discard  reads input "in" and answers its flow.Tally as the result
//	sum      the same, with the CRC-32C of the data
//
// Invoked without a workflow task (a plain call), it runs the same roles
// over S3 instead of streams: the body is a JSON s3Job, the input is object
// In and the output object Out of the bucket in $BENCH_S3_BUCKET on
// $BENCH_S3_ENDPOINT. Chained one after the other, these calls are the
// workflow with every edge staged through object storage.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/bench/flow"
	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	stage := sdk.StageHandler(run)
	sdk.ServeHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(sdk.HeaderTask) != "" {
			stage.ServeHTTP(w, r)
			return
		}
		viaS3(w, r)
	}))
}

func run(ctx context.Context, s *sdk.Stage) error {
	role := s.Param("role", "")
	switch role {
	case "gen":
		n, err := strconv.ParseInt(s.Param("bytes", ""), 10, 64)
		if err != nil {
			return fmt.Errorf("flowfn: param bytes: %v", err)
		}
		return flow.Produce(s.Output("out"), n)
	case "pass":
		_, err := flow.Pass(s.Input("in"), s.Output("out"))
		return err
	case "discard", "sum":
		consume := flow.Discard
		if role == "sum" {
			consume = flow.Sum
		}
		t, err := consume(s.Input("in"))
		if err != nil {
			return err
		}
		return json.NewEncoder(s.Result).Encode(t)
	}
	return fmt.Errorf("flowfn: unknown role %q; use gen, pass, discard or sum", role)
}

// s3Job is one stage run over S3.
type s3Job struct {
	Role  string `json:"role"`
	Bytes int64  `json:"bytes,omitempty"` // gen
	In    string `json:"in,omitempty"`    // object to read (pass, discard, sum)
	Out   string `json:"out,omitempty"`   // object to write (gen, pass)
}

// s3Answer is what a stage over S3 answers.
type s3Answer struct {
	Tally   flow.Tally    `json:"tally"`   // discard and sum
	Elapsed time.Duration `json:"elapsed"` // the stage's own time, set-up of the client included
}

// PartSize is the multipart part of the uploads: minio-go buffers
// NumThreads parts of it and sends them in parallel.
const (
	partSize   = 64 << 20
	numThreads = 2
)

func viaS3(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var job s3Job
	if err := json.NewDecoder(r.Body).Decode(&job); err != nil {
		http.Error(w, "flowfn: a plain call takes a JSON job {role, bytes, in, out}: "+err.Error(), http.StatusBadRequest)
		return
	}
	ans, err := job.run(r.Context())
	if err != nil {
		http.Error(w, "flowfn: "+job.Role+" over S3: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ans.Elapsed = time.Since(start)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ans)
}

func (j s3Job) run(ctx context.Context) (s3Answer, error) {
	env := func(k string) string { return os.Getenv("BENCH_S3_" + k) }
	endpoint, bucket := env("ENDPOINT"), env("BUCKET")
	if endpoint == "" || bucket == "" {
		return s3Answer{}, fmt.Errorf("no S3 server: set $BENCH_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY and _BUCKET in the function's spec")
	}
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(env("ACCESS_KEY"), env("SECRET_KEY"), "")})
	if err != nil {
		return s3Answer{}, err
	}
	var in io.Reader
	if j.In != "" {
		obj, err := c.GetObject(ctx, bucket, j.In, minio.GetObjectOptions{})
		if err != nil {
			return s3Answer{}, fmt.Errorf("get %s: %w", j.In, err)
		}
		defer obj.Close()
		in = obj
	}
	var ans s3Answer
	switch j.Role {
	case "gen":
		err = put(ctx, c, bucket, j.Out, func(w io.Writer) error { return flow.Produce(w, j.Bytes) })
	case "pass":
		err = put(ctx, c, bucket, j.Out, func(w io.Writer) error { _, err := flow.Pass(in, w); return err })
	case "discard":
		ans.Tally, err = flow.Discard(in)
	case "sum":
		ans.Tally, err = flow.Sum(in)
	default:
		err = fmt.Errorf("unknown role %q; use gen, pass, discard or sum", j.Role)
	}
	return ans, err
}

// put uploads what produce writes as object key, a multipart upload of
// unknown length, as a stage that streams its output to S3 does.
func put(ctx context.Context, c *minio.Client, bucket, key string, produce func(io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(produce(pw)) }()
	_, err := c.PutObject(ctx, bucket, key, pr, -1, minio.PutObjectOptions{
		ContentType:           "application/octet-stream",
		PartSize:              partSize,
		NumThreads:            numThreads,
		ConcurrentStreamParts: true,
		DisableContentSha256:  true,
	})
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}
