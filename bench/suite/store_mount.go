package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/seqio"
	"github.com/handoff-dev/handoff/store"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/storefs"
)

// MountResult compares sequential I/O through a storefs mount with Put
// and Get on the Backend it serves.
type MountResult struct {
	// Skipped, if set, says why the mount was not measured (no FUSE);
	// Failed, what went wrong if it failed or hung (the other parts of
	// the run are reported all the same).
	Skipped string `json:"skipped,omitempty"`
	Failed  string `json:"failed,omitempty"`
	Bytes   int64  `json:"bytes"`
	// Elapsed per repetition: Direct* are Put and Get on the Backend in
	// the serving process; Mount* are a seqfile process writing and
	// reading the file through the mount in 1 MiB calls, page cache
	// dropped before the read.
	DirectWrite []time.Duration `json:"direct_write_ns"`
	MountWrite  []time.Duration `json:"mount_write_ns"`
	DirectRead  []time.Duration `json:"direct_read_ns"`
	MountRead   []time.Duration `json:"mount_read_ns"`
}

// Throughput of a series: bytes over its median time.
func (m MountResult) Throughput(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	return float64(m.Bytes) / median(ds).Seconds()
}

const mountBucket = "vol"

// measureMount mounts a store/local Backend of its own (metadata in a
// database in tmp, blocks in memory) with storefs in this process, as a
// node agent serves its mount, and has seqfile, another process, write and
// read one file through it; the direct series Put and Get the same bytes
// on the Backend. Write, then read, the four series in turn per
// repetition.
func (e Env) measureMount(ctx context.Context, tmp, seqfile string, sz storeSizes) MountResult {
	res, err := e.mountSeries(ctx, tmp, seqfile, sz)
	if err != nil {
		res.Failed = err.Error()
		fmt.Fprintf(e.Log, "mounted volume: failed: %v\n", err)
	}
	return res
}

// seqfileTimeout bounds one write or read through the mount: a mount that
// hangs fails the series rather than the run.
func seqfileTimeout(n int64) time.Duration {
	return max(2*time.Minute, time.Duration(n/(10*bench.MiB))*time.Second)
}

func (e Env) mountSeries(ctx context.Context, tmp, seqfile string, sz storeSizes) (MountResult, error) {
	res := MountResult{Bytes: sz.mount}
	if err := storefs.Available(); err != nil {
		res.Skipped = err.Error()
		fmt.Fprintf(e.Log, "mounted volume: skipped: %v\n", err)
		return res, nil
	}
	spill := filepath.Join(tmp, "vol-spill")
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return res, err
	}
	st, err := local.Open(local.Config{Dir: filepath.Join(tmp, "vol-meta"), Memory: 2*sz.mount + 256*bench.MiB, SpillDir: spill})
	if err != nil {
		return res, err
	}
	defer st.Close()
	dir := filepath.Join(tmp, "vol")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	srv, err := storefs.Mount(dir, st, storefs.Options{})
	if err != nil {
		return res, err
	}
	defer func() {
		done := make(chan struct{})
		go func() { srv.Unmount(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			// A request the server never answers holds the unmount:
			// detach the mount so nothing is left behind.
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}()
	if err := st.CreateBucket(ctx, mountBucket); err != nil {
		return res, err
	}
	want := seqio.Sum(sz.mount)
	path := filepath.Join(dir, mountBucket, "mounted")
	fmt.Fprintf(e.Log, "mounted volume at %s: %s written and read %d times through the mount and through the Backend\n", dir, bench.FormatSize(sz.mount), sz.mReps)
	for range sz.mReps {
		start := time.Now()
		if _, err := st.Put(ctx, mountBucket, "direct", seqio.NewReader(sz.mount), sz.mount, store.PutOptions{}); err != nil {
			return res, fmt.Errorf("direct Put: %w", err)
		}
		res.DirectWrite = append(res.DirectWrite, time.Since(start))

		w, err := runSeqfile(ctx, seqfileTimeout(sz.mount), seqfile, "write", path, fmt.Sprint(sz.mount))
		if err != nil {
			return res, err
		}
		res.MountWrite = append(res.MountWrite, w.Elapsed)

		start = time.Now()
		obj, err := st.Get(ctx, mountBucket, "direct", nil)
		if err != nil {
			return res, fmt.Errorf("direct Get: %w", err)
		}
		r, err := seqio.Read(obj.Body)
		obj.Body.Close()
		el := time.Since(start)
		if err != nil || r.Bytes != sz.mount || r.CRC != want {
			return res, fmt.Errorf("direct Get: %d bytes, CRC %08x (want %08x), %v", r.Bytes, r.CRC, want, err)
		}
		res.DirectRead = append(res.DirectRead, el)

		mr, err := runSeqfile(ctx, seqfileTimeout(sz.mount), seqfile, "read", path)
		if err != nil {
			return res, err
		}
		if mr.Bytes != sz.mount || mr.CRC != want {
			return res, fmt.Errorf("read through the mount: %d bytes, CRC %08x (want %08x)", mr.Bytes, mr.CRC, want)
		}
		res.MountRead = append(res.MountRead, mr.Elapsed)
		for _, k := range []string{"direct", "mounted"} {
			if err := st.Delete(ctx, mountBucket, k); err != nil {
				return res, err
			}
		}
		fmt.Fprintf(e.Log, "  write: direct %s, mount %s; read: direct %s, mount %s\n",
			bench.FormatThroughput(float64(sz.mount)/res.DirectWrite[len(res.DirectWrite)-1].Seconds()), bench.FormatThroughput(w.Throughput()),
			bench.FormatThroughput(float64(sz.mount)/el.Seconds()), bench.FormatThroughput(mr.Throughput()))
	}
	return res, nil
}

func runSeqfile(ctx context.Context, timeout time.Duration, bin string, args ...string) (seqio.Tally, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return seqio.Tally{}, fmt.Errorf("seqfile %v did not finish within %s (the mount stopped answering?): %w: %s", args, timeout, err, errs.String())
		}
		return seqio.Tally{}, fmt.Errorf("seqfile %v: %w: %s", args, err, errs.String())
	}
	var t seqio.Tally
	if err := json.Unmarshal(out.Bytes(), &t); err != nil {
		return t, fmt.Errorf("seqfile %v printed %q: %w", args, out.String(), err)
	}
	return t, nil
}

// measureNodeMount has seqfile write and read one file through node agent
// n's own mount of the cluster store (what instances get as
// HANDOFF_STORE_DIR), against a PUT and a GET of the same bytes through
// n's S3 API on loopback, which the mount is held to; the four in turn
// per repetition. Direct* are the S3 API here.
func (e Env) measureNodeMount(ctx context.Context, n *storeNode, seqfile string, sz storeSizes) MountResult {
	res, err := e.nodeMountSeries(ctx, n, seqfile, sz)
	if err != nil {
		res.Failed = err.Error()
		fmt.Fprintf(e.Log, "node agent's mount: failed: %v\n", err)
	}
	return res
}

func (e Env) nodeMountSeries(ctx context.Context, n *storeNode, seqfile string, sz storeSizes) (MountResult, error) {
	res := MountResult{Bytes: sz.mount}
	if n.Mount == "" || strings.HasPrefix(n.Mount, "off") {
		res.Skipped = fmt.Sprintf("node agent %s has no store mount (%q)", n.ID, n.Mount)
		fmt.Fprintf(e.Log, "node agent's mount: skipped: %s\n", res.Skipped)
		return res, nil
	}
	if err := n.C.MakeBucket(ctx, mountBucket, minio.MakeBucketOptions{}); err != nil {
		return res, err
	}
	data := make([]byte, sz.mount)
	if _, err := io.ReadFull(seqio.NewReader(sz.mount), data); err != nil {
		return res, err
	}
	want := seqio.Sum(sz.mount)
	path := filepath.Join(n.Mount, mountBucket, "mounted")
	fmt.Fprintf(e.Log, "node agent %s's mount at %s: %s written and read %d times through it and through its S3 API\n", n.ID, n.Mount, bench.FormatSize(sz.mount), sz.mReps)
	for range sz.mReps {
		start := time.Now()
		if _, err := n.C.PutObject(ctx, mountBucket, "direct", bytes.NewReader(data), sz.mount, s3PutOptions); err != nil {
			return res, fmt.Errorf("S3 PUT: %w", err)
		}
		res.DirectWrite = append(res.DirectWrite, time.Since(start))

		w, err := runSeqfile(ctx, seqfileTimeout(sz.mount), seqfile, "write", path, fmt.Sprint(sz.mount))
		if err != nil {
			return res, err
		}
		res.MountWrite = append(res.MountWrite, w.Elapsed)

		start = time.Now()
		obj, err := n.C.GetObject(ctx, mountBucket, "direct", minio.GetObjectOptions{})
		if err != nil {
			return res, fmt.Errorf("S3 GET: %w", err)
		}
		r, err := seqio.Read(obj)
		obj.Close()
		el := time.Since(start)
		if err != nil || r.Bytes != sz.mount || r.CRC != want {
			return res, fmt.Errorf("S3 GET: %d bytes, CRC %08x (want %08x), %v", r.Bytes, r.CRC, want, err)
		}
		res.DirectRead = append(res.DirectRead, el)

		mr, err := runSeqfile(ctx, seqfileTimeout(sz.mount), seqfile, "read", path)
		if err != nil {
			return res, err
		}
		if mr.Bytes != sz.mount || mr.CRC != want {
			return res, fmt.Errorf("read through the mount: %d bytes, CRC %08x (want %08x)", mr.Bytes, mr.CRC, want)
		}
		res.MountRead = append(res.MountRead, mr.Elapsed)
		for _, k := range []string{"direct", "mounted"} {
			if err := n.C.RemoveObject(ctx, mountBucket, k, minio.RemoveObjectOptions{}); err != nil {
				return res, err
			}
		}
		fmt.Fprintf(e.Log, "  write: S3 %s, mount %s; read: S3 %s, mount %s\n",
			bench.FormatThroughput(float64(sz.mount)/res.DirectWrite[len(res.DirectWrite)-1].Seconds()), bench.FormatThroughput(w.Throughput()),
			bench.FormatThroughput(float64(sz.mount)/el.Seconds()), bench.FormatThroughput(mr.Throughput()))
	}
	return res, nil
}
