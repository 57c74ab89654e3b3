package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/spec"
)

// The first-access series, after storefn's modes.
const (
	seriesMount  = "shared-node-mount"  // storefn mount
	seriesShared = "shared-node-client" // storefn shared
	seriesOwn    = "own-store-client"   // storefn own
	seriesMinIO1 = "fresh-minio-client" // storefn minio
	seriesRaw1   = "raw-loopback-tcp"   // storefn raw: the floor
	seriesFile1  = "local-tmpfs-file"   // storefn file: the mount's floor
)

// FirstSeries is one way for a fresh instance to reach the store, tried
// by many fresh instances.
type FirstSeries struct {
	Name string `json:"name"`
	What string `json:"what"`
	// First is the process's first read, client set-up included; Warm a
	// second read with the same client right after.
	First bench.Point `json:"first"`
	// Setup is the part of First spent building the client (credentials
	// read and parsed), before its first request.
	Setup   bench.Point     `json:"setup"`
	Warm    bench.Point     `json:"warm"`
	Samples []time.Duration `json:"samples_ns"`
	// Nodes counts the instances by the node they ran on.
	Nodes map[string]int `json:"nodes"`
}

// storeJob and storeAnswer are storefn's Job and Answer.
type storeJob struct {
	Mode   string            `json:"mode"`
	Bucket string            `json:"bucket"`
	Keys   map[string]string `json:"keys,omitempty"`
	Key    string            `json:"key,omitempty"`
	Size   int64             `json:"size"`
}

type storeAnswer struct {
	Node  string        `json:"node"`
	Key   string        `json:"key"`
	First time.Duration `json:"first_ns"`
	Setup time.Duration `json:"setup_ns"`
	Warm  time.Duration `json:"warm_ns"`
	Fresh bool          `json:"fresh"`
}

const firstBucket = "bench-first"

// measureFirst deploys storefn afresh for every sample, so that every read
// is a new process's first, the three modes in turn.
func (e Env) measureFirst(ctx context.Context, p *platform.Platform, nodes map[string]*storeNode, mn *baseline.MinIO, bin, shm string, sz storeSizes) ([]FirstSeries, error) {
	data := bytes.Repeat([]byte("handoff!"), int(sz.small/8)+1)[:sz.small]
	if err := nodes["n1"].C.MakeBucket(ctx, firstBucket, minio.MakeBucketOptions{}); err != nil {
		return nil, err
	}
	// One object held by each node agent (written through it); an
	// instance reads the one the other node holds.
	keys := map[string]string{"n1": "held-by-n2", "n2": "held-by-n1"}
	for id, n := range nodes {
		if _, err := n.C.PutObject(ctx, firstBucket, "held-by-"+id, bytes.NewReader(data), sz.small, minio.PutObjectOptions{}); err != nil {
			return nil, fmt.Errorf("put through %s: %w", id, err)
		}
	}
	mc, err := minioClient(mn)
	if err != nil {
		return nil, err
	}
	if _, err := mc.PutObject(ctx, mn.Bucket(), "first", bytes.NewReader(data), sz.small, minio.PutObjectOptions{}); err != nil {
		return nil, fmt.Errorf("put to MinIO: %w", err)
	}
	// Every node agent reads every object once, so that its connections
	// to the metadata service and to the other agent are open.
	for _, n := range nodes {
		for _, k := range keys {
			if got, err := getAll(ctx, n.C, firstBucket, k); err != nil || !bytes.Equal(got, data) {
				return nil, fmt.Errorf("warm-up read of %s through %s: %d bytes, %v", k, n.ID, len(got), err)
			}
		}
	}

	// The own client's identity: a member certificate of the cluster's
	// CA, as a function holding its own store credentials would have.
	ca, err := pki.LoadOrCreateCA(filepath.Join(p.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	tlsf, err := pki.WriteMember(filepath.Join(p.Dir, "bench-own-tls"), "bench-own", []string{"127.0.0.1", "localhost"}, ca, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	raw, err := serveRaw(data)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	shmFile := filepath.Join(shm, "first")
	if err := os.WriteFile(shmFile, data, 0o644); err != nil {
		return nil, err
	}
	series := []struct {
		FirstSeries
		job storeJob
		env map[string]string
	}{
		{FirstSeries{Name: seriesMount, What: "the file under the instance's $HANDOFF_STORE_DIR, its node agent's FUSE mount of the store narrowed to the function's granted buckets: open and read, no client to build; the node agent reads with the connections it holds"},
			storeJob{Mode: "mount", Bucket: firstBucket, Keys: keys, Size: sz.small}, nil},
		{FirstSeries{Name: seriesShared, What: "minio-go from the instance's environment to its node agent's S3 API on loopback; the node agent reads with the connections it holds"},
			storeJob{Mode: "shared", Bucket: firstBucket, Keys: keys, Size: sz.small}, nil},
		{FirstSeries{Name: seriesOwn, What: "the store's own client in the instance: member certificate loaded, HTTP to the metadata service, TCP + mutual TLS to the holder (peerlink)"},
			storeJob{Mode: "own", Bucket: firstBucket, Keys: keys, Size: sz.small},
			map[string]string{"BENCH_STORE_CONTROL": p.URL, "BENCH_STORE_TOKEN": filepath.Join(p.Dir, "cluster.token"),
				"BENCH_STORE_TLS": strings.Join([]string{tlsf.CA, tlsf.Cert, tlsf.Key}, ",")}},
		{FirstSeries{Name: seriesMinIO1, What: "minio-go built from scratch to MinIO (data on /dev/shm): TCP connect, signature V4"},
			storeJob{Mode: "minio", Bucket: mn.Bucket(), Key: "first", Size: sz.small},
			map[string]string{"BENCH_MINIO": strings.Join([]string{mn.Endpoint(), mn.AccessKey(), mn.SecretKey()}, ",")}},
		{FirstSeries{Name: seriesRaw1, What: "the floor of a fresh process's first access here: one loopback TCP connection to a server in the harness that answers a line with the bytes, no protocol, no store"},
			storeJob{Mode: "raw", Key: "first", Size: sz.small},
			map[string]string{"BENCH_RAW": raw.Addr().String()}},
		{FirstSeries{Name: seriesFile1, What: "the floor of the mount's first read: the same open and read of the object as a file on tmpfs (/dev/shm), no FUSE, no store"},
			storeJob{Mode: "file", Key: "first", Size: sz.small},
			map[string]string{"BENCH_FILE": shmFile}},
	}
	for _, n := range nodes {
		if !filepath.IsAbs(n.Mount) {
			fmt.Fprintf(e.Log, "first access: node agent %s has no mount of the store (%s): no %s series\n", n.ID, n.Mount, seriesMount)
			series = series[1:]
			break
		}
	}
	var names []string
	for _, s := range series {
		names = append(names, s.Name)
	}
	fmt.Fprintf(e.Log, "first access: %d fresh instances per series (%s), a %s object held by the other node agent\n",
		sz.fresh, strings.Join(names, ", "), bench.FormatSize(sz.small))
	warm := make([][]time.Duration, len(series))
	setup := make([][]time.Duration, len(series))
	start := time.Now()
	for i := range sz.fresh {
		for k := range series {
			s := &series[k]
			a, err := e.freshRead(ctx, p, bin, fmt.Sprintf("first-%s-%d", s.job.Mode, i), s.job, s.env)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Name, err)
			}
			s.Samples = append(s.Samples, a.First)
			warm[k] = append(warm[k], a.Warm)
			setup[k] = append(setup[k], a.Setup)
			if s.Nodes == nil {
				s.Nodes = map[string]int{}
			}
			s.Nodes[a.Node]++
		}
		if (i+1)%50 == 0 {
			fmt.Fprintf(e.Log, "  %d of %d rounds in %s\n", i+1, sz.fresh, time.Since(start).Round(time.Second))
		}
	}
	out := make([]FirstSeries, len(series))
	for k, s := range series {
		s.First = bench.Summarize(s.Name, sz.small, s.Samples)
		s.Warm = bench.Summarize(s.Name+"-warm", sz.small, warm[k])
		s.Setup = bench.Summarize(s.Name+"-setup", sz.small, setup[k])
		out[k] = s.FirstSeries
		fmt.Fprintf(e.Log, "  %-20s first p50 %s p99 %s (client set-up p50 %s); warm p50 %s; nodes %v\n", s.Name, bench.FormatDuration(s.First.P50),
			bench.FormatDuration(s.First.P99), bench.FormatDuration(s.Setup.P50), bench.FormatDuration(s.Warm.P50), s.Nodes)
	}
	return out, nil
}

// freshRead deploys bin as function name with no instance, invokes it
// once (the platform starts an instance for it) and removes it.
func (e Env) freshRead(ctx context.Context, p *platform.Platform, bin, name string, job storeJob, env map[string]string) (storeAnswer, error) {
	// Every series may read the bucket of the first-access objects, as
	// its spec says: an instance's credential and mount reach only the
	// buckets its function is granted.
	f := spec.Function{Name: name, Run: spec.Run{Command: bin, Dir: e.Repo}, Env: env,
		Store: spec.Store{Read: []string{firstBucket}}}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		return storeAnswer{}, err
	}
	if _, err := p.Client.Deploy(ctx, f); err != nil {
		return storeAnswer{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	defer p.Client.Remove(context.WithoutCancel(ctx), name)
	body, err := json.Marshal(job)
	if err != nil {
		return storeAnswer{}, err
	}
	out, err := p.Client.Invoke(ctx, name, body)
	if err != nil {
		return storeAnswer{}, fmt.Errorf("invoke %s: %w", name, err)
	}
	var a storeAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return a, fmt.Errorf("%s answered %q: %w", name, out, err)
	}
	if !a.Fresh {
		return a, fmt.Errorf("%s: the instance had served a read before", name)
	}
	return a, nil
}

func getAll(ctx context.Context, c *minio.Client, bucket, key string) ([]byte, error) {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// serveRaw answers every line on every connection with an 8-byte
// big-endian length and data: storefn's raw mode, the floor of a first
// access.
func serveRaw(data []byte) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	msg := binary.BigEndian.AppendUint64(nil, uint64(len(data)))
	msg = append(msg, data...)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := br.ReadSlice('\n'); err != nil {
						return
					}
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}
