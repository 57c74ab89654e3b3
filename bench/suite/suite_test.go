package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
)

// These run `handoff bench` in quick mode: a smoke test that the harness
// works end to end (platform, baselines, reports), not a measurement.

var handoffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "handoff-suite-")
	if err != nil {
		panic(err)
	}
	handoffBin = filepath.Join(dir, "handoff")
	if out, err := exec.Command("go", "build", "-o", handoffBin, "../../cmd/handoff").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build handoff: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func env(t *testing.T) Env {
	repo, _ := filepath.Abs("../..")
	var log bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})
	return Env{Binary: handoffBin, Repo: repo, BinDir: filepath.Join(repo, "bin"), Out: t.TempDir(), Log: &log, Quick: true}
}

func TestInvokeQuick(t *testing.T) {
	e := env(t)
	res, err := Invoke(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if res.Direct.N == 0 || res.Gateway.N == 0 || res.GatewayRPS <= 0 || res.DirectRPS <= 0 {
		t.Fatalf("empty measurements: %+v", res)
	}
	if res.Gateway.P50 <= 0 || res.ColdStart.N == 0 || res.ColdStartSpawn.P50 <= 0 {
		t.Fatalf("missing latency or cold start: %+v", res)
	}
	var back InvokeResult
	b, err := os.ReadFile(filepath.Join(e.Out, "invoke.json"))
	if err != nil || json.Unmarshal(b, &back) != nil || back.Gateway.N != res.Gateway.N {
		t.Fatalf("invoke.json does not hold the result: %v", err)
	}
}

func TestTransferQuick(t *testing.T) {
	if _, err := baseline.LookRedis(); err != nil {
		t.Skip("redis-server is not installed: run `make deps`")
	}
	if _, err := baseline.LookMinIO(env(t).BinDir); err != nil {
		t.Skip("MinIO is not built: run `make deps-bench`")
	}
	e := env(t)
	res, err := Transfer(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{"memcpy", "tcp", "unix", "redis", "minio-shm", "handoff-gw", "handoff-f2f"} {
		for _, size := range []int64{bench.KiB, bench.MiB} {
			if p, ok := res.Lookup(series, size); !ok || p.N == 0 || p.P50 <= 0 {
				t.Errorf("no measurement of %s at %d bytes", series, size)
			}
		}
	}
	for _, f := range []string{"transfer.json", "transfer.md", "transfer.png"} {
		if st, err := os.Stat(filepath.Join(e.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("report %s missing or empty", f)
		}
	}
}
