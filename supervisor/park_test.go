package supervisor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/cgroup"
)

// parkT parks the SDK helper for cfg's function and waits until it waits.
func parkT(t *testing.T, cfg Config) *Parked {
	t.Helper()
	pk, err := Park(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pk.Kill)
	select {
	case <-pk.Parked():
	case <-pk.Exited():
		t.Fatalf("parked process exited: %s", pk.ExitReason())
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not park within 10s")
	}
	return pk
}

func TestParkActivateGivesInstanceEnvAndCgroup(t *testing.T) {
	_, cgErr := cgroup.Detect()
	pcfg := testConfig(t, "park-1", "HELPER_MODE=sdk", "SPEC=1")
	pcfg.Memory = 64 << 20
	pk := parkT(t, pcfg)

	// Parked: no port, no instance variables, nothing listens.
	env := procEnv(t, pk.PID())
	for _, k := range []string{"PORT=", "HANDOFF_INSTANCE=", "HANDOFF_API=", "HANDOFF_WIRE="} {
		if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k) }) {
			t.Errorf("parked process has %s...: %v", k, env)
		}
	}
	if !slices.Contains(env, "SPEC=1") {
		t.Errorf("parked process lacks the function's env: %v", env)
	}

	cfg := testConfig(t, "i-act", "HELPER_MODE=sdk", "SPEC=1", "HANDOFF_WIRE=127.0.0.1:0", "HANDOFF_WIRE_SECRET=s3cret")
	cfg.Function = pcfg.Function
	cfg.Memory = pcfg.Memory
	inst, err := pk.Activate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	info := inst.Info()
	t.Logf("activation to ready: %v", info.ColdStart)
	if info.PID != pk.PID() || inst.State() != Ready || !inst.Announced() {
		t.Fatalf("activated instance %+v (announced %v), want the parked pid %d ready", info, inst.Announced(), pk.PID())
	}
	body, err := get(inst.Addr(), "/env")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	json.Unmarshal([]byte(body), &got)
	_, port, _ := strings.Cut(inst.Addr(), ":")
	for _, want := range []string{"PORT=" + port, "HANDOFF_INSTANCE=i-act", "HANDOFF_API=/tmp/handoff-test.sock",
		"HANDOFF_FUNCTION=" + cfg.Function, "SPEC=1", "HANDOFF_WIRE_SECRET=s3cret"} {
		if !slices.Contains(got, want) {
			t.Errorf("activated instance env lacks %s: %v", want, got)
		}
	}
	if slices.ContainsFunc(got, func(kv string) bool { return strings.HasPrefix(kv, "HANDOFF_PARK_FD=") }) {
		t.Errorf("HANDOFF_PARK_FD leaks into the function: %v", got)
	}
	if cgErr == nil {
		if !info.MemoryLimitEnforced {
			t.Fatal("memory limit not enforced after activation")
		}
		cg, _ := get(inst.Addr(), "/cgroup")
		want := "park-1"
		if inst.cg.Mode() == cgroup.V1 {
			want = "i-act" // renamed, charges and all
		}
		if !strings.Contains(cg, filepath.Join(testCgroupParent, want)) {
			t.Errorf("activated process is in %q, want its group %s/%s", cg, testCgroupParent, want)
		}
		if n, err := inst.cg.MemoryUsage(); err != nil || n < 1<<20 {
			t.Errorf("instance group charges %d bytes (%v): the start-up memory should be there", n, err)
		}
	}
	// The parked process's output is in the instance's log now.
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.LogPath); err != nil {
		t.Errorf("instance log: %v", err)
	}
	if _, err := pk.Activate(context.Background(), cfg); err == nil {
		t.Error("a parked process activated twice")
	}
}

func TestParkedProcessDiesAndIsReported(t *testing.T) {
	pk := parkT(t, testConfig(t, "park-2", "HELPER_MODE=sdk"))
	if err := syscallKill(pk.PID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pk.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exited not closed after the process died")
	}
	if r := pk.ExitReason(); !strings.Contains(r, "killed") {
		t.Errorf("ExitReason = %q", r)
	}
	if _, err := pk.Activate(context.Background(), testConfig(t, "i-dead", "HELPER_MODE=sdk")); err == nil {
		t.Error("activated a dead parked process")
	}
}

func TestParkedPlainProgramNeverParks(t *testing.T) {
	pk, err := Park(testConfig(t, "park-3", "HELPER_MODE=fail"))
	if err != nil {
		t.Fatal(err)
	}
	defer pk.Kill()
	select {
	case <-pk.Parked():
		t.Fatal("a program without the SDK said it parked")
	case <-pk.Exited():
	}
}

func procEnv(t *testing.T, pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "environ"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func itoa(n int) string { return strconv.Itoa(n) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
