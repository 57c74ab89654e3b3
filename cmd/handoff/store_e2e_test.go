package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/node"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Clients returns an S3 client of each node's API, by node id, with the
// credential every member derives from the cluster token. Requests of a
// client made with replicas > 0 carry X-Handoff-Replicas.
func s3Clients(t *testing.T, p *platform.Platform, dir string, replicas int) map[string]*minio.Client {
	t.Helper()
	st, err := p.Client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "cluster.token"))
	if err != nil {
		t.Fatal(err)
	}
	secret := node.S3Secret(strings.TrimSpace(string(token)))
	out := map[string]*minio.Client{}
	for _, n := range st.Nodes {
		if n.S3 == "" {
			t.Fatalf("node %s reports no S3 API", n.ID)
		}
		opts := &minio.Options{Creds: credentials.NewStaticV4(node.S3AccessKey, secret, "")}
		if replicas > 0 {
			opts.Transport = replicasHeader{http.DefaultTransport, replicas}
		}
		c, err := minio.New(n.S3, opts)
		if err != nil {
			t.Fatal(err)
		}
		out[n.ID] = c
	}
	return out
}

// replicasHeader adds X-Handoff-Replicas to every request: minio-go would
// turn it into user metadata if given as such.
type replicasHeader struct {
	rt http.RoundTripper
	n  int
}

func (r replicasHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Handoff-Replicas", fmt.Sprint(r.n))
	return r.rt.RoundTrip(req)
}

func getObject(c *minio.Client, bucket, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// TestNodeServesS3 uses the node agents' S3-compatible APIs with a real S3
// client: they serve one store, so an object written through n1 is read
// through n2, multipart uploads included; a wrong secret is refused; and
// instances are told where their node's API is.
func TestNodeServesS3(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	deploy(t, p.Client, testfnSpec(t, "envfn", nil))
	cs := s3Clients(t, p, dir, 0)
	n1, n2 := cs["n1"], cs["n2"]
	ctx := context.Background()
	if err := n1.MakeBucket(ctx, "data", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("n1: make bucket: %v", err)
	}
	err := n2.MakeBucket(ctx, "data", minio.MakeBucketOptions{})
	if code := minio.ToErrorResponse(err).Code; code != "BucketAlreadyOwnedByYou" {
		t.Fatalf("n2 makes the bucket n1 made: %v; want BucketAlreadyOwnedByYou (one store)", err)
	}
	payload := filler(3 << 20)
	if _, err := n1.PutObject(ctx, "data", "a/b.txt", bytes.NewReader(payload), int64(len(payload)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("n1: put: %v", err)
	}
	for id, c := range cs {
		got, err := getObject(c, "data", "a/b.txt")
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("node %s: get of the object put through n1 gave %d bytes, err %v", id, len(got), err)
		}
	}
	// A multipart upload through n2, in 5 MiB parts, read through n1.
	big := filler(11 << 20)
	if _, err := n2.PutObject(ctx, "data", "big", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{PartSize: 5 << 20}); err != nil {
		t.Fatalf("n2: multipart put: %v", err)
	}
	got, err := getObject(n1, "data", "big")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("n1: get of the multipart object put through n2 gave %d bytes, err %v", len(got), err)
	}
	// Listing and deleting through either node see the same objects.
	var keys []string
	for o := range n2.ListObjects(ctx, "data", minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "a/b.txt,big" {
		t.Fatalf("n2 lists %v", keys)
	}
	if err := n2.RemoveObject(ctx, "data", "a/b.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.StatObject(ctx, "data", "a/b.txt", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("n1 after n2 deleted the object: %v", err)
	}
	st, _ := p.Client.Status(ctx)
	for _, n := range st.Nodes {
		bad, _ := minio.New(n.S3, &minio.Options{Creds: credentials.NewStaticV4(node.S3AccessKey, "wrong-secret", "")})
		if _, err := bad.ListBuckets(ctx); err == nil {
			t.Fatalf("node %s: a wrong secret was accepted", n.ID)
		}
	}
	// An instance finds the API of its own node in its environment.
	out := invoke(t, p.Client, "envfn", "env AWS_ENDPOINT_URL_S3")
	found := false
	for _, n := range st.Nodes {
		found = found || out == "http://"+n.S3
	}
	if !found {
		t.Fatalf("an instance sees AWS_ENDPOINT_URL_S3=%q; want one of the nodes' S3 APIs", out)
	}
}

// TestStoreReplicaSurvivesLostNodeAgent writes two objects through n1, one
// with two replicas, kills n1's agent, and reads both through n2: the
// replicated one whole, the other with an error that names the lost node,
// never with wrong bytes. The restarted n1 reads the replicated object
// from n2.
func TestStoreReplicaSurvivesLostNodeAgent(t *testing.T) {
	dir := t.TempDir()
	p := startPlatform(t, dir)
	cs := s3Clients(t, p, dir, 0)
	reps := s3Clients(t, p, dir, 2)
	ctx := context.Background()
	if err := cs["n1"].MakeBucket(ctx, "data", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	kept, single := filler(2<<20+100), filler(1<<20)
	if _, err := reps["n1"].PutObject(ctx, "data", "kept", bytes.NewReader(kept), int64(len(kept)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put with 2 replicas: %v", err)
	}
	if _, err := cs["n1"].PutObject(ctx, "data", "single", bytes.NewReader(single), int64(len(single)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := getObject(cs["n2"], "data", "single"); err != nil || !bytes.Equal(got, single) {
		t.Fatalf("n2 reads the unreplicated object before the loss: %d bytes, %v", len(got), err)
	}

	agent := "node --id n1 --dir " + filepath.Join(dir, "nodes", "n1")
	out, err := exec.Command("pgrep", "-f", agent).Output()
	if err != nil {
		t.Fatalf("finding node agent n1: %v", err)
	}
	var pid int
	fmt.Sscan(string(out), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	got, err := getObject(cs["n2"], "data", "kept")
	if err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("n2 reads the replicated object after n1 was killed: %d bytes, %v", len(got), err)
	}
	// While n1 is down the unreplicated object is unreachable (503); once
	// its agent is back under a new boot, lost (its blocks died with the
	// old one). Either way the error says so and no byte is returned.
	checkFor(t, 20*time.Second, func() error {
		got, err := getObject(cs["n2"], "data", "single")
		if err == nil {
			return fmt.Errorf("the unreplicated object of the killed agent read as %d bytes", len(got))
		}
		e := minio.ToErrorResponse(err)
		if len(got) != 0 || !strings.Contains(e.Message, "node n1") {
			return fmt.Errorf("unclear error after the loss (%d bytes): %v", len(got), err)
		}
		if !strings.Contains(e.Message, "lost") {
			return fmt.Errorf("not yet reported lost: %s: %s", e.Code, e.Message)
		}
		t.Logf("the unreplicated object reads as %s: %s", e.Code, e.Message)
		return nil
	})
	// The restarted agent serves the same store again.
	cs = s3Clients(t, p, dir, 0)
	checkFor(t, 10*time.Second, func() error {
		got, err := getObject(cs["n1"], "data", "kept")
		if err != nil {
			return err
		}
		if !bytes.Equal(got, kept) {
			return errors.New("the restarted n1 read wrong bytes of the replicated object")
		}
		return nil
	})
}
