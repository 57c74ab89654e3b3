// Command storefn is the fresh instance of `handoff bench store`: each
// invocation of a new instance times that process's first read of a small
// object, and then a second (warm) read with the same client. The body is
// a JSON job; the answer a JSON result. Three ways to read:
//
//	mount   the store as files: the node agent's FUSE mount of the
//	        function's granted buckets at $HANDOFF_STORE_DIR, the
//	        reference design's volume; no client
//	        to build, the read is open and read on the mount, served by
//	        the node agent with the connections it already holds
//	shared  minio-go built from the instance's environment
//	        (AWS_ENDPOINT_URL_S3 and the function's own credential the
//	        node agent hands out), so the read goes over loopback to the node agent, which
//	        serves it with the connections it already holds to the
//	        metadata service and to the peer holding the block
//	own     the cluster store's own client in the instance: a metadata
//	        client of the control plane (HTTP, the cluster token) and a
//	        block tier that dials the holder over peerlink (TCP + mutual
//	        TLS with a member certificate of its own), set up from scratch
//	minio   minio-go built from scratch against a MinIO server
//	raw     the floor: one loopback TCP connection to a server that
//	        answers any line with the object's bytes, no protocol
//	file    the mount's floor: the object as a file on tmpfs, read with
//	        the same open and read as mount, no FUSE
//
// The timed section starts before the client is built (credentials read
// and parsed, connections dialled, handshakes done) and ends when the
// last byte of the object is read; the process's start is not in it.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/sdk"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/metarpc"
	"github.com/handoff-dev/handoff/store/spread"
)

// Job is what one invocation reads.
type Job struct {
	Mode   string `json:"mode"` // mount, shared, own, minio or raw
	Bucket string `json:"bucket"`
	// Keys names the object to read by the node the instance runs on
	// ($HANDOFF_NODE): one held by another node, so that the read needs
	// the store's connections to a peer. Key is used when Keys has none.
	Keys map[string]string `json:"keys,omitempty"`
	Key  string            `json:"key,omitempty"`
	Size int64             `json:"size"`
}

// Answer is what it answers.
type Answer struct {
	Node  string        `json:"node"`
	PID   int           `json:"pid"` // tells an instance started from the parked process
	Key   string        `json:"key"`
	First time.Duration `json:"first_ns"` // the process's first read, set-up included
	Setup time.Duration `json:"setup_ns"` // of which building the client, before any request
	Warm  time.Duration `json:"warm_ns"`  // a second read with the same client
	// Fresh is false when this instance served a read before: its first
	// read is not in this answer.
	Fresh bool `json:"fresh"`
}

// The environment of the modes other than shared, set in the spec.
const (
	envControl = "BENCH_STORE_CONTROL" // the control plane's URL (own)
	envToken   = "BENCH_STORE_TOKEN"   // file holding the cluster token (own)
	envTLS     = "BENCH_STORE_TLS"     // CA,cert,key files of a member identity (own)
	envMinIO   = "BENCH_MINIO"         // endpoint,access,secret of MinIO (minio)
	envRaw     = "BENCH_RAW"           // host:port of the raw server (raw)
	envFile    = "BENCH_FILE"          // a file on tmpfs holding the object (file)
)

var served bool

func main() {
	sdk.ServeHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var j Job
		if err := json.NewDecoder(r.Body).Decode(&j); err != nil {
			http.Error(w, "storefn: bad job: "+err.Error(), http.StatusBadRequest)
			return
		}
		a, err := read(r.Context(), j)
		if err != nil {
			http.Error(w, "storefn: "+err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(a)
	}))
}

// reader is one client: get reads the whole object.
type reader func(ctx context.Context, bucket, key string) ([]byte, error)

func read(ctx context.Context, j Job) (Answer, error) {
	a := Answer{Node: os.Getenv("HANDOFF_NODE"), PID: os.Getpid(), Key: j.Key, Fresh: !served}
	served = true
	if k, ok := j.Keys[a.Node]; ok {
		a.Key = k
	}
	if a.Key == "" {
		return a, fmt.Errorf("no key for node %q in %v", a.Node, j.Keys)
	}
	start := time.Now()
	get, closeFn, err := open(j.Mode)
	if err != nil {
		return a, err
	}
	defer closeFn()
	a.Setup = time.Since(start)
	b, err := get(ctx, j.Bucket, a.Key)
	a.First = time.Since(start)
	if err != nil {
		return a, fmt.Errorf("%s: first read of %s/%s: %w", j.Mode, j.Bucket, a.Key, err)
	}
	if int64(len(b)) != j.Size {
		return a, fmt.Errorf("%s: first read of %s/%s gave %d bytes, want %d", j.Mode, j.Bucket, a.Key, len(b), j.Size)
	}
	start = time.Now()
	b, err = get(ctx, j.Bucket, a.Key)
	a.Warm = time.Since(start)
	if err != nil || int64(len(b)) != j.Size {
		return a, fmt.Errorf("%s: second read of %s/%s: %d bytes, %v", j.Mode, j.Bucket, a.Key, len(b), err)
	}
	return a, nil
}

// open builds the client of mode from scratch.
func open(mode string) (reader, func(), error) {
	switch mode {
	case "mount":
		return mountReader(os.Getenv("HANDOFF_STORE_DIR"))
	case "shared":
		u, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL_S3"))
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("AWS_ENDPOINT_URL_S3 %q is not the node's S3 API", os.Getenv("AWS_ENDPOINT_URL_S3"))
		}
		return s3Reader(u.Host, os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_REGION"))
	case "minio":
		f := strings.Split(os.Getenv(envMinIO), ",")
		if len(f) != 3 {
			return nil, nil, fmt.Errorf("%s is not endpoint,access,secret", envMinIO)
		}
		return s3Reader(f[0], f[1], f[2], "us-east-1")
	case "own":
		return ownReader()
	case "raw":
		return rawReader(os.Getenv(envRaw))
	case "file":
		return fileReader(os.Getenv(envFile))
	}
	return nil, nil, fmt.Errorf("unknown mode %q; use mount, shared, own, minio, raw or file", mode)
}

// fileReader reads a file on tmpfs: the floor of the mount's first
// read, the same open and read with no FUSE and no store.
func fileReader(path string) (reader, func(), error) {
	if !filepath.IsAbs(path) {
		return nil, nil, fmt.Errorf("%s %q is not a file path", envFile, path)
	}
	get := func(context.Context, string, string) ([]byte, error) { return os.ReadFile(path) }
	return get, func() {}, nil
}

// mountReader reads bucket/key under the node agent's mount of the store.
func mountReader(dir string) (reader, func(), error) {
	if !filepath.IsAbs(dir) {
		return nil, nil, fmt.Errorf("HANDOFF_STORE_DIR %q is not a mounted store: the node agent runs without its mount, or the function's spec grants no bucket (add it to store.read)", dir)
	}
	get := func(_ context.Context, bucket, key string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, bucket, key))
	}
	return get, func() {}, nil
}

// s3Reader is minio-go with a region given, so that it asks for no
// bucket location before the first read.
func s3Reader(endpoint, access, secret, region string) (reader, func(), error) {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Region: region})
	if err != nil {
		return nil, nil, err
	}
	get := func(ctx context.Context, bucket, key string) ([]byte, error) {
		obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		return io.ReadAll(obj)
	}
	return get, func() {}, nil
}

// ownReader is the store as a library in the instance, as a node agent
// builds it, with nothing shared: its own metadata client and its own
// peer link, with a member identity of its own.
func ownReader() (reader, func(), error) {
	tok, err := os.ReadFile(os.Getenv(envToken))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster token: %w", err)
	}
	f := strings.Split(os.Getenv(envTLS), ",")
	if len(f) != 3 {
		return nil, nil, fmt.Errorf("%s is not ca,cert,key", envTLS)
	}
	m, err := pki.Load(pki.Files{CA: f[0], Cert: f[1], Key: f[2]})
	if err != nil {
		return nil, nil, err
	}
	md := &metarpc.Client{BaseURL: os.Getenv(envControl) + "/v1/store/meta", Header: http.Header{},
		HTTP: &http.Client{Transport: &http.Transport{}}}
	httpx.SetToken(md.Header, strings.TrimSpace(string(tok)))
	bs, err := blocks.New(blocks.Config{Memory: 4 << 20, MaxBlock: blocks.DefaultSize})
	if err != nil {
		return nil, nil, err
	}
	tier := spread.New(spread.Config{
		Self: fmt.Sprintf("bench-own-%d", os.Getpid()), Local: bs, Members: md.Members,
		Link: &peerlink.Client{TLS: m.ClientConfig(""), Clear: true},
	})
	st, err := local.Open(local.Config{Meta: md, Blocks: tier})
	if err != nil {
		tier.Close()
		return nil, nil, err
	}
	get := func(ctx context.Context, bucket, key string) ([]byte, error) {
		obj, err := st.Get(ctx, bucket, key, nil)
		if err != nil {
			return nil, err
		}
		defer obj.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(obj.Body)
		return b.Bytes(), err
	}
	return get, func() { st.Close() }, nil
}

// rawReader reads from a server that answers every line it gets with an
// 8-byte big-endian length and that many bytes: a loopback TCP round trip
// and nothing else, over one connection dialled on the first read.
func rawReader(addr string) (reader, func(), error) {
	var c net.Conn
	get := func(ctx context.Context, _, key string) ([]byte, error) {
		if c == nil {
			var d net.Dialer
			var err error
			if c, err = d.DialContext(ctx, "tcp", addr); err != nil {
				return nil, err
			}
		}
		if _, err := fmt.Fprintf(c, "%s\n", key); err != nil {
			return nil, err
		}
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, err
		}
		b := make([]byte, binary.BigEndian.Uint64(hdr[:]))
		_, err := io.ReadFull(c, b)
		return b, err
	}
	return get, func() {
		if c != nil {
			c.Close()
		}
	}, nil
}
