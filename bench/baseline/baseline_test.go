package baseline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"

	"github.com/handoff-dev/handoff/bench"
)

// installEnv, when set, lets tests install Redis and build MinIO.
const installEnv = "HANDOFF_BENCH_INSTALL"

// testSizes go up to 64 MiB: enough to cross minio-go's multipart threshold
// and Redis's default 512 MB bulk limit stays far away.
var testSizes = []int64{bench.KiB, 64 * bench.KiB, bench.MiB, 16 * bench.MiB, 64 * bench.MiB}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func redisBin(t *testing.T) string {
	t.Helper()
	if p, err := LookRedis(); err == nil {
		return p
	}
	if os.Getenv(installEnv) == "" {
		t.Skipf("redis-server is not installed: install it with `apt-get install redis-server` (or `make deps`), or set %s=1 to let the test install it", installEnv)
	}
	p, err := EnsureRedis(context.Background(), logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// repoBin is the repository's bin/ directory, where MinIO is cached.
func repoBin(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func minioBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("MinIO is heavy: runs without -short")
	}
	if p, err := LookMinIO(repoBin(t)); err == nil {
		return p
	}
	if os.Getenv(installEnv) == "" {
		t.Skipf("minio is not built: run `make deps-bench`, or set %s=1 to let the test build it into bin/ (3-5 minutes)", installEnv)
	}
	p, err := EnsureMinIO(context.Background(), repoBin(t), logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, tr bench.Transfer) bench.Result {
	t.Helper()
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := bench.RunTransfers(ctx, bench.Options{
		Sizes: testSizes, MinIters: 2, MaxIters: 20, Budget: 200 * time.Millisecond, Progress: &progress,
	}, []bench.Transfer{tr})
	t.Logf("\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != len(testSizes) {
		t.Fatalf("got %d points, want %d", len(res.Points), len(testSizes))
	}
	return res
}

func TestRedisTransfer(t *testing.T) {
	bin := redisBin(t)
	ctx := context.Background()
	r, err := StartRedis(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Errorf("Addr %q is not on loopback", r.Addr())
	}
	tr := r.NewTransfer()
	run(t, tr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("after the run DBSIZE = %d, %v; want 0 (keys deleted)", n, err)
	}
	// A value above 512 MB needs proto-max-bulk-len; check it was applied.
	if v, err := c.ConfigGet(ctx, "proto-max-bulk-len").Result(); err != nil || v["proto-max-bulk-len"] != "2147483648" {
		t.Errorf("proto-max-bulk-len = %v, %v", v, err)
	}
}

func TestMinIOTransfer(t *testing.T) {
	bin := minioBin(t)
	ctx := context.Background()
	data := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "handoff-minio-test-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		data = d
	}
	m, err := StartMinIO(ctx, bin, data)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.HasPrefix(m.Endpoint(), "127.0.0.1:") || m.AccessKey() == "" || m.SecretKey() == "" || m.Bucket() == "" {
		t.Errorf("incomplete server description: %q %q %q", m.Endpoint(), m.AccessKey(), m.Bucket())
	}
	tr, err := m.NewTransfer()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(data, "/dev/shm") && tr.Name() != "minio-shm" {
		t.Errorf("name %q for a tmpfs data dir, want minio-shm", tr.Name())
	}
	run(t, tr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := m.client()
	if err != nil {
		t.Fatal(err)
	}
	for obj := range c.ListObjects(ctx, m.Bucket(), minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("object left behind: %s (%v)", obj.Key, obj.Err)
	}
}

func TestStartReportsEarlyExit(t *testing.T) {
	_, err := StartRedis(context.Background(), "/bin/false", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("err = %v, want an early-exit error", err)
	}
}

func TestLookMinIOMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOPATH", t.TempDir())
	// goPath asks the go tool, which is off PATH now; LookMinIO must still
	// answer, with ErrNotInstalled and the command that builds it.
	_, err := LookMinIO(t.TempDir())
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("err = %v, want ErrNotInstalled naming the build command", err)
	}
}

// TestEnsureMinIOBuilds runs EnsureMinIO against a stand-in go tool that
// "builds" a minio in a moment, to check the command, the environment and
// the progress lines without the real minutes-long build.
func TestEnsureMinIOBuilds(t *testing.T) {
	tools, bin := t.TempDir(), filepath.Join(t.TempDir(), "bin")
	script := `#!/bin/sh
case "$1" in
env) echo "$FAKE_GOPATH" ;;
install)
	echo "$*" > "$GOBIN/args"
	echo "$GOFLAGS" > "$GOBIN/flags"
	echo "go: downloading something"
	sleep 0.3
	printf '#!/bin/sh\n' > "$GOBIN/minio"
	chmod +x "$GOBIN/minio" ;;
esac
`
	if err := os.WriteFile(filepath.Join(tools, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", tools+":/bin:/usr/bin")
	t.Setenv("FAKE_GOPATH", t.TempDir())
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 50 * time.Millisecond

	var log strings.Builder
	p, err := EnsureMinIO(context.Background(), bin, &log)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(bin, "minio") {
		t.Errorf("path %q, want %q", p, filepath.Join(bin, "minio"))
	}
	for _, want := range []string{"building MinIO from the Go module proxy", "still building MinIO", "go: downloading", "built MinIO in"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	args, _ := os.ReadFile(filepath.Join(bin, "args"))
	flags, _ := os.ReadFile(filepath.Join(bin, "flags"))
	if strings.TrimSpace(string(args)) != "install "+MinIOModule || strings.TrimSpace(string(flags)) != "-mod=mod" {
		t.Errorf("ran go %s with GOFLAGS=%s", args, flags)
	}
	// Now cached: no second build.
	log.Reset()
	if _, err := EnsureMinIO(context.Background(), bin, &log); err != nil || log.Len() != 0 {
		t.Errorf("second call: err %v, log %q; want the cached binary silently", err, log.String())
	}
}
