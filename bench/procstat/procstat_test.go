package procstat

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSamplerSeesAChildWrite(t *testing.T) {
	dir := t.TempDir()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatal(err)
	}
	// The child waits for a go-ahead, so the sampler has it as a base
	// before it writes; it writes 4 MiB and syncs, then lingers a little
	// for the sampler to read its counters.
	gate := filepath.Join(dir, "go")
	out := filepath.Join(dir, "data")
	cmd := exec.Command("sh", "-c", "while [ ! -e "+gate+" ]; do sleep 0.01; done; "+
		"dd if=/dev/zero of="+out+" bs=1M count=4 conv=fsync status=none; sleep 0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	tr, err := Tree(os.Getpid())
	if err != nil || tr[0] != os.Getpid() || !slices.Contains(tr, cmd.Process.Pid) {
		t.Fatalf("Tree(self) = %v, %v; want self first and the child %d", tr, err, cmd.Process.Pid)
	}
	args, err := Cmdline(cmd.Process.Pid)
	if err != nil || args[0] != "sh" {
		t.Fatalf("Cmdline = %q, %v", args, err)
	}
	found, err := Find(func(a []string) bool { return len(a) == 3 && strings.Contains(a[2], gate) })
	if err != nil || !slices.Equal(found, []int{cmd.Process.Pid}) {
		t.Fatalf("Find = %v, %v; want [%d]", found, err, cmd.Process.Pid)
	}

	s := &Sampler{Roots: []int{cmd.Process.Pid}, Watch: []int{os.Getpid()}, Every: 5 * time.Millisecond}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	total, by := s.Written()
	if total < 4<<20 {
		t.Errorf("the sampler saw %d bytes written (by %v), want the child's 4 MiB at least", total, by)
	}
	if peak := s.PeakRSS()[os.Getpid()]; peak <= 0 {
		t.Errorf("no RSS sampled for this process: %v", s.PeakRSS())
	}
	if len(s.Samples()) < 2 {
		t.Errorf("%d samples; want several", len(s.Samples()))
	}
}

func TestRSSAndPeak(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	peak, err := PeakRSS(os.Getpid())
	if err != nil || peak < rss {
		t.Fatalf("PeakRSS = %d, %v; want at least RSS %d", peak, err, rss)
	}
	if err := ResetPeak(os.Getpid()); err != nil {
		t.Skipf("cannot reset the peak here: %v", err)
	}
	if _, err := field(os.Getpid(), "status", "NoSuchField:", 1); err == nil {
		t.Error("a missing field was found")
	}
}
