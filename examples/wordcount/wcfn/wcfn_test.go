package wcfn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/examples/wordcount/wc"
	"github.com/handoff-dev/handoff/sdk"
)

// startAgent serves a local API on a Unix socket that runs the three
// functions in process (through the SDK's HandlerFunc), and points
// $HANDOFF_API at it.
func startAgent(t *testing.T) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wcfn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fns := map[string]http.Handler{
		GenFunction:   sdk.HandlerFunc(GenHandler),
		CountFunction: sdk.HandlerFunc(CountHandler),
		MergeFunction: sdk.HandlerFunc(MergeHandler),
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := fns[strings.TrimPrefix(r.URL.Path, "/fn/")]
		if h == nil {
			http.Error(w, "no such function", http.StatusNotFound)
			return
		}
		r2 := r.Clone(sdk.WithRequestID(r.Context(), r.Header.Get(sdk.HeaderRequestID)))
		r2.URL.Path = "/"
		h.ServeHTTP(w, r2)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("HANDOFF_API", sock)
}

func invokeJSON(t *testing.T, fn string, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sdk.Invoke(context.Background(), fn, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(res, out); err != nil {
		t.Fatalf("%s answered %.200q: %v", fn, res, err)
	}
}

// expected counts the corpus directly.
func expected(seed int64, chunks, size int) (wc.Summary, int64) {
	total := wc.Counts{}
	var words int64
	for i := range chunks {
		b, w := wc.GenerateChunk(seed, i, size)
		total.Merge(wc.Count(b))
		words += w
	}
	return wc.Summarize(total, wc.TopN), words
}

func TestPipelineHandoff(t *testing.T) {
	startAgent(t)
	const chunks, size, seed = 4, 1 << 20, 5
	var merge wc.MergeRequest
	var words int64
	for i := range chunks {
		var res wc.GenResult
		invokeJSON(t, GenFunction, wc.GenRequest{Run: "t", Chunk: i, Bytes: size, Seed: seed, Via: wc.ViaHandoff}, &res)
		if res.Chunk != i || res.Bytes != size || res.Via != wc.ViaHandoff || res.CountsKey != "" || len(res.Counts) == 0 {
			t.Fatalf("chunk %d: result %+v", i, res)
		}
		c, err := wc.DecodeCounts(res.Counts)
		if err != nil {
			t.Fatal(err)
		}
		if c.Total() != res.Words {
			t.Errorf("chunk %d: gen made %d words, count found %d", i, res.Words, c.Total())
		}
		words += res.Words
		merge.Counts = append(merge.Counts, res.Counts)
	}
	var got wc.Summary
	invokeJSON(t, MergeFunction, merge, &got)
	want, wantWords := expected(seed, chunks, size)
	if words != wantWords || got.Words != words || !reflect.DeepEqual(got, want) {
		t.Errorf("merged %+v (gens: %d words), want %+v (%d words)", got, words, want, wantWords)
	}
}

func TestBadInputs(t *testing.T) {
	startAgent(t)
	for _, tc := range []struct{ fn, in, msg string }{
		{GenFunction, `nope`, "bad input"},
		{GenFunction, `{"bytes":10,"via":"carrier pigeon"}`, `via="carrier pigeon"`},
		{GenFunction, `{"bytes":10,"via":"s3","run":"r"}`, `"s3" is missing`},
		{CountFunction, `{"s3":`, "prefix text with a space"},
		{CountFunction, `{"s3":{"endpoint":"x:1","bucket":"b"}}`, `"key" is empty`},
		{MergeFunction, `{}`, "no counts and no keys"},
		{MergeFunction, `{"counts":[[1]]}`, "counts[0]"},
		{MergeFunction, `{"keys":["k"]}`, `"s3" is missing`},
	} {
		_, err := sdk.Invoke(context.Background(), tc.fn, []byte(tc.in))
		var e *sdk.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s %s: err %v, want a 400 saying %q", tc.fn, tc.in, err, tc.msg)
		}
	}
	// Text that starts with a space is counted even if a '{' follows.
	out, err := sdk.Invoke(context.Background(), CountFunction, []byte(` {"s3" x`))
	if err != nil || string(out) != `{"x":1,"{\"s3\"":1}` {
		t.Errorf("got %s %v", out, err)
	}
}

func TestDefaultCountsKey(t *testing.T) {
	for in, want := range map[string]string{"r/chunks/3": "r/counts/3", "a/chunks/b/chunks/1": "a/chunks/b/counts/1", "x": "x.counts"} {
		if got := defaultCountsKey(in); got != want {
			t.Errorf("defaultCountsKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// findMinio returns a MinIO server binary: $MINIO, the repository's
// bin/minio (make deps-bench builds it) or minio in PATH.
func findMinio() string {
	if p := os.Getenv("MINIO"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../../../bin/minio"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath("minio")
	return p
}

// startMinio runs a real MinIO server on a free port for the test.
func startMinio(t *testing.T) wc.S3 {
	t.Helper()
	bin := findMinio()
	if bin == "" {
		t.Skip("no MinIO binary: run `make deps-bench` (builds bin/minio) or set $MINIO")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := wc.S3{Endpoint: addr, AccessKey: "wcfn-test", SecretKey: "wcfn-test-secret", Bucket: "wordcount"}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:0", t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+cfg.AccessKey, "MINIO_ROOT_PASSWORD="+cfg.SecretKey, "MINIO_BROWSER=off")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cfg
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("MinIO at %s not ready after 60s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPipelineS3(t *testing.T) {
	s3 := startMinio(t)
	startAgent(t)
	const chunks, size, seed = 3, 20 << 20, 11 // 20 MiB: a multipart upload
	merge := wc.MergeRequest{S3: &s3}
	var words int64
	for i := range chunks {
		var res wc.GenResult
		invokeJSON(t, GenFunction, wc.GenRequest{Run: "run-" + strconv.Itoa(seed), Chunk: i, Bytes: size, Seed: seed, Via: wc.ViaS3, S3: &s3}, &res)
		if want := wc.CountsKey("run-11", i); res.CountsKey != want || res.Counts != nil || res.Via != wc.ViaS3 {
			t.Fatalf("chunk %d: result %+v, want countsKey %q", i, res, want)
		}
		words += res.Words
		merge.Keys = append(merge.Keys, res.CountsKey)
	}
	var got wc.Summary
	invokeJSON(t, MergeFunction, merge, &got)
	want, wantWords := expected(seed, chunks, size)
	if words != wantWords || !reflect.DeepEqual(got, want) {
		t.Errorf("merged %+v (gens: %d words), want %+v (%d words)", got, words, want, wantWords)
	}
	fmt.Fprintf(os.Stderr, "s3 pipeline: %d words, top %v\n", got.Words, got.Top[:3])
}
