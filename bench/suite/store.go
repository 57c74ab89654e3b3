package suite

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
	"github.com/handoff-dev/handoff/bench/report"
	"github.com/handoff-dev/handoff/internal/platform"
	"github.com/handoff-dev/handoff/node"
)

// StoreResult is what `handoff bench store` measures: issue 5's three
// bars, each against a baseline of the same run.
type StoreResult struct {
	Started time.Time         `json:"started"`
	Host    map[string]string `json:"host"`
	Quick   bool              `json:"quick"`
	// First is a fresh instance's first read of a small object, one
	// series per way of reaching the store.
	First []FirstSeries `json:"first"`
	// S3 is PUT and GET through a node agent's S3 API, through MinIO on
	// tmpfs and on disk, and through the ceiling server (targetCeiling),
	// series "<target>-put" and "<target>-get".
	S3 bench.Result `json:"s3"`
	// MinIOShm and MinIODisk say where the two MinIO servers keep data.
	MinIOShm  string `json:"minio_shm"`
	MinIODisk string `json:"minio_disk"`
	// Mount is sequential write and read through a storefs mount against
	// the Backend it serves.
	Mount MountResult `json:"mount"`
	// NodeMount is the same through node agent n1's own mount of the
	// cluster store against its S3 API.
	NodeMount MountResult  `json:"node_mount"`
	Bars      []report.Bar `json:"bars"`
	Notes     []string     `json:"notes"`
}

// storeSizes are the sizes and repetitions of a run.
type storeSizes struct {
	fresh  int     // fresh instances per first-access series
	small  int64   // the first-access object
	s3     []int64 // S3 object sizes
	s3Reps func(size int64) int
	mount  int64 // the mounted volume's file
	mReps  int
}

func (e Env) storeSizes() storeSizes {
	if e.Quick {
		return storeSizes{fresh: 4, small: bench.KiB, s3: []int64{bench.KiB, bench.MiB},
			s3Reps: func(int64) int { return 3 }, mount: 32 * bench.MiB, mReps: 1}
	}
	fresh := 200
	if n, err := strconv.Atoi(os.Getenv("HANDOFF_BENCH_STORE_FRESH")); err == nil && n > 0 {
		fresh = n // fewer fresh instances, for working on the first-access series
	}
	return storeSizes{fresh: fresh, small: bench.KiB, s3: []int64{bench.KiB, bench.MiB, 64 * bench.MiB, bench.GiB},
		s3Reps: func(size int64) int {
			switch {
			case size <= bench.KiB:
				return 200
			case size <= bench.MiB:
				return 50
			case size <= 64*bench.MiB:
				return 8
			}
			return 3
		},
		mount: bench.GiB, mReps: 3}
}

// Store measures issue 5's bars in one run, each beside its baseline:
//
//  1. A fresh instance's first read of a 1 KiB object held by the other
//     node agent: through its node agent's S3 API (the node agent's held
//     connections), against the same read by a fresh instance that sets
//     up the store's own client (HTTP to the metadata service, TCP and
//     mutual TLS to the holder), and against a fresh minio-go client of
//     MinIO.
//  2. PUT and GET with minio-go through a node agent's S3 API and through
//     MinIO with its data on /dev/shm and on disk, at 1 KiB to 1 GiB.
//  3. Sequential write and read of a file through a storefs mount
//     (another process reading and writing it) against Put and Get on the
//     Backend the mount serves.
func Store(ctx context.Context, e Env) (StoreResult, error) {
	res := StoreResult{Started: time.Now().UTC(), Host: bench.HostInfo(), Quick: e.Quick}
	sz := e.storeSizes()
	minioBin, err := baseline.EnsureMinIO(ctx, e.BinDir, e.Log)
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "handoff-bench-store-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	shm, err := os.MkdirTemp("/dev/shm", "handoff-bench-store-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(shm)
	mShm, err := baseline.StartMinIO(ctx, minioBin, filepath.Join(shm, "minio"))
	if err != nil {
		return res, err
	}
	defer mShm.Close()
	mDisk, err := baseline.StartMinIO(ctx, minioBin, filepath.Join(tmp, "minio"))
	if err != nil {
		return res, err
	}
	defer mDisk.Close()
	res.MinIOShm = fmt.Sprintf("%s (%s)", mShm.DataDir(), fsName(mShm.DataDir()))
	res.MinIODisk = fmt.Sprintf("%s (%s)", mDisk.DataDir(), fsName(mDisk.DataDir()))
	fmt.Fprintf(e.Log, "MinIO at %s, data in %s; at %s, data in %s\n", mShm.Endpoint(), res.MinIOShm, mDisk.Endpoint(), res.MinIODisk)

	bins := filepath.Join(tmp, "bin")
	storefn, seqfile := filepath.Join(bins, "storefn"), filepath.Join(bins, "seqfile")
	for out, pkg := range map[string]string{storefn: "./bench/suite/internal/storefn", seqfile: "./bench/suite/internal/seqfile"} {
		if err := goBuild(ctx, e.Repo, out, pkg); err != nil {
			return res, err
		}
	}

	// One platform of two node agents, each with a store share big enough
	// for the largest object twice over.
	mem := max(2*sz.s3[len(sz.s3)-1]+512*bench.MiB, 1*bench.GiB)
	p, err := platform.Start(ctx, platform.Options{Binary: e.Binary, Dir: filepath.Join(tmp, "platform"), Nodes: 2,
		Args: []string{"--store-memory", fmt.Sprintf("%dMi", mem/bench.MiB), "--park", fmt.Sprint(FirstParkBudget)}})
	if err != nil {
		return res, err
	}
	defer p.Stop()
	nodes, err := storeNodes(ctx, p)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(e.Log, "platform up at %s; S3 APIs %v\n", p.URL, nodes)

	part := storeParts()
	if part("first") {
		if res.First, err = e.measureFirst(ctx, p, nodes, mShm, storefn, shm, sz); err != nil {
			return res, fmt.Errorf("first access: %w", err)
		}
	}
	if part("s3") {
		if res.S3, err = e.measureS3(ctx, nodes["n1"], mShm, mDisk, sz); err != nil {
			return res, fmt.Errorf("S3 against MinIO: %w", err)
		}
	}
	if part("mount") {
		res.Mount = e.measureMount(ctx, tmp, seqfile, sz)
		// The node agents report their mounts with their heartbeats: ask
		// again now.
		if again, err := storeNodes(ctx, p); err == nil {
			nodes = again
		}
		res.NodeMount = e.measureNodeMount(ctx, nodes["n1"], seqfile, sz)
	}
	res.Bars = storeBars(res)
	res.Notes = storeNotes(res)
	return res, e.writeStoreReports(res)
}

// storeNode is a node agent's S3 API with a client of it.
type storeNode struct {
	ID       string
	Endpoint string
	C        *minio.Client
	// Mount is where the node agent mounts the store, or "off: why".
	Mount string
}

func (n *storeNode) String() string { return n.ID + "=" + n.Endpoint }

// storeNodes returns a client of every node agent's S3 API, by node id,
// with the credential derived from the cluster token.
func storeNodes(ctx context.Context, p *platform.Platform) (map[string]*storeNode, error) {
	st, err := p.Client.Status(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(p.Dir, "cluster.token"))
	if err != nil {
		return nil, err
	}
	secret := node.S3Secret(strings.TrimSpace(string(tok)))
	out := map[string]*storeNode{}
	for _, n := range st.Nodes {
		if n.S3 == "" {
			return nil, fmt.Errorf("node %s reports no S3 API", n.ID)
		}
		c, err := newS3Client(n.S3, node.S3AccessKey, secret)
		if err != nil {
			return nil, err
		}
		out[n.ID] = &storeNode{ID: n.ID, Endpoint: n.S3, C: c, Mount: n.StoreDir}
	}
	if out["n1"] == nil || out["n2"] == nil {
		return nil, fmt.Errorf("want node agents n1 and n2, have %v", out)
	}
	return out, nil
}

// newS3Client is the one S3 client configuration of the suite: minio-go,
// plain HTTP, signature V4, the region given (no location lookups), its
// own transport with idle connections kept.
func newS3Client(endpoint, access, secret string) (*minio.Client, error) {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		return nil, err
	}
	tr.MaxIdleConnsPerHost = 16
	return minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Region: "us-east-1", Transport: http.RoundTripper(tr)})
}

func minioClient(m *baseline.MinIO) (*minio.Client, error) {
	return newS3Client(m.Endpoint(), m.AccessKey(), m.SecretKey())
}

// storeParts reads HANDOFF_BENCH_STORE_PARTS, a comma-separated list of
// the parts to run (first, s3, mount), for working on one of them; unset:
// all. A run with parts left out has no verdict on their bars.
func storeParts() func(string) bool {
	v := os.Getenv("HANDOFF_BENCH_STORE_PARTS")
	return func(name string) bool {
		return v == "" || slices.Contains(strings.Split(v, ","), name)
	}
}
