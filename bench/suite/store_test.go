package suite

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/baseline"
)

// TestStoreQuick runs `handoff bench store --quick`: a platform, two MinIO
// servers, a few fresh instances per first-access series, S3 at 1 KiB and
// 1 MiB, the mounted volume at 32 MiB, and the reports. A smoke test of
// the harness, not a measurement.
func TestStoreQuick(t *testing.T) {
	if _, err := baseline.LookMinIO(env(t).BinDir); err != nil {
		t.Skip("MinIO is not built: run `make deps-bench`")
	}
	e := env(t)
	res, err := Store(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	shared := 1 // the S3 API, and the mount where FUSE works
	if _, ok := res.first(seriesMount); ok {
		shared++
	}
	if len(res.First) != 4+shared { // own, MinIO, raw TCP, tmpfs file
		t.Fatalf("%d first-access series, want %d", len(res.First), 4+shared)
	}
	for _, s := range res.First {
		if s.First.N == 0 || s.First.P50 <= 0 || s.Warm.P50 <= 0 {
			t.Errorf("first-access series %s has no measurement: %+v", s.Name, s)
		}
	}
	for _, target := range []string{targetHandoff, targetMinIOShm, targetMinIODisk} {
		for _, op := range []string{"-put", "-get"} {
			for _, size := range []int64{bench.KiB, bench.MiB} {
				if p, ok := res.S3.Lookup(target+op, size); !ok || p.N == 0 || p.P50 <= 0 {
					t.Errorf("no measurement of %s at %d bytes", target+op, size)
				}
			}
		}
	}
	wantBars := 3*shared + 8
	if m := res.Mount; m.Failed != "" {
		t.Errorf("mounted volume: %s", m.Failed)
	} else if m.Skipped != "" {
		t.Logf("mounted volume not measured (FUSE unavailable here): %s", m.Skipped)
	} else {
		if len(m.MountWrite) == 0 || len(m.MountRead) == 0 || m.Throughput(m.MountRead) <= 0 {
			t.Errorf("mounted volume has no measurement: %+v", m)
		}
		wantBars += 2
	}
	if m := res.NodeMount; m.Failed != "" {
		t.Errorf("node agent's mount: %s", m.Failed)
	} else if m.Skipped != "" {
		t.Logf("node agent's mount not measured: %s", m.Skipped)
	} else {
		if len(m.MountWrite) == 0 || m.Throughput(m.MountRead) <= 0 {
			t.Errorf("node agent's mount has no measurement: %+v", m)
		}
		wantBars += 2
	}
	if len(res.Bars) != wantBars {
		t.Errorf("%d bars, want %d: %+v", len(res.Bars), wantBars, res.Bars)
	}
	var back StoreResult
	b, err := os.ReadFile(filepath.Join(e.Out, "store.json"))
	if err != nil || json.Unmarshal(b, &back) != nil || len(back.First) != len(res.First) {
		t.Fatalf("store.json does not hold the result: %v", err)
	}
	for _, f := range []string{"store.md", "store.png"} {
		if st, err := os.Stat(filepath.Join(e.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("report %s missing or empty", f)
		}
	}
}
