package baseline

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
	"runtime"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/handoff-dev/handoff/bench"
)

// MinIOModule is what EnsureMinIO builds when MinIO is missing.
const MinIOModule = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

// progressEvery is how often EnsureMinIO reports a build in progress.
var progressEvery = 10 * time.Second

// LookMinIO returns the path of a minio binary in binDir, on PATH or in the
// Go bin directory ($(go env GOPATH)/bin), in that order, or ErrNotInstalled.
func LookMinIO(binDir string) (string, error) {
	if p, ok := executable(binDir, "minio"); ok {
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	if gp := goPath(); gp != "" {
		if p, ok := executable(filepath.Join(gp, "bin"), "minio"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: minio is not in %s, on PATH or in the Go bin directory; build it with `GOFLAGS=-mod=mod GOBIN=%s go install %s`",
		ErrNotInstalled, binDir, binDir, MinIOModule)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func goPath() string {
	out, err := exec.Command(goTool(), "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	gp, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator))
	return gp
}

// EnsureMinIO returns the path of a minio binary (see LookMinIO). When there
// is none it builds one from the Go module proxy into binDir, which takes
// minutes; it says so on log and prints the elapsed time every 10 seconds
// until the build ends. The go tool's own output also goes to log.
func EnsureMinIO(ctx context.Context, binDir string, log io.Writer) (string, error) {
	if p, err := LookMinIO(binDir); err == nil {
		return p, nil
	}
	if binDir == "" {
		return "", errors.New("baseline: no directory to build MinIO into")
	}
	if log == nil {
		log = io.Discard
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return "", fmt.Errorf("baseline: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("baseline: %w", err)
	}
	fmt.Fprintf(log, "building MinIO from the Go module proxy (first run only, about 3-5 minutes)...\n")
	cmd := exec.CommandContext(ctx, goTool(), "install", MinIOModule)
	// Outside any module, so that the build does not touch the caller's go.mod.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOBIN="+abs)
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("baseline: build MinIO: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("baseline: build MinIO (go install %s): %w", MinIOModule, err)
			}
			p := filepath.Join(abs, "minio")
			fmt.Fprintf(log, "built MinIO in %s: %s\n", time.Since(start).Round(time.Second), p)
			return p, nil
		case <-tick.C:
			fmt.Fprintf(log, "  still building MinIO, %s elapsed\n", time.Since(start).Round(time.Second))
		}
	}
}

// MinIO is a private single-drive MinIO server on 127.0.0.1 with generated
// credentials and one bucket.
type MinIO struct {
	endpoint  string
	access    string
	secret    string
	bucket    string
	dataDir   string
	configDir string
	p         *proc
}

// StartMinIO runs the minio at bin (see EnsureMinIO) serving dataDir on a
// free port of 127.0.0.1, with the console on another, waits until
// /minio/health/live answers and creates a bucket.
func StartMinIO(ctx context.Context, bin, dataDir string) (*MinIO, error) {
	var err error
	for range 3 { // a free port can be taken between probe and bind
		var m *MinIO
		if m, err = startMinIO(ctx, bin, dataDir); err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func startMinIO(ctx context.Context, bin, dataDir string) (*MinIO, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("baseline: minio: %w", err)
	}
	console, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("baseline: minio: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("baseline: minio: %w", err)
	}
	configDir, err := os.MkdirTemp("", "handoff-minio-")
	if err != nil {
		return nil, fmt.Errorf("baseline: minio: %w", err)
	}
	m := &MinIO{
		endpoint:  addr(port),
		access:    "handoff" + randomHex(6),
		secret:    randomHex(20),
		bucket:    "handoff-bench",
		dataDir:   dataDir,
		configDir: configDir,
	}
	m.p, err = startProc(bin, []string{
		"server", dataDir,
		"--address", m.endpoint,
		"--console-address", addr(console),
		"--certs-dir", filepath.Join(configDir, "certs"),
		"--quiet",
	}, []string{
		"MINIO_ROOT_USER=" + m.access,
		"MINIO_ROOT_PASSWORD=" + m.secret,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME=" + configDir,
	})
	if err != nil {
		os.RemoveAll(configDir)
		return nil, fmt.Errorf("baseline: start minio: %w", err)
	}
	health := "http://" + m.endpoint + "/minio/health/live"
	err = m.p.waitReady(ctx, "minio", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", health, resp.Status)
		}
		return nil
	})
	if err == nil {
		err = m.makeBucket(ctx)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return m, nil
}

func (m *MinIO) makeBucket(ctx context.Context) error {
	c, err := m.client()
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, m.bucket, minio.MakeBucketOptions{}); err != nil {
		if ok, _ := c.BucketExists(ctx, m.bucket); !ok {
			return fmt.Errorf("minio: create bucket %s: %w", m.bucket, err)
		}
	}
	return nil
}

func (m *MinIO) client() (*minio.Client, error) {
	c, err := minio.New(m.endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.access, m.secret, ""),
		Secure: false,
	})
	if err != nil {
		return nil, fmt.Errorf("minio client: %w", err)
	}
	return c, nil
}

// Endpoint returns the S3 API's host:port.
func (m *MinIO) Endpoint() string { return m.endpoint }

// AccessKey returns the root user's access key.
func (m *MinIO) AccessKey() string { return m.access }

// SecretKey returns the root user's secret key.
func (m *MinIO) SecretKey() string { return m.secret }

// Bucket returns the name of the bucket StartMinIO created.
func (m *MinIO) Bucket() string { return m.bucket }

// DataDir returns the directory the server stores objects in.
func (m *MinIO) DataDir() string { return m.dataDir }

// Close kills the server, waits for it to exit and removes its config
// directory. The data directory is the caller's.
func (m *MinIO) Close() error {
	m.p.stop()
	return os.RemoveAll(m.configDir)
}

// MinIOTransfer is a [bench.Transfer]: the producer PUTs the payload as a
// fresh object and the consumer GETs it into a buffer of the object's size,
// with minio-go's defaults (signature V4 over plain HTTP, multipart above
// 16 MiB). The object is removed in Cleanup, outside the timed section.
type MinIOTransfer struct {
	name   string
	c      *minio.Client
	bucket string
	n      uint64
	last   string // object to remove in Cleanup, "" when none
}

// NewTransfer returns a MinIOTransfer on m named "minio-shm" when its data
// directory is on tmpfs and "minio-disk" otherwise.
func (m *MinIO) NewTransfer() (*MinIOTransfer, error) {
	c, err := m.client()
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	name := "minio-disk"
	if onTmpfs(m.dataDir) {
		name = "minio-shm"
	}
	return &MinIOTransfer{name: name, c: c, bucket: m.bucket}, nil
}

// Name returns "minio-shm" or "minio-disk".
func (t *MinIOTransfer) Name() string { return t.name }

// Transfer PUTs payload as a fresh object, then GETs it.
func (t *MinIOTransfer) Transfer(ctx context.Context, payload []byte) ([]byte, error) {
	t.n++
	key := fmt.Sprintf("handoff-bench/%d", t.n)
	_, err := t.c.PutObject(ctx, t.bucket, key, bytes.NewReader(payload), int64(len(payload)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return nil, fmt.Errorf("baseline: minio PUT %d bytes: %w", len(payload), err)
	}
	t.last = key
	obj, err := t.c.GetObject(ctx, t.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("baseline: minio GET %d bytes: %w", len(payload), err)
	}
	defer obj.Close()
	// A consumer that knows the size reads into one buffer; any extra
	// byte is an error the caller's verification must see.
	buf := make([]byte, len(payload)+1)
	n, err := io.ReadFull(obj, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("baseline: minio GET %d bytes: %w", len(payload), err)
	}
	return buf[:n], nil
}

// Cleanup removes the object of the last Transfer.
func (t *MinIOTransfer) Cleanup(ctx context.Context) error {
	if t.last == "" {
		return nil
	}
	if err := t.c.RemoveObject(ctx, t.bucket, t.last, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("baseline: minio remove %s: %w", t.last, err)
	}
	t.last = ""
	return nil
}

// Close removes a leftover object, if any.
func (t *MinIOTransfer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return t.Cleanup(ctx)
}

var (
	_ bench.Transfer = (*MinIOTransfer)(nil)
	_ bench.Cleaner  = (*MinIOTransfer)(nil)
)
